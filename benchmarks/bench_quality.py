"""Calibration of the quality verdict: real pages degraded in controlled ways, each code's
precision and recall, and the sharpness threshold sweep the default comes from.

The real pages are the openly licensed ones in ``../shared/data/dev`` (or ``$SOHOA_DEV_DATA``);
without them this benchmark says so and exits 0. Labels: each variant names the codes it must
raise (``expect``) and the codes that are fair either way (``ignore``, e.g. ``low_resolution``
when a page is shrunk into a camera frame); any other code raised is a false positive.

    python -m benchmarks.run quality
"""

import csv
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import machine
from device.inference import synthetic
from device.inference.config import QualityConfig
from device.inference.pipeline import PagePipeline, PageResult, load_image
from device.inference.quality import MESSAGES, judge

Img = np.ndarray

CODES = list(MESSAGES)


def dev_data() -> Path | None:
    env = os.environ.get("SOHOA_DEV_DATA")
    here = Path(__file__).resolve().parent.parent
    for candidate in ([Path(env)] if env else []) + [here.parent / "shared" / "data" / "dev"]:
        if (candidate / "labels.csv").exists():
            return candidate
    return None


@dataclass(frozen=True)
class Base:
    name: str
    image: Img
    dpi: float


def base_pages(root: Path, limit: int = 40) -> list[Base]:
    """Upright real pages with a known dpi (docbank renders are A4 at 200 dpi)."""
    pages: list[Base] = []
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        path = root / row["path"]
        note = row.get("note") or ""
        if row["label"] == "printed_page" and note != "rotation_deg=0":
            continue
        if row["label"] == "receipt" and note != "crop_state=cropped":
            continue
        if row["label"] not in ("scientific_paper", "printed_page", "receipt"):
            continue
        if any(s in row["path"] for s in ("hebrew", "deva", "deslant", "segmode")):
            continue
        try:
            loaded = load_image(path)
        except ValueError:
            continue
        dpi = loaded.dpi if loaded.dpi and loaded.dpi >= 150 else 200.0
        if min(loaded.image.shape[:2]) < 600:
            continue
        pages.append(Base(path.name, loaded.image, dpi))
    return pages[:limit]


@dataclass(frozen=True)
class Variant:
    name: str
    make: Callable[[Base], tuple[Img, float | None, str | None]]
    expect: frozenset[str]
    ignore: frozenset[str] = frozenset()


def _same(f: Callable[[Img], Img]) -> Callable[[Base], tuple[Img, float | None, str | None]]:
    return lambda b: (f(b.image), b.dpi, "scan")


def _scaled(factor: float) -> Callable[[Base], tuple[Img, float | None, str | None]]:
    return lambda b: (synthetic.downscale(b.image, factor), b.dpi * factor, "scan")


def _camera(area: float) -> Callable[[Base], tuple[Img, float | None, str | None]]:
    def make(b: Base) -> tuple[Img, float | None, str | None]:
        fw, fh = 1600, 1200
        h, w = b.image.shape[:2]
        s = min(np.sqrt(area * fw * fh / (w * h)), 0.9 * fh / h, 0.9 * fw / w)
        qw, qh = w * s, h * s
        x0, y0 = (fw - qw) / 2, (fh - qh) / 2
        quad = [(x0, y0), (x0 + qw, y0 + qh * 0.02), (x0 + qw * 0.98, y0 + qh), (x0 + qw * 0.01, y0 + qh * 0.99)]
        image = synthetic.camera_scene(b.image, frame=(fw, fh), quad=quad, seed=len(b.name)).image
        # A long receipt cannot fill 40% of a 4:3 frame: its truth is too_small all the same.
        _AREA_TRUTH[id(image)] = qw * qh / (fw * fh)
        return image, None, "camera"

    return make


_AREA_TRUTH: dict[int, float] = {}


def _blank(b: Base) -> tuple[Img, float | None, str | None]:
    h, w = b.image.shape[:2]
    back = synthetic.blank_back(w, h, seed=len(b.name), show_through=False)
    ghost = cv2.flip(b.image, 1).astype(np.float32)
    faint = 255 - (255 - ghost) * 0.1
    return np.minimum(back, faint.astype(np.uint8)), b.dpi, "scan"


