"""``sohoa-device inspect``: one JSON line per file, errors as lines with exit status 2, the
PDF, folders and progress; corrupt, truncated and huge files refused without exhausting memory."""

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from device.errors import ImageRejected
from device.inference import synthetic
from device.inference.pipeline import ImageTooLarge, load_image
from device.inspect import inspect_main

RECEIPT = "000.00.10.H10-250101-0001|1.000894|001099012345|Tờ khai"


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height pixels but holds a few bytes: decoding it naively would
    need width*height*3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "scan.jpg"
    Image.fromarray(cv2.cvtColor(synthetic.text_page(seed=1, dpi=200, qr_text=RECEIPT), cv2.COLOR_BGR2RGB)).save(
        good, dpi=(200, 200), quality=90
    )
    turned = tmp_path / "turned.png"
    Image.fromarray(
        cv2.cvtColor(synthetic.turn(synthetic.text_page(seed=2, dpi=200), 90), cv2.COLOR_BGR2RGB)
    ).save(turned, dpi=(200, 200))
    back = tmp_path / "back.png"
    Image.fromarray(synthetic.blank_back(1654, 2339)).save(back, dpi=(200, 200))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:20000])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 20000, 20000)
    return {"good": good, "turned": turned, "back": back, "truncated": truncated, "garbage": garbage, "huge": huge}


def test_json_lines_errors_and_exit_status(files: dict[str, Path], tmp_path: Path) -> None:
    """Good, turned and blank pages among a truncated JPEG, a garbage PNG and a 20,000 x 20,000
    PNG: one line each in order, errors carry ``error``, the rest still run, exit status 2; the
    PDF holds the two non-blank pages and says the blank one was left out."""
    order = ["good", "truncated", "turned", "garbage", "huge", "back"]
    out, err = io.StringIO(), io.StringIO()
    pdf = tmp_path / "dossier.pdf"
    status = inspect_main([str(files[k]) for k in order], pdf=str(pdf), out=out, err=err)
    assert status == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [Path(line["file"]).name for line in lines] == [files[k].name for k in order]
    by = {Path(line["file"]).stem: line for line in lines}
    assert "truncated" in by["truncated"]["error"]
    assert "not an image" in by["garbage"]["error"] or "damaged" in by["garbage"]["error"]
    assert "400,000,000 pixels is more than" in by["huge"]["error"]
    good = by["scan"]
    assert set(good) >= {"file", "doctype", "confidence", "quality", "quad", "orientation", "codes", "ms"}
    assert good["quality"] == {"ok": True, "issues": []}
    assert good["orientation"] == 0 and good["quad"] is None
    assert good["codes"][0]["kind"] == "dossier_receipt"
    assert good["codes"][0]["fields"]["dossier_code"] == "000.00.10.H10-250101-0001"
    assert good["codes"][0]["fields"]["applicant_id"] == "***"
    assert by["turned"]["orientation"] == 270
    assert [i["code"] for i in by["back"]["quality"]["issues"]] == ["blank"]
    assert all("message_vi" in i and "message_en" in i for i in by["back"]["quality"]["issues"])
    import pikepdf

    with pikepdf.open(pdf) as doc:
        assert len(doc.pages) == 2
        xmp = bytes(doc.Root.Metadata.read_bytes()).decode()
        assert "000.00.10.H10-250101-0001" in xmp and "page 3: blank" in xmp
    assert "left out: page 3 (blank)" in err.getvalue()


def test_folder_is_walked_with_progress(files: dict[str, Path], tmp_path: Path) -> None:
    """A folder argument is walked (images only, name order) and progress goes to stderr, not
    stdout."""
    (tmp_path / "notes.txt").write_text("not an image")
    out, err = io.StringIO(), io.StringIO()
    inspect_main([str(tmp_path)], out=out, err=err)
    names = [Path(json.loads(line)["file"]).name for line in out.getvalue().splitlines()]
    assert names == sorted(p.name for p in files.values())
    assert "6/6 file(s)" in err.getvalue() and "error(s)" in err.getvalue()


def test_huge_image_refused_before_decoding(tmp_path: Path) -> None:
    """The 20,000 x 20,000 header is refused from its header: ImageTooLarge, an ImageRejected
    and a ValueError, without allocating the 1.2 GB the pixels would need."""
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 20000, 20000)
    with pytest.raises(ImageTooLarge) as caught:
        load_image(huge)
    assert isinstance(caught.value, ImageRejected) and isinstance(caught.value, ValueError)


def test_missing_file_is_a_line_not_a_crash(tmp_path: Path) -> None:
    """A path that does not exist."""
    out = io.StringIO()
    assert inspect_main([str(tmp_path / "nope.jpg")], out=out, err=io.StringIO()) == 2
    assert "error" in json.loads(out.getvalue())


def test_command_line(files: dict[str, Path]) -> None:
    """The real console entry: ``python -m device inspect`` prints JSON lines, exits 2 on a bad
    file among good ones."""
    proc = subprocess.run(
        [sys.executable, "-m", "device", "inspect", str(files["good"]), str(files["garbage"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 and "error" in lines[1] and lines[0]["quality"]["ok"] is True


def test_pipeline_refuses_oversized_arrays() -> None:
    """An in-memory frame above max_pixels is refused too (the camera path skips the file check)."""
    from device.inference.config import PipelineConfig
    from device.inference.pipeline import PagePipeline

    frame = np.zeros((1200, 1000, 3), np.uint8)
    with pytest.raises(ImageTooLarge):
        PagePipeline(PipelineConfig(max_pixels=1_000_000)).process(frame)


def test_config_sections_set_thresholds_and_typos_are_errors(files: dict[str, Path], tmp_path: Path) -> None:
    """``--config`` reads the ``pipeline:`` section (a 300 dpi floor makes the 200 dpi scan low
    resolution); a mistyped key there is a ConfigInvalid naming its line."""
    from device.errors import ConfigInvalid

    cfg = tmp_path / "device.yaml"
    cfg.write_text("device_id: kiosk-1\npipeline:\n  quality:\n    min_dpi: 300\npdf:\n  ocr: 'off'\n")
    out = io.StringIO()
    assert inspect_main([str(files["good"])], config=str(cfg), out=out, err=io.StringIO()) == 0
    issues = json.loads(out.getvalue())["quality"]["issues"]
    assert [i["code"] for i in issues] == ["low_resolution"]
    cfg.write_text("pipeline:\n  quality:\n    min_dpii: 300\n")
    with pytest.raises(ConfigInvalid, match=":3"):
        inspect_main([str(files["good"])], config=str(cfg), out=io.StringIO(), err=io.StringIO())


def test_a_failing_classifier_does_not_stop_the_page() -> None:
    """A classifier that raises on every page: the page is still judged, its type left empty."""
    from device.inference.pipeline import PagePipeline

    class Broken:
        def classify(self, page: np.ndarray) -> tuple[str, float]:
            raise RuntimeError("interpreter crashed")

    result = PagePipeline(classifier=Broken()).process(synthetic.text_page(seed=1, dpi=200), dpi=200)
    assert result.doctype is None and result.verdict.ok
