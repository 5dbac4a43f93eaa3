"""Size of the dossier PDF per page against two baselines on the same page images: lossless
(img2pdf of PNG) and plain JPEG quality 90 at the capture's resolution; plus a legibility check
(Tesseract's text from our page against its text from the lossless page).

    python -m benchmarks.run pdf
"""

import difflib
import statistics
import subprocess
import tempfile
from pathlib import Path

import cv2
import img2pdf
import numpy as np

from benchmarks.bench_quality import base_pages, dev_data
from benchmarks.harness import machine
from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import DossierInfo, PdfBuilder, PdfPage, encode_page, tesseract_available
from device.inference import synthetic
from device.inference.pipeline import PagePipeline


def _baselines(img: np.ndarray, dpi: float) -> tuple[int, int]:
    layout = img2pdf.get_fixed_dpi_layout_fun((dpi, dpi))
    ok, png = cv2.imencode(".png", img)
    ok2, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok and ok2
    lossless = img2pdf.convert(png.tobytes(), layout_fun=layout)
    jpeg90 = img2pdf.convert(jpg.tobytes(), layout_fun=layout)
    return len(lossless), len(jpeg90)


def _ocr(image_bytes: bytes, suffix: str, lang: str, dpi: int) -> str:
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(image_bytes)
        f.flush()
        env = {"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"}
        cmd = ["tesseract", f.name, "-", "-l", lang, "--dpi", str(dpi)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    return " ".join(out.stdout.split())


def main(argv: list[str]) -> int:
    print(f"Machine: {machine()}\n")
    pipeline = PagePipeline()
    pages: list[tuple[str, np.ndarray, float]] = []
    for seed in range(3):
        scan = cv2.resize(synthetic.text_page(seed=seed, dpi=300), (2480, 3508))
        pages.append(("generated A4 scan 300 dpi", scan, 300.0))
    cam = synthetic.camera_scene(synthetic.text_page(seed=9, dpi=200), frame=(3000, 4000),
                                 quad=[(300, 250), (2700, 330), (2760, 3700), (240, 3640)], seed=1).image
    r = pipeline.process(cam, source="camera")
    pages.append(("generated camera page, flattened", r.render(), r.dpi or 200.0))
    root = dev_data()
    if root is not None:
        for base in base_pages(root)[:14]:
            kind = "real receipt 300 dpi" if base.image.shape[0] > 2 * base.image.shape[1] else "real printed page"
            res = pipeline.process(base.image, dpi=base.dpi, source="scan")
            pages.append((kind, res.render(), base.dpi))
    rows: dict[str, list[tuple[int, int, int]]] = {}
    config = PdfConfig(ocr="off")
    for kind, img, dpi in pages:
        with PdfBuilder(config) as builder, tempfile.TemporaryDirectory() as tmp:
            builder.add(PdfPage(img, dpi, "0" * 64))
            ours = builder.finish(Path(tmp) / "x.pdf", DossierInfo("bench")).bytes
        lossless, jpeg90 = _baselines(img, dpi)
        rows.setdefault(kind, []).append((ours, lossless, jpeg90))
    print("Bytes per page (median), ours = flattened paper, 200 dpi, JPEG q70, with PDF/A metadata:\n")
    print("| pages | n | ours | lossless (img2pdf PNG) | JPEG-90 at capture dpi | ours / lossless | ours / JPEG-90 |")
    print("|---|---|---|---|---|---|---|")
    for kind, vals in rows.items():
        o = statistics.median(v[0] for v in vals)
        lo = statistics.median(v[1] for v in vals)
        j = statistics.median(v[2] for v in vals)
        print(f"| {kind} | {len(vals)} | {o / 1024:.0f} KiB | {lo / 1024:.0f} KiB | {j / 1024:.0f} KiB "
              f"| {o / lo:.2f} | {o / j:.2f} |")
    if tesseract_available("vie") and tesseract_available("eng"):
        print("\nLegibility: Tesseract text from our stored page vs from the lossless page (similarity 0-1):\n")
        print("| page | similarity |\n|---|---|")
        printed = [p for p in pages if p[0] == "real printed page"][:2]
        for kind, img, dpi in [pages[0], pages[3], *printed]:
            lang = "vie" if kind.startswith("generated") else "eng"
            _, png = cv2.imencode(".png", img)
            jpeg, out_dpi = encode_page(img, dpi, 200, 70, True)
            ref = _ocr(png.tobytes(), ".png", lang, round(dpi))
            got = _ocr(jpeg, ".jpg", lang, out_dpi)
            ratio = difflib.SequenceMatcher(None, ref, got).ratio()
            print(f"| {kind} ({lang}) | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
