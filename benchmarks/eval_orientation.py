"""Orientation of pages through the whole pipeline: real pages and generated Vietnamese papers,
each made upright from its label and then turned 0, 90, 180 and 270 degrees.

For each source it prints the accuracy (the turn the pipeline chose is the one that makes the
page upright), how often an upright page was turned (the error that hurts most: a page filed
sideways), how often a turned page was turned the wrong way, how often it was left as it was,
how often Tesseract's OSD was asked (upright pages, turned pages) and the pipeline's CPU time per
page (one process, one thread; CPU time, not wall-clock, so that other work on the machine does
not count).

    python -m benchmarks.eval_orientation                    # ../shared/data/dev and generated papers
    python -m benchmarks.eval_orientation --data DIR         # a folder with labels.csv
    python -m benchmarks.eval_orientation --generated 0      # real pages only

``labels.csv`` has ``path,label,note`` rows; ``note`` may say ``rotation_deg=N``, the clockwise
turn that makes the page upright (rows with an empty rotation are skipped). Images of the sets
reserved for the independent evaluation are never read: their folder names
(:func:`training.reserved.is_reserved_path`) are skipped before anything is opened, and a file
whose bytes are a known reserved image (``training/reserved_sha256.txt``) before it is decoded.
"""

import argparse
import csv
import logging
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.bench_quality import dev_data
from device.inference import geometry, synthetic
from device.inference.pipeline import PagePipeline, load_image
from training.reserved import is_reserved_path, reserved_sha256, sha256_of

Img = NDArray[Any]

#: Labels of the dev set found wrong by eye, with the right clockwise turn: the text of
#: ``devatest-rotated-270.png`` runs bottom to top, so 90 degrees (not 270) sets it upright.
LABEL_FIXES = {"tesseract_test/devatest-rotated-270.png": 90}


@dataclass
class Sample:
    source: str
    name: str
    image: Img  # upright
    dpi: float | None
    kind: str  # "scan" or "camera"


@dataclass
class Tally:
    n: int = 0
    right: int = 0
    upright_n: int = 0
    upright_turned: int = 0
    turned_n: int = 0
    turned_wrong: int = 0
    turned_left: int = 0
    upright_asked: int = 0
    turned_asked: int = 0
    ms: list[float] = field(default_factory=list)
    upright_cpu_ms: list[float] = field(default_factory=list)
    turned_cpu_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def add(self, name: str, turn: int, chosen: int, ms: float, cpu_ms: float = 0.0, asked: bool = False) -> None:
        expected = (360 - turn) % 360
        self.n += 1
        self.ms.append(ms)
        self.right += chosen == expected
        if turn == 0:
            self.upright_n += 1
            self.upright_turned += chosen != 0
            self.upright_asked += asked
            self.upright_cpu_ms.append(cpu_ms)
        else:
            self.turned_n += 1
            self.turned_wrong += chosen not in (0, expected)
            self.turned_left += chosen == 0
            self.turned_asked += asked
            self.turned_cpu_ms.append(cpu_ms)
        if chosen != expected:
            self.misses.append(f"{name}@{turn}->{chosen}")


def real_samples(root: Path) -> Iterator[Sample]:
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    reserved = reserved_sha256()
    for row in rows:
        rel = row["path"]
        if is_reserved_path(Path(rel)):
            continue
        note = row.get("note") or ""
        if rel in LABEL_FIXES:
            upright_turn = LABEL_FIXES[rel]
        elif note.startswith("rotation_deg="):
            value = note.split("=", 1)[1].strip()
            if not value:
                continue
            upright_turn = int(value)
        elif row["label"] in ("scientific_paper", "receipt"):
            upright_turn = 0
        else:
            continue
        if sha256_of(root / rel) in reserved:
            continue
        loaded = load_image(root / rel)
        image = geometry.turn(loaded.image, upright_turn)
        dpi = loaded.dpi if loaded.dpi and loaded.dpi >= 100 else 200.0
        yield Sample(Path(rel).parts[0], Path(rel).name, image, dpi, "scan")


