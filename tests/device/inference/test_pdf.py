"""The dossier PDF: rules (PDF 1.4+, 24-bit colour, >= 200 dpi, name), metadata, blank pages
dropped and recorded, PDF/A-2b markers, the Vietnamese text layer when Tesseract has it."""

import datetime as dt
import re
import subprocess
from pathlib import Path

import numpy as np
import pikepdf
import pytest

from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import (
    DossierInfo,
    PdfError,
    PdfPage,
    encode_page,
    pdf_name,
    tesseract_available,
    write_dossier,
    write_pdf,
)
from device.inference import synthetic

INFO = DossierInfo(
    dossier_code="000.00.10.H10-250101-0001",
    sequence=2,
    document_type="birth_certificate",
    unit="000.00.10.H10",
    device="kiosk-0001",
    captured_at=dt.datetime(2025, 1, 1, 8, 30, tzinfo=dt.UTC),
)


def _pages() -> list[PdfPage]:
    a = synthetic.text_page(seed=1, dpi=300)
    b = synthetic.text_page(seed=2, dpi=150)
    blank = synthetic.blank_back(600, 850)
    return [
        PdfPage(a, 300, "a" * 64),
        PdfPage(blank, 100, "b" * 64, blank=True),
        PdfPage(b, 150, "c" * 64),
    ]


def test_pdf_follows_the_rules_and_records_dropped_pages(tmp_path: Path) -> None:
    """Three pages, the middle one blank: two pages written, in colour JPEG at >= 200 dpi where
    the capture allows (a 150 dpi capture is kept at its own 150, never upsampled), version
    >= 1.4, metadata with the dossier code, unit, device, ISO 8601 time, each page's sha256 and
    the dropped page."""
    out = tmp_path / pdf_name(INFO.dossier_code, INFO.sequence)
    report = write_pdf(_pages(), out, INFO, PdfConfig(ocr="off"))
    assert out.name == "000.00.10.H10-250101-0001.2.pdf"
    assert report.pages == 2 and report.dropped == [(2, "blank")]
    with pikepdf.open(out) as pdf:
        assert float(pdf.pdf_version) >= 1.4
        assert len(pdf.pages) == 2
        dpis = []
        for page in pdf.pages:
            (_name, image), = page.get_images().items()
            assert image.ColorSpace == pikepdf.Name.DeviceRGB and int(image.BitsPerComponent) == 8
            assert image.Filter == pikepdf.Name.DCTDecode
            width_in = float(page.MediaBox[2]) / 72
            dpis.append(int(image.Width) / width_in)
        assert dpis[0] == pytest.approx(200, abs=1)
        assert dpis[1] == pytest.approx(150, abs=1)
        xmp = bytes(pdf.Root.Metadata.read_bytes()).decode()
        assert "<pdfaid:part>2</pdfaid:part>" in xmp and "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
        assert INFO.dossier_code in xmp and "kiosk-0001" in xmp and "000.00.10.H10" in xmp
        assert "2025-01-01T08:30:00+00:00" in xmp
        assert "a" * 64 in xmp and "c" * 64 in xmp and "b" * 64 not in xmp
        assert "page 2: blank" in xmp
        assert pdf.Root.OutputIntents[0].S == pikepdf.Name.GTS_PDFA1
        assert str(pdf.docinfo.Title).startswith(INFO.dossier_code)
        assert pdf.check_pdf_syntax() == []


def test_pages_are_smaller_than_lossless(tmp_path: Path) -> None:
    """A 300 dpi page is stored far below the lossless PNG size (flattened paper, 200 dpi)."""
    import cv2

    page = synthetic.camera_scene(synthetic.text_page(seed=3, dpi=150), frame=(1240, 1754)).image
    jpeg, dpi = encode_page(page, 150, 200, 70, True)
    ok, png = cv2.imencode(".png", page)
    assert ok and len(jpeg) < len(png.tobytes()) / 3
    assert dpi == 150


def test_only_blank_pages_is_a_clear_error(tmp_path: Path) -> None:
    """A dossier of blank backs only: refused with PdfError, nothing written."""
    with pytest.raises(PdfError, match="blank"):
        write_pdf([PdfPage(synthetic.blank_back(300, 400), 100, "0" * 64, blank=True)], tmp_path / "x.pdf", INFO)
    assert not (tmp_path / "x.pdf").exists()