def _crop_through(b: Base) -> tuple[Img, float | None, str | None]:
    h, w = b.image.shape[:2]
    return np.ascontiguousarray(b.image[h // 3 :, w // 4 :]), b.dpi, "scan"


VARIANTS = [
    Variant("clean", _same(lambda i: i), frozenset()),
    Variant("blur_0.0005", _same(lambda i: synthetic.blur(i, 0.0005)), frozenset()),
    Variant("blur_0.0015", _same(lambda i: synthetic.blur(i, 0.0015)), frozenset({"blurry"})),
    Variant("blur_0.0025", _same(lambda i: synthetic.blur(i, 0.0025)), frozenset({"blurry"})),
    Variant("motion_0.002", _same(lambda i: synthetic.motion_blur(i, 0.002, 20)), frozenset()),
    Variant("motion_0.007", _same(lambda i: synthetic.motion_blur(i, 0.007, 20)), frozenset({"blurry"})),
    Variant("dark_0.35", _same(lambda i: synthetic.exposure(i, 0.35)), frozenset({"too_dark"})),
    Variant("dim_0.75", _same(lambda i: synthetic.exposure(i, 0.75)), frozenset()),
    Variant("bright_2.0+140", _same(lambda i: synthetic.exposure(i, 2.0, 140)), frozenset({"too_bright"}),
            frozenset({"blank"})),
    Variant("bright_1.2+20", _same(lambda i: synthetic.exposure(i, 1.2, 20)), frozenset()),
    Variant("glare", _same(lambda i: synthetic.glare(synthetic.exposure(i, 0.8), (0.6, 0.45), 0.1)),
            frozenset({"glare"})),
    Variant("rotate_7", _same(lambda i: synthetic.rotate(i, 7.0)), frozenset({"skewed"})),
    Variant("rotate_-1.5", _same(lambda i: synthetic.rotate(i, -1.5)), frozenset()),
    Variant("crop_through_text", _crop_through, frozenset({"cut_off"})),
    Variant("downscale_150dpi", lambda b: _scaled(150 / b.dpi)(b), frozenset({"low_resolution"})),
    Variant("blank_back", _blank, frozenset({"blank"})),
    Variant("camera_area_0.08", _camera(0.08), frozenset({"too_small"}), frozenset({"low_resolution", "blurry"})),
    Variant("camera_area_0.4", _camera(0.4), frozenset(), frozenset({"low_resolution", "blurry"})),
]


def run_set(pipeline: PagePipeline, pages: list[Base]) -> list[tuple[Variant, PageResult]]:
    out = []
    for base in pages:
        for v in VARIANTS:
            img, dpi, source = v.make(base)
            area = _AREA_TRUTH.pop(id(img), None)
            if area is not None and area < 0.2 and "too_small" not in v.expect:
                v = Variant(v.name, v.make, v.expect | {"too_small"}, v.ignore)
            out.append((v, pipeline.process(img, dpi=dpi, source=source)))
    return out


def score(results: list[tuple[Variant, list[str]]]) -> dict[str, tuple[int, int, int]]:
    """Per code: true positives, false positives, false negatives."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for v, codes in results:
        got = set(codes)
        for code in CODES:
            if code in v.ignore:
                continue
            if code in v.expect and code in got:
                tp[code] += 1
            elif code in v.expect:
                fn[code] += 1
            elif code in got:
                fp[code] += 1
    return {c: (tp[c], fp[c], fn[c]) for c in CODES}


def _pr(t: tuple[int, int, int]) -> tuple[float, float]:
    tp, fp, fn = t
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / (tp + fn) if tp + fn else float("nan"))


def main(argv: list[str]) -> int:
    root = dev_data()
    if root is None:
        print("Skipped: the real pages (../shared/data/dev) are not on this machine.")
        return 0
    pages = base_pages(root)
    print(f"Machine: {machine()}\n")
    print(f"Labelled set: {len(pages)} real pages from `{root.name}/` x {len(VARIANTS)} controlled variants "
          f"= {len(pages) * len(VARIANTS)} images.\n")
    start = time.perf_counter()
    results = run_set(PagePipeline(), pages)
    elapsed = time.perf_counter() - start
    config = QualityConfig()
    verdicts = [(v, r.verdict.codes) for v, r in results]
    table = score(verdicts)
    print("| code | precision | recall | TP | FP | FN |\n|---|---|---|---|---|---|")
    for code, t in table.items():
        p, r = _pr(t)
        print(f"| `{code}` | {p:.2f} | {r:.2f} | {t[0]} | {t[1]} | {t[2]} |")
    # Where each variant went wrong, to see what to fix.
    wrong: Counter[str] = Counter()
    for v, codes in verdicts:
        extra = set(codes) - v.expect - v.ignore
        missing = v.expect - set(codes)
        for c in extra:
            wrong[f"{v.name}: raised {c}"] += 1
        for c in missing:
            wrong[f"{v.name}: missed {c}"] += 1
    if wrong:
        print("\nErrors by variant:\n")
        for k, n in wrong.most_common(40):
            print(f"- {k} ({n})")
    # Sharpness sweep: the threshold with the best F1 on blur variants vs their sharp twins.
    print("\nSharpness threshold sweep (blurry = blur >= 0.0015 or motion 0.007; sharp = clean, blur 0.0005, "
          "motion 0.002):\n")
    print("| min_sharpness | precision | recall |\n|---|---|---|")
    for thr in (0.4, 0.45, 0.48, 0.5, 0.52, 0.55, 0.6):
        cfg = config.model_copy(update={"min_sharpness": thr})
        sub = [(v, judge(r.measures, cfg).codes) for v, r in results
               if v.name in ("clean", "blur_0.0005", "blur_0.0015", "blur_0.0025", "motion_0.002", "motion_0.007")]
        p, r = _pr(score(sub)["blurry"])
        print(f"| {thr:.2f} | {p:.2f} | {r:.2f} |")
    print(f"\n{len(results)} images in {elapsed:.0f} s.")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
