"""The kiosk's two light paths against the full page judgement, on real pages: does
``PagePipeline.analyze_preview`` (live guidance: outline and quality only) find the same quality
issues as ``process``, and does ``PagePipeline.read_codes`` (the slip's QR) read the same codes?
Per class, with median times of the three.

    python -m benchmarks.eval_preview            # ../shared/data/dev (or SOHOA_DEV_DATA)

Pages of a set reserved for the independent evaluation are never read (by folder and sha256).
"""

import csv
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from benchmarks.bench_quality import dev_data
from device.inference.pipeline import PagePipeline, load_image
from training.reserved import is_reserved_path, reserved_sha256, sha256_of


@dataclass
class Tally:
    pages: int = 0
    same_issues: int = 0
    with_codes: int = 0
    same_codes: int = 0
    full_ms: list[float] = field(default_factory=list)
    preview_ms: list[float] = field(default_factory=list)
    codes_ms: list[float] = field(default_factory=list)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def main() -> int:
    root = dev_data()
    if root is None:
        sys.stderr.write("eval_preview: no labelled dev data (set SOHOA_DEV_DATA)\n")
        return 1
    pipe = PagePipeline()
    reserved = reserved_sha256()
    tallies: dict[str, Tally] = defaultdict(Tally)
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        path = root / row["path"]
        if is_reserved_path(path) or sha256_of(path) in reserved:
            continue
        image = load_image(path, pipe.config.max_pixels).image
        start = time.perf_counter()
        full = pipe.process(image, source="camera")
        full_ms = _ms(start)
        start = time.perf_counter()
        preview = pipe.analyze_preview(image)
        preview_ms = _ms(start)
        start = time.perf_counter()
        codes = pipe.read_codes(image)
        codes_ms = _ms(start)
        t = tallies[row["label"]]
        t.pages += 1
        t.same_issues += sorted(full.verdict.codes) == sorted(preview.verdict.codes)
        wanted = sorted(c.text or "" for c in full.codes)
        t.with_codes += bool(wanted)
        t.same_codes += wanted == sorted(c.text or "" for c in codes)
        t.full_ms.append(full_ms)
        t.preview_ms.append(preview_ms)
        t.codes_ms.append(codes_ms)
    print("| class | pages | same quality issues | pages with a code | same codes | full ms | preview ms "
          "| read_codes ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, t in sorted(tallies.items()):
        print(f"| {label} | {t.pages} | {t.same_issues} | {t.with_codes} | {t.same_codes} | "
              f"{statistics.median(t.full_ms):.0f} | {statistics.median(t.preview_ms):.0f} | "
              f"{statistics.median(t.codes_ms):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
