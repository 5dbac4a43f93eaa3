"""The dossier PDF: one file per dossier component, as the rules ask (PDF 1.4+, 24-bit colour, at
least 200 dpi, named ``<dossier code>.<sequence>.pdf``), aiming at PDF/A-2b, with a Vietnamese
text layer from Tesseract when it is installed (a two-layer PDF).

Pages are made small without hurting legibility: the paper's uneven shading is flattened to
white (text and stamps keep their colour), the page is resampled to the target dpi, and stored
as JPEG. Blank pages are left out and recorded in the file's metadata and the report.

>>> pdf_name("000.00.10.H10-250101-0001", 2)
'000.00.10.H10-250101-0001.2.pdf'
"""

import datetime as dt
import hashlib
import html
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from device.dossier.config import PdfConfig
from device.errors import SohoaError

log = logging.getLogger(__name__)

Img = NDArray[Any]  # 8-bit BGR or grey, as OpenCV returns it


class PdfError(SohoaError, OSError):
    """The PDF could not be written."""


def scratch_dir() -> str | None:
    """Where a page's working copies (the JPEG Tesseract reads, the PDF being assembled) go:
    ``/dev/shm`` (memory) when there is one, so no plaintext copy reaches the card; else the
    system's temporary directory.

    >>> scratch_dir() in ("/dev/shm", None)
    True
    """
    shm = Path("/dev/shm")  # noqa: S108  (only mkdtemp uses it: a private 0700 directory)
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@dataclass(frozen=True)
class PdfPage:
    """One page to file: the upright page image (BGR), the resolution it was captured at, the
    sha256 of the captured image file, and whether it is blank (then it is left out)."""

    image: Img
    dpi: float | None
    sha256: str
    blank: bool = False
    doctype: str | None = None


@dataclass(frozen=True)
class DossierInfo:
    """What the PDF's metadata says about its dossier."""

    dossier_code: str
    sequence: int = 1
    document_type: str = "other"
    unit: str = ""
    device: str = ""
    captured_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    kind: str = "component"
    """``component`` (``<code>.<n>``) or ``result`` (``<code>-KQ<n>``)."""

    @property
    def label(self) -> str:
        """The document's name without extension."""
        suffix = f"-KQ{self.sequence}" if self.kind == "result" else f".{self.sequence}"
        return self.dossier_code + suffix


@dataclass(frozen=True)
class PdfReport:
    path: Path
    pages: int
    dropped: list[tuple[int, str]]
    bytes: int
    text_layer: bool

    @property
    def bytes_per_page(self) -> float:
        return self.bytes / max(1, self.pages)


def pdf_name(dossier_code: str, sequence: int) -> str:
    """``<dossier code>.<sequence>.pdf``, with characters a file name cannot hold replaced."""
    safe = re.sub(r"[^\w.\-]", "_", dossier_code.strip()) or "dossier"
    return f"{safe}.{sequence}.pdf"


def flatten_paper(img: Img) -> Img:
    """Divide out the paper's shading so the background is white and the ink keeps its colour."""
    h, w = img.shape[:2]
    factor = min(1.0, 256 / max(h, w))
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    # Paper colour: the brightest nearby pixels (text removed by the max filter).
    bg = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    bg = cv2.GaussianBlur(cv2.medianBlur(bg, 7), (0, 0), 3)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    bg = np.maximum(bg, 32)
    out = cv2.divide(img, bg, scale=255.0)
    # Near-white becomes white: paper grain costs bytes and says nothing.
    lut = np.clip(np.arange(256, dtype=np.float32) * (255.0 / 235.0), 0, 255).astype(np.uint8)
    return cv2.LUT(out, lut)