@pytest.mark.skipif(not tesseract_available("vie"), reason="tesseract with the Vietnamese model is not installed")
def test_text_layer_in_vietnamese(tmp_path: Path) -> None:
    """With tesseract-ocr-vie installed the PDF has two layers: the page's Vietnamese text is
    searchable (pdftotext finds the national motto with its diacritics)."""
    card = synthetic.text_page(seed=4, dpi=200, size_mm=(148.0, 105.0), font_pt=12, fill=0.3)
    out = tmp_path / "t.pdf"
    report = write_pdf([PdfPage(card, 200, "d" * 64)], out, INFO, PdfConfig(ocr="on"))
    assert report.text_layer
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"CỘNG HÒA|Độc lập", text), text[:200]


def test_name_is_made_safe() -> None:
    """Slashes and spaces in a dossier code cannot escape the folder or break the name."""
    assert pdf_name("../H10 25/0001", 3) == ".._H10_25_0001.3.pdf"
    assert "/" not in pdf_name("a/b", 1)


def test_grey_page_is_stored_as_colour(tmp_path: Path) -> None:
    """A greyscale capture still goes into the PDF as 24-bit colour, as the rules ask."""
    grey = np.full((800, 600), 240, np.uint8)
    grey[100:120, 50:550] = 20
    out = tmp_path / "g.pdf"
    write_pdf([PdfPage(grey, 200, "e" * 64)], out, INFO, PdfConfig(ocr="off"))
    with pikepdf.open(out) as pdf:
        (_, image), = pdf.pages[0].get_images().items()
        assert image.ColorSpace == pikepdf.Name.DeviceRGB


def test_one_pdf_per_component_numbered_in_order(tmp_path: Path) -> None:
    """Three components, the middle one only a blank back: two files, numbered 1 and 2, each
    with its own document type in its metadata."""
    form = [PdfPage(synthetic.text_page(seed=5, dpi=100), 200, "1" * 64)]
    blank = [PdfPage(synthetic.blank_back(300, 420), 200, "2" * 64, blank=True)]
    card = [PdfPage(synthetic.text_page(seed=6, dpi=200, size_mm=synthetic.ID_CARD_MM), 200, "3" * 64)]
    reports = write_dossier(
        tmp_path, [("application_form", form), ("other", blank), ("id_card", card)], INFO, PdfConfig(ocr="off")
    )
    assert [r.path.name for r in reports] == [
        "000.00.10.H10-250101-0001.1.pdf",
        "000.00.10.H10-250101-0001.2.pdf",
    ]
    with pikepdf.open(reports[1].path) as pdf:
        xmp = bytes(pdf.Root.Metadata.read_bytes()).decode()
        assert "<sohoa:documentType>id_card</sohoa:documentType>" in xmp
        assert "<sohoa:sequence>2</sohoa:sequence>" in xmp


@pytest.mark.parametrize("pdfa", [True, False])
def test_pdfa_markers_only_when_pdfa_is_on(tmp_path: Path, pdfa: bool) -> None:
    """``pdf.pdfa`` on: the XMP says PDF/A-2b (pdfaid), describes the dossier schema for PDF/A
    (pdfaExtension) and the file has its sRGB output intent. Off: none of the three, so the file
    never claims a conformance it was not built for; the dossier properties are there either way
    and the XMP is well-formed XML both ways."""
    from xml.etree import ElementTree

    out = tmp_path / "p.pdf"
    write_pdf([PdfPage(synthetic.text_page(seed=7, dpi=100), 200, "f" * 64)], out, INFO,
              PdfConfig(ocr="off", pdfa=pdfa))
    with pikepdf.open(out) as pdf:
        xmp = bytes(pdf.Root.Metadata.read_bytes()).decode()
        ElementTree.fromstring(xmp.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])  # noqa: S314 - our own output
        assert ("<pdfaid:part>2</pdfaid:part>" in xmp) is pdfa
        assert ("<pdfaid:conformance>B</pdfaid:conformance>" in xmp) is pdfa
        assert ("pdfaid" in xmp or "pdfaExtension" in xmp or "pdfaSchema" in xmp) is pdfa
        assert ("/OutputIntents" in pdf.Root) is pdfa
        assert f"<sohoa:dossierCode>{INFO.dossier_code}</sohoa:dossierCode>" in xmp
