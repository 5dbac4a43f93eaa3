"""Document type, quality verdict and orientation on real Vietnamese papers taken from public
repositories, through the page pipeline as ``sohoa-device inspect`` runs it (found, flattened,
turned upright, typed from the image model and, when it is unsure, the printed title).

    SOHOA_VN_DATA=DIR python -m benchmarks.eval_vnset [--data DIR] [--half a|b|all] [--no-text]
        [--text-when always|unsure] [--save OUT.csv] [--load OUT.csv]

The images are not in the repository: they show real people's papers. The manifest
(``benchmarks/data/vnset_manifest.csv``) names each one's public source (repository, path,
commit), licence, label and sha256; ``DIR`` holds them under the manifest's file names. A file
missing from ``DIR``, or whose bytes do not match the manifest's sha256, is skipped and counted;
with no ``DIR`` at all, or none of its files, the harness says so and exits 0.

``--half`` splits the set by the sha256 (its first hex digit even: ``a``, odd: ``b``) so that
one half can calibrate a floor or a keyword and the other report it; no personal data (no text
read from a page) is printed or saved, only labels, answers, confidences and verdict codes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2

from benchmarks.eval_doctype import report, sweep
from device.inference.config import DoctypeConfig, TitleConfig
from device.inference.doctype import DOCTYPES, UNSURE, load_classifier_or_fallback
from device.inference.pipeline import PagePipeline

MANIFEST = Path(__file__).parent / "data" / "vnset_manifest.csv"


@dataclass(frozen=True)
class Entry:
    file: str
    label: str
    capture: str
    upright: bool | None  # known to be upright in the file (None: not annotated)
    sha256: str

    @property
    def half(self) -> str:
        return "a" if int(self.sha256[0], 16) % 2 == 0 else "b"


@dataclass(frozen=True)
class Typed:
    entry: Entry
    answer: str
    confidence: float
    orientation: int
    issues: tuple[str, ...]
    ms: float


def read_manifest(path: Path = MANIFEST) -> list[Entry]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        if r["label"] not in DOCTYPES:
            raise ValueError(f"{path}: {r['file']}: label {r['label']!r} is not a document type")
        upright = {"yes": True, "no": False}.get(r.get("upright", "").strip())
        out.append(Entry(r["file"], r["label"], r["capture"], upright, r["sha256"].lower()))
    return out


def present(entries: list[Entry], data: Path) -> tuple[list[Entry], Counter[str]]:
    """The entries whose file is in ``data`` with the manifest's bytes; the others counted."""
    found: list[Entry] = []
    skipped: Counter[str] = Counter()
    for e in entries:
        p = data / e.file
        if not p.is_file():
            skipped["missing"] += 1
        elif hashlib.sha256(p.read_bytes()).hexdigest() != e.sha256:
            skipped["sha256 differs"] += 1
        else:
            found.append(e)
    return found, skipped


