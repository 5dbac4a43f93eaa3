"""Corners and the ``cut_off`` verdict through the whole pipeline.

Sources, each reported on its own row:

- ``composite ...``: documents laid on a cluttered desk with a known perspective, wholly inside
  the frame (corner IoU, ``cut_off`` false alarms) or with a corner or side beyond it (``cut_off``
  recall). The documents are the generator's Vietnamese papers and, when the dev set is there,
  its real pages (never its reserved ``roboflow_receipt_invoice`` folder).
- ``scan ...``: the dev set's real scans and renders as they are: whole pages, photographed or
  scanned edge to edge, so every ``cut_off`` is a false alarm; and the same pages with a third cut
  away through the text, where ``cut_off`` must be raised.
- ``--data DIR``: real photos with hand-marked corners, ``corners.csv`` with rows
  ``path,x0,y0,x1,y1,x2,y2,x3,y3,state`` (corners in pixels clockwise from top-left; state
  ``whole`` or ``cut``; empty corners for a cut document).

    python -m benchmarks.eval_geometry
    python -m benchmarks.eval_geometry --data /work/realdata/corners --composites 0

Prints mean and median IoU, the share at 0.9 or better, ``cut_off`` raised on whole documents
and found on cut ones, per source.
"""

import argparse
import csv
import math
import random
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.bench_quality import dev_data
from device.inference import synthetic
from device.inference.pipeline import PagePipeline, load_image
from training.reserved import is_reserved_path

Img = NDArray[Any]


@dataclass
class Case:
    source: str
    name: str
    image: Img
    quad: NDArray[np.float32] | None  # truth, None when unknown
    whole: bool
    dpi: float | None
    kind: str


@dataclass
class Tally:
    ious: list[float] = field(default_factory=list)
    whole: int = 0
    whole_flagged: int = 0
    cut: int = 0
    cut_found: int = 0
    misses: list[str] = field(default_factory=list)


def iou(a: NDArray[Any] | None, b: NDArray[Any]) -> float:
    """Intersection over union of two convex quadrilaterals (0 when ``a`` is None: nothing found,
    the frame was taken as the page)."""
    if a is None:
        return 0.0
    pa, pb = np.asarray(a, np.float32).reshape(4, 2), np.asarray(b, np.float32).reshape(4, 2)
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    union = cv2.contourArea(pa) + cv2.contourArea(pb) - inter
    return float(inter / union) if union > 0 else 0.0