def generated_samples(n: int) -> Iterator[Sample]:
    """Rendered Vietnamese papers (the training generator's held-out look): scanned pages, and
    cards and certificates photographed on a desk."""
    from training import generator

    doctypes = [d for d in generator.DOCTYPES if d != "other"]
    for i in range(n):
        doctype = doctypes[i % len(doctypes)]
        page = generator.render(doctype, 9000 + i, split="heldout", dpi=200)
        yield Sample(f"generated {doctype}", f"{doctype}-{i}", page, 200.0, "scan")
        if doctype in ("id_card", "birth_certificate", "land_certificate", "marriage_certificate"):
            card = generator.render(doctype, 9500 + i, split="heldout", dpi=300 if doctype == "id_card" else 150)
            h, w = card.shape[:2]
            fw, fh = 1600, 1200
            s = min(0.75 * fw / w, 0.75 * fh / h)
            qw, qh = w * s, h * s
            x0, y0 = (fw - qw) / 2, (fh - qh) / 2
            quad = [(x0, y0 + 6), (x0 + qw, y0), (x0 + qw - 8, y0 + qh), (x0 + 5, y0 + qh - 4)]
            scene = synthetic.camera_scene(card, frame=(fw, fh), quad=quad, seed=i).image
            yield Sample(f"generated {doctype} photo", f"{doctype}-photo-{i}", scene, None, "camera")


def evaluate(samples: Iterator[Sample], pipeline: PagePipeline, verbose: bool) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for s in samples:
        tally = tallies.setdefault(s.source, Tally())
        for turn in (0, 90, 180, 270):
            image = np.ascontiguousarray(geometry.turn(s.image, turn))
            calls = pipeline.osd.calls
            start, cpu = time.perf_counter(), time.process_time()
            result = pipeline.process(image, dpi=s.dpi, source=s.kind)
            cpu_ms = (time.process_time() - cpu) * 1000
            ms = (time.perf_counter() - start) * 1000
            tally.add(s.name, turn, result.orientation, ms, cpu_ms, pipeline.osd.calls > calls)
            if verbose:
                print(f"{s.source}\t{s.name}\tturn {turn}\tchose {result.orientation}"
                      f"\tconf {result.orientation_confidence:.2f}\t{ms:.0f} ms", file=sys.stderr)
    return tallies


def report(tallies: dict[str, Tally]) -> None:
    print("| source | pages x 4 turns | accuracy | upright turned | turned pages turned wrongly | "
          "turned pages left | OSD asked: upright / turned | CPU ms upright: median (p90) | CPU ms turned: median |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = Tally()
    for source, t in sorted(tallies.items()):
        _row(source, t)
        total.n += t.n
        total.right += t.right
        total.upright_n += t.upright_n
        total.upright_turned += t.upright_turned
        total.turned_n += t.turned_n
        total.turned_wrong += t.turned_wrong
        total.turned_left += t.turned_left
        total.upright_asked += t.upright_asked
        total.turned_asked += t.turned_asked
        total.ms += t.ms
        total.upright_cpu_ms += t.upright_cpu_ms
        total.turned_cpu_ms += t.turned_cpu_ms
    _row("**all**", total)
    for source, t in sorted(tallies.items()):
        if t.misses:
            print(f"\n{source} misses: {', '.join(t.misses[:12])}{' ...' if len(t.misses) > 12 else ''}")


def _row(source: str, t: Tally) -> None:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({a / b:.1%})" if b else "-"

    def median(xs: list[float]) -> str:
        return f"{statistics.median(xs):.0f}" if xs else "-"

    def p90(xs: list[float]) -> str:
        return f"{sorted(xs)[int(0.9 * (len(xs) - 1))]:.0f}" if xs else "-"

    print(f"| {source} | {t.upright_n} | {pct(t.right, t.n)} | {pct(t.upright_turned, t.upright_n)} | "
          f"{pct(t.turned_wrong, t.turned_n)} | {pct(t.turned_left, t.turned_n)} | "
          f"{t.upright_asked}/{t.upright_n} / {t.turned_asked}/{t.turned_n} | "
          f"{median(t.upright_cpu_ms)} ({p90(t.upright_cpu_ms)}) | {median(t.turned_cpu_ms)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="folder with labels.csv (default: the dev set)")
    parser.add_argument("--generated", type=int, default=18, help="generated Vietnamese papers to add (0: none)")
    parser.add_argument("--verbose", action="store_true", help="one line per page and turn on stderr")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.verbose:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
        logging.getLogger("device.inference.pipeline").setLevel(logging.DEBUG)
    root = args.data or dev_data()
    samples: list[Iterator[Sample]] = []
    if root is not None:
        samples.append(real_samples(root))
    elif args.data is None:
        print("(no dev data found: generated papers only)")
    if args.generated:
        samples.append(generated_samples(args.generated))

    def chained() -> Iterator[Sample]:
        for it in samples:
            yield from it

    with PagePipeline() as pipeline:
        tallies = evaluate(chained(), pipeline, args.verbose)
    print(f"### Orientation through the pipeline (data: {root or 'none'}; generated: {args.generated})\n")
    report(tallies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