def encode_page(img: Img, src_dpi: float | None, dpi: int, quality: int, flatten: bool) -> tuple[bytes, int]:
    """The page as JPEG bytes at ``dpi`` (never upsampled above the capture), and the dpi the
    JPEG is at."""
    out_dpi = dpi
    if src_dpi is not None and src_dpi > dpi * 1.05:
        f = dpi / src_dpi
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    elif src_dpi is not None:
        out_dpi = round(src_dpi)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if flatten:
        img = flatten_paper(img)
    ok, buf = cv2.imencode(
        ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
    )
    if not ok:
        raise PdfError("the page image could not be encoded")
    return _set_jfif_dpi(buf.tobytes(), out_dpi), out_dpi


def _set_jfif_dpi(jpeg: bytes, dpi: int) -> bytes:
    """Write the resolution into the JPEG's JFIF header (OpenCV leaves it at 1:1 aspect)."""
    if jpeg[2:4] == b"\xff\xe0" and jpeg[6:11] == b"JFIF\x00":
        d = dpi.to_bytes(2, "big")
        return jpeg[:13] + b"\x01" + d + d + jpeg[18:]
    return jpeg


def tesseract_available(language: str) -> bool:
    exe = shutil.which("tesseract")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return language in out.stdout.split()


def _text_layer(jpeg_path: Path, dpi: int, language: str, timeout: float) -> bytes | None:
    """A text-only PDF page of the same size from Tesseract, or None if it fails."""
    exe = shutil.which("tesseract")
    if exe is None:
        return None
    base = jpeg_path.with_suffix("")
    cmd = [exe, str(jpeg_path), str(base), "-l", language, "--dpi", str(dpi), "-c", "textonly_pdf=1", "pdf"]
    try:
        env = {"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("tesseract failed on a page: %s", type(exc).__name__)
        return None
    pdf = base.with_suffix(".pdf")
    if proc.returncode != 0 or not pdf.exists():
        log.warning("tesseract failed on a page (exit %s)", proc.returncode)
        return None
    return pdf.read_bytes()


_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:pdf="http://ns.adobe.com/pdf/1.3/"{pdfa_ns}
    xmlns:sohoa="https://sohoa.example/ns/dossier/1.0/">{pdfa_id}
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
   <xmp:CreateDate>{created}</xmp:CreateDate>
   <xmp:ModifyDate>{created}</xmp:ModifyDate>
   <xmp:CreatorTool>{creator}</xmp:CreatorTool>
   <pdf:Producer>{producer}</pdf:Producer>
{props}{pdfa_schema}
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

# What makes the file declare itself PDF/A-2b: written only with ``pdf.pdfa`` on, since a file
# that claims PDF/A without the output intent and the rest would be a false claim.
_PDFA_NS = '''
    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
    xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/"
    xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#"
    xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#"'''
_PDFA_ID = """
   <pdfaid:part>2</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>"""
_PDFA_SCHEMA = """
   <pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType="Resource">
    <pdfaSchema:schema>Sohoa dossier</pdfaSchema:schema>
    <pdfaSchema:namespaceURI>https://sohoa.example/ns/dossier/1.0/</pdfaSchema:namespaceURI>
    <pdfaSchema:prefix>sohoa</pdfaSchema:prefix>
    <pdfaSchema:property><rdf:Seq>
{schema}
    </rdf:Seq></pdfaSchema:property>
   </rdf:li></rdf:Bag></pdfaExtension:schemas>"""

_PROPS = {
    "dossierCode": "Dossier code (mã hồ sơ)",
    "sequence": "Sequence number of this component (or result) in the dossier",
    "documentKind": "component (thành phần hồ sơ, <code>.<n>) or result (kết quả, <code>-KQ<n>)",
    "documentType": "Document type",
    "unit": "Administrative unit that received the dossier",
    "device": "Device that captured the pages",
    "captureTime": "Capture time, ISO 8601",
    "pageSha256": "sha256 of each captured page image, in page order",
    "droppedPages": "Captured pages left out (blank), with the reason",
}


def _pdf_date(t: dt.datetime) -> str:
    t = t.astimezone(dt.UTC)
    return t.strftime("D:%Y%m%d%H%M%S+00'00'")


def _xmp(info: DossierInfo, title: str, producer: str, hashes: list[str], dropped: list[tuple[int, str]],
         pdfa: bool) -> bytes:
    created = info.captured_at.astimezone(dt.UTC).isoformat(timespec="seconds")
    values = {
        "dossierCode": info.dossier_code,
        "sequence": str(info.sequence),
        "documentKind": info.kind,
        "documentType": info.document_type,
        "unit": info.unit,
        "device": info.device,
        "captureTime": created,
        "pageSha256": " ".join(hashes),
        "droppedPages": "; ".join(f"page {i}: {why}" for i, why in dropped),
    }
    props = "\n".join(f"   <sohoa:{k}>{html.escape(v)}</sohoa:{k}>" for k, v in values.items())
    schema = "\n".join(
        "     <rdf:li rdf:parseType=\"Resource\"><pdfaProperty:name>"
        f"{k}</pdfaProperty:name><pdfaProperty:valueType>Text</pdfaProperty:valueType>"
        f"<pdfaProperty:category>external</pdfaProperty:category><pdfaProperty:description>{html.escape(d)}"
        "</pdfaProperty:description></rdf:li>"
        for k, d in _PROPS.items()
    )
    xml = _XMP.format(
        title=html.escape(title),
        created=created,
        creator=html.escape(producer),
        producer=html.escape(producer),
        props=props,
        pdfa_ns=_PDFA_NS if pdfa else "",
        pdfa_id=_PDFA_ID if pdfa else "",
        pdfa_schema=_PDFA_SCHEMA.format(schema=schema) if pdfa else "",
    )
    return xml.encode("utf-8")


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


class PdfBuilder:
    """Builds one dossier PDF page by page, holding only each page's compressed image, so a
    large archive does not fill memory.

    >>> import numpy as np
    >>> builder = PdfBuilder(PdfConfig(ocr="off"))
    >>> builder.add(PdfPage(np.full((700, 500, 3), 250, np.uint8), 60, "0" * 64, blank=True))
    >>> builder.dropped
    [(1, 'blank')]
    """

    def __init__(self, config: PdfConfig | None = None) -> None:
        self.config = config or PdfConfig()
        if self.config.ocr == "on" and not tesseract_available(self.config.ocr_language):
            raise PdfError(f"tesseract with language {self.config.ocr_language!r} is not installed")
        self.use_ocr = self.config.ocr == "on" or (
            self.config.ocr == "auto" and tesseract_available(self.config.ocr_language)
        )
        self._tmp = tempfile.TemporaryDirectory(prefix="sohoa-pdf-", dir=scratch_dir())
        self._pages: list[tuple[bytes, int, bytes | None, str]] = []
        self.dropped: list[tuple[int, str]] = []
        self._count = 0

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "PdfBuilder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, page: PdfPage) -> None:
        """Compress the page (and make its text layer); a blank page is only recorded."""
        self._count += 1
        if page.blank:
            self.dropped.append((self._count, "blank"))
            return
        cfg = self.config
        target = cfg.drawing_dpi if page.doctype in cfg.drawing_doctypes else cfg.dpi
        jpeg, dpi = encode_page(page.image, page.dpi, target, cfg.jpeg_quality, cfg.flatten_paper)
        layer = None
        if self.use_ocr:
            path = Path(self._tmp.name) / f"p{self._count}.jpg"
            path.write_bytes(jpeg)
            layer = _text_layer(path, dpi, cfg.ocr_language, cfg.ocr_timeout_s)
            path.unlink(missing_ok=True)
        self._pages.append((jpeg, dpi, layer, page.sha256))

    def finish(self, out: Path, info: DossierInfo) -> PdfReport:
        """Write the PDF to ``out`` (atomically: a ``.part`` file renamed into place)."""
        import img2pdf
        import pikepdf

        from device import __version__

        if not self._pages:
            raise PdfError("every page is blank: there is nothing to put in the PDF")
        producer = f"Sohoa device {__version__}"
        title = f"{info.label} {info.document_type}"
        text_layers = 0
        pdf = pikepdf.new()
        for jpeg, dpi, layer, _ in self._pages:
            data = img2pdf.convert(jpeg, layout_fun=img2pdf.get_fixed_dpi_layout_fun((dpi, dpi)))
            src = pikepdf.open(_as_stream(data))
            pdf.pages.append(src.pages[0])
            if layer is not None:
                text = pikepdf.open(_as_stream(layer))
                pdf.pages[-1].add_overlay(text.pages[0], None)
                text_layers += 1
        hashes = [sha for *_, sha in self._pages]
        metadata = pdf.make_stream(_xmp(info, title, producer, hashes, self.dropped, self.config.pdfa))
        metadata.Type = pikepdf.Name.Metadata
        metadata.Subtype = pikepdf.Name.XML
        pdf.Root.Metadata = metadata
        pdf.docinfo = pdf.make_indirect(
            pikepdf.Dictionary(
                Title=pikepdf.String(title),
                Creator=pikepdf.String(producer),
                Producer=pikepdf.String(producer),
                CreationDate=pikepdf.String(_pdf_date(info.captured_at)),
                ModDate=pikepdf.String(_pdf_date(info.captured_at)),
            )
        )
        if self.config.pdfa:
            icc = pdf.make_stream(_srgb_profile())
            icc.N = 3
            intent = pikepdf.Dictionary(
                Type=pikepdf.Name.OutputIntent,
                S=pikepdf.Name.GTS_PDFA1,
                OutputConditionIdentifier=pikepdf.String("sRGB"),
                Info=pikepdf.String("sRGB IEC61966-2.1"),
                DestOutputProfile=icc,
            )
            pdf.Root.OutputIntents = pikepdf.Array([intent])
        tmp_out = out.with_name(out.name + ".part")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            pdf.save(tmp_out, min_version="1.7", fix_metadata_version=False, deterministic_id=True)
            tmp_out.replace(out)
        except OSError as exc:
            raise PdfError(f"cannot write {out.name}: {exc.strerror or exc}") from None
        pages = len(self._pages)
        # Not the file's name: it begins with the dossier code.
        log.info("wrote a document: %s page(s), %s dropped, text layer on %s", pages, len(self.dropped), text_layers)
        return PdfReport(out, pages, list(self.dropped), out.stat().st_size, text_layers == pages)


def write_pdf(pages: list[PdfPage], out: Path, info: DossierInfo, config: PdfConfig | None = None) -> PdfReport:
    """Write the non-blank ``pages`` as one PDF at ``out``; blank pages are recorded, not lost."""
    with PdfBuilder(config) as builder:
        for page in pages:
            builder.add(page)
        return builder.finish(out, info)


def write_dossier(
    folder: Path,
    components: list[tuple[str, list[PdfPage]]],
    info: DossierInfo,
    config: PdfConfig | None = None,
) -> list[PdfReport]:
    """One PDF per dossier component, numbered in order: ``<dossier code>.1.pdf``,
    ``<dossier code>.2.pdf``, ... ``components`` pairs each component's document type with its
    pages. A component whose pages are all blank is skipped and keeps no number."""
    reports: list[PdfReport] = []
    sequence = 0
    for document_type, pages in components:
        if all(p.blank for p in pages):
            log.info("a dossier component of %s blank page(s) was left out", len(pages))
            continue
        sequence += 1
        part = DossierInfo(info.dossier_code, sequence, document_type, info.unit, info.device, info.captured_at)
        reports.append(write_pdf(pages, folder / pdf_name(info.dossier_code, sequence), part, config))
    return reports


def _as_stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