def _documents(root: Path | None, n: int) -> list[tuple[str, Img]]:
    from training import generator

    docs: list[tuple[str, Img]] = []
    doctypes = [d for d in generator.DOCTYPES if d != "other"]
    for i in range(n):
        doctype = doctypes[i % len(doctypes)]
        dpi = 300 if doctype == "id_card" else 100
        docs.append((f"generated {doctype}", generator.render(doctype, 7000 + i, split="heldout", dpi=dpi)))
    if root is not None:
        for name, image, _ in _real_pages(root, whole_documents_only=True):
            small = cv2.resize(image, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
            docs.append((f"real {name.split('/')[0]}", small))
    return docs


def _real_pages(root: Path, whole_documents_only: bool = False) -> Iterator[tuple[str, Img, float | None]]:
    """The dev set's pages; ``whole_documents_only``: without the scans of a receipt lying on a
    larger bed (the document is only part of those images)."""
    with (root / "labels.csv").open() as f:
        for row in csv.DictReader(f):
            rel = row["path"]
            if is_reserved_path(Path(rel)):
                continue
            if whole_documents_only and "uncropped" in (row.get("note") or ""):
                continue
            loaded = load_image(root / rel)
            yield rel, loaded.image, loaded.dpi


def composites(docs: list[tuple[str, Img]], seed: int = 0) -> Iterator[Case]:
    """Each document once wholly inside a 1600x1200 frame and once running past its edge."""
    rng = random.Random(seed)
    fw, fh = 1600, 1200
    for i, (source, doc) in enumerate(docs):
        h, w = doc.shape[:2]
        if w > h * 1.2 and rng.random() < 0.5:
            doc = cv2.rotate(doc, cv2.ROTATE_90_CLOCKWISE)
            h, w = w, h
        for whole in (True, False):
            area = rng.uniform(0.25, 0.6)
            s = min(math.sqrt(area * fw * fh / (w * h)), 0.92 * fh / h, 0.92 * fw / w)
            qw, qh = w * s, h * s
            cx, cy = fw / 2 + rng.uniform(-0.1, 0.1) * fw, fh / 2 + rng.uniform(-0.08, 0.08) * fh
            angle = math.radians(rng.uniform(-12, 12))
            corners = []
            for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
                x, y = dx * qw * rng.uniform(0.93, 1.0), dy * qh * rng.uniform(0.95, 1.0)
                corners.append((cx + x * math.cos(angle) - y * math.sin(angle),
                                cy + x * math.sin(angle) + y * math.cos(angle)))
            q = np.array(corners, np.float32)
            if whole:
                # Keep the document inside with a margin of at least 1.5% of the frame.
                lo = q.min(axis=0) - np.array([0.015 * fw, 0.015 * fh])
                hi = q.max(axis=0) - np.array([0.985 * fw, 0.985 * fh])
                q -= np.minimum(lo, 0) + np.maximum(hi, 0)
                if (q.min(axis=0) < 0.01 * min(fw, fh)).any() or (q.max(axis=0) > [fw * 0.99, fh * 0.99]).any():
                    continue
            else:
                side = rng.randrange(4)
                shift = rng.uniform(0.08, 0.25)
                offset = [(-shift * qw, 0), (0, -shift * qh), (shift * qw, 0), (0, shift * qh)][side]
                edge_to = [q[:, 0].min(), q[:, 1].min(), fw - q[:, 0].max(), fh - q[:, 1].max()][side]
                # Move the document to touch that side of the frame, then on past it.
                q += np.array(offset, np.float32) + np.array(
                    [(-edge_to, 0), (0, -edge_to), (edge_to, 0), (0, edge_to)][side], np.float32
                )
            scene = synthetic.camera_scene(doc, frame=(fw, fh), quad=[tuple(p) for p in q.tolist()], seed=i)
            yield Case(f"composite {source}", f"{source}-{i}", scene.image, scene.quad if whole else None,
                       whole, None, "camera")


def scans(root: Path) -> Iterator[Case]:
    for rel, image, dpi in _real_pages(root):
        folder = rel.split("/")[0]
        dpi = dpi if dpi and dpi >= 100 else 200.0
        yield Case(f"scan {folder} whole", rel, image, None, True, dpi, "scan")
        h, w = image.shape[:2]
        # A receipt scanned without its top, a page without its left third. A receipt lying on a
        # larger bed runs down most of the bed's height but covers only part of its width:
        # cutting the bed's left third would leave it whole, so receipts lose their top by label.
        receipt = "receipt" in folder or h > 2 * w
        cut = image[h // 3 :, :] if receipt else image[:, w // 3 :]
        yield Case(f"scan {folder} cut", rel, np.ascontiguousarray(cut), None, False, dpi, "scan")


def annotated(folder: Path) -> Iterator[Case]:
    with (folder / "corners.csv").open() as f:
        for row in csv.DictReader(f):
            loaded = load_image(folder / row["path"])
            coords = [row.get(k, "") for k in ("x0", "y0", "x1", "y1", "x2", "y2", "x3", "y3")]
            quad = np.array([float(v) for v in coords], np.float32).reshape(4, 2) if all(coords) else None
            yield Case(f"photos {folder.name}", row["path"], loaded.image, quad, row["state"] == "whole",
                       None, "camera")


def evaluate(cases: Iterator[Case], pipeline: PagePipeline, verbose: bool) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for case in cases:
        t = tallies.setdefault(case.source, Tally())
        result = pipeline.process(case.image, dpi=case.dpi, source=case.kind)
        flagged = "cut_off" in result.verdict.codes
        score = None
        if case.quad is not None:
            score = iou(result.quad, case.quad)
            t.ious.append(score)
            if score < 0.9:
                t.misses.append(f"{case.name} iou {score:.2f}")
        if case.whole:
            t.whole += 1
            t.whole_flagged += flagged
            if flagged:
                t.misses.append(f"{case.name} whole but cut_off")
        else:
            t.cut += 1
            t.cut_found += flagged
            if not flagged:
                t.misses.append(f"{case.name} cut but not cut_off")
        if verbose:
            print(f"{case.source}\t{case.name}\tiou {score}\tcut_off {flagged}\t{result.verdict.codes}",
                  file=sys.stderr)
    return tallies


def report(tallies: dict[str, Tally]) -> None:
    print("| source | n | mean IoU | median IoU | IoU >= 0.9 | cut_off on whole | cut_off found on cut |")
    print("|---|---|---|---|---|---|---|")
    total = Tally()
    for source, t in sorted(tallies.items()):
        _row(source, t)
        total.ious += t.ious
        total.whole += t.whole
        total.whole_flagged += t.whole_flagged
        total.cut += t.cut
        total.cut_found += t.cut_found
    _row("**all**", total)
    for source, t in sorted(tallies.items()):
        if t.misses:
            print(f"\n{source}: {'; '.join(t.misses[:10])}{' ...' if len(t.misses) > 10 else ''}")


def _row(source: str, t: Tally) -> None:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({a / b:.0%})" if b else "-"

    if t.ious:
        mean, median = f"{statistics.mean(t.ious):.3f}", f"{statistics.median(t.ious):.3f}"
        good = pct(sum(v >= 0.9 for v in t.ious), len(t.ious))
    else:
        mean = median = good = "-"
    print(f"| {source} | {t.whole + t.cut} | {mean} | {median} | {good} | {pct(t.whole_flagged, t.whole)} | "
          f"{pct(t.cut_found, t.cut)} |")


def marked(root: Path, corners: Path) -> Iterator[Case]:
    """The dev set's pages whose corners were marked by hand (``benchmarks/data/dev_corners.json``:
    coordinates only); a page whose bytes changed since it was marked is left out."""
    import hashlib
    import json

    for page in json.loads(corners.read_text(encoding="utf-8"))["pages"]:
        path = root / page["path"]
        if is_reserved_path(Path(page["path"])) or not path.is_file():
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != page["sha256"]:
            print(f"{page['path']}: changed since its corners were marked, left out", file=sys.stderr)
            continue
        loaded = load_image(path)
        dpi = loaded.dpi if loaded.dpi and loaded.dpi >= 100 else None
        yield Case(f"marked {page['path'].split('/')[0]}", page["path"], loaded.image,
                   np.array(page["corners"], np.float32), page["state"] == "whole", dpi, page["kind"])


CORNERS = Path(__file__).resolve().parent / "data" / "dev_corners.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="folder of real photos with corners.csv")
    parser.add_argument("--composites", type=int, default=27, help="generated papers to lay on desks (0: none)")
    parser.add_argument("--no-dev", action="store_true", help="leave out the dev set's real pages")
    parser.add_argument("--verbose", action="store_true", help="one line per image on stderr")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    root = None if args.no_dev else dev_data()
    with PagePipeline() as pipeline:
        tallies: dict[str, Tally] = {}
        if args.data is not None:
            tallies.update(evaluate(annotated(args.data), pipeline, args.verbose))
        if args.composites:
            tallies.update(evaluate(composites(_documents(root, args.composites)), pipeline, args.verbose))
        if root is not None:
            tallies.update(evaluate(marked(root, CORNERS), pipeline, args.verbose))
            tallies.update(evaluate(scans(root), pipeline, args.verbose))
    print(f"### Corners and cut_off (dev data: {root or 'none'}; composites: {args.composites}; "
          f"photos: {args.data or 'none'})\n")
    report(tallies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