def run(entries: list[Entry], data: Path, cfg: DoctypeConfig) -> list[Typed]:
    out = []
    with PagePipeline(classifier=load_classifier_or_fallback(cfg)) as pipeline:
        for n, e in enumerate(entries, 1):
            start = time.perf_counter()
            r = pipeline.process_file(data / e.file)
            ms = (time.perf_counter() - start) * 1000
            out.append(Typed(e, r.doctype or "none", float(r.confidence or 0.0), r.orientation,
                             tuple(r.verdict.codes), ms))
            print(f"\r{n}/{len(entries)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def geometry_report(typed: list[Typed]) -> str:
    """Quality issues and turns per class: what a clerk would be asked to retake or see turned."""
    lines = ["| class | pages | ok verdict | cut_off | low_resolution | other issues | turned 90/180/270 "
             "| known upright, turned |", "|---|---|---|---|---|---|---|---|"]
    for c in DOCTYPES:
        mine = [t for t in typed if t.entry.label == c]
        if not mine:
            continue
        ok = sum(not t.issues for t in mine)
        cut = sum("cut_off" in t.issues for t in mine)
        lowres = sum("low_resolution" in t.issues for t in mine)
        other = Counter(i for t in mine for i in t.issues if i not in ("cut_off", "low_resolution"))
        turns = Counter(t.orientation for t in mine if t.orientation)
        known = [t for t in mine if t.entry.upright]
        wrong = sum(t.orientation != 0 for t in known)
        lines.append(f"| {c} | {len(mine)} | {ok} | {cut} | {lowres} | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(other.items())) or '-'} | "
                     f"{'/'.join(str(turns.get(a, 0)) for a in (90, 180, 270))} | "
                     f"{wrong}/{len(known)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eval_vnset", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("SOHOA_VN_DATA"),
                    help="folder holding the manifest's files (default: $SOHOA_VN_DATA)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--half", choices=("a", "b", "all"), default="all")
    ap.add_argument("--no-text", action="store_true", help="type from the image model alone")
    ap.add_argument("--text-when", choices=("always", "unsure"), default=None,
                    help="when the title is read (default: the device's configuration)")
    ap.add_argument("--min-confidence", type=float, default=None, help="unsure floor (default: the config's)")
    ap.add_argument("--save", type=Path, help="write file,truth,answer,confidence,orientation,issues,ms")
    ap.add_argument("--title", default="", help="heading of the report")
    ap.add_argument("--load", type=Path, help="report from a CSV written by --save instead of typing again")
    args = ap.parse_args(argv)
    entries = read_manifest(args.manifest)
    if args.half != "all":
        entries = [e for e in entries if e.half == args.half]
    floor = DoctypeConfig().min_confidence if args.min_confidence is None else args.min_confidence
    took = 0.0
    if args.load is not None:
        by_file = {e.file: e for e in entries}
        typed = []
        with args.load.open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                if r["file"] in by_file:
                    typed.append(Typed(by_file[r["file"]], r["answer"], float(r["confidence"]),
                                       int(r["orientation"]), tuple(filter(None, r["issues"].split(";"))),
                                       float(r["ms"])))
        skipped: Counter[str] = Counter()
    else:
        if args.data is None or not Path(args.data).is_dir():
            print("eval_vnset: no set here (give --data DIR or SOHOA_VN_DATA); nothing measured")
            return 0
        data = Path(args.data)
        entries, skipped = present(entries, data)
        if not entries:
            print(f"eval_vnset: none of the manifest's files is in {data} ({dict(skipped)}); nothing measured")
            return 0
        text = TitleConfig(timeout_s=600)  # accuracy, not speed: a slow reading is waited for
        if args.no_text:
            text = TitleConfig(enabled=False)
        elif args.text_when is not None:
            when: Literal["unsure", "always"] = args.text_when
            text = text.model_copy(update={"when": when})
        # Typed with floor 0 and the floor applied after (one run gives the floor table), except
        # when the title is read only for unsure pages: "unsure" is then relative to the floor, so
        # the device's floor is the classifier's own and the floor table is left out.
        reads_when_unsure = not args.no_text and text.when == "unsure"
        cfg = DoctypeConfig().model_copy(update={"text": text, "min_confidence": floor if reads_when_unsure else 0.0})
        cv2.setNumThreads(1)
        start = time.perf_counter()
        typed = run(entries, data, cfg)
        took = time.perf_counter() - start
        if args.save is not None:
            with args.save.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(["file", "truth", "answer", "confidence", "orientation", "issues", "ms"])
                w.writerows((t.entry.file, t.entry.label, t.answer, f"{t.confidence:.4f}", t.orientation,
                             ";".join(t.issues), f"{t.ms:.0f}") for t in typed)
    mode = "image only" if args.no_text else f"image + title read {args.text_when or 'as configured'}"
    if args.load is not None:
        mode = f"from {args.load.name}"
    results = [(t.entry.label, UNSURE if t.confidence < floor else t.answer, t.confidence) for t in typed]
    print(report(results, f"{args.title or args.manifest.name}, half {args.half}, {mode}, floor {floor}"))
    if not any(t.answer == UNSURE for t in typed):  # typed with floor 0: the floor table holds
        print("\n" + sweep([(t.entry.label, t.answer, t.confidence) for t in typed]))
    print("\n" + geometry_report(typed))
    if typed:
        print(f"\n{len(typed)} pages; median {statistics.median(t.ms for t in typed):.0f} ms a page (wall, "
              f"title readings waited for); {took:.0f} s in all; skipped: {dict(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
