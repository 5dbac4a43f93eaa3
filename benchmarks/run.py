"""``make bench``: run every benchmark module (``benchmarks/bench_*.py``) or the ones named.

Each module has ``main(argv) -> int`` and prints a Markdown section with the machine line;
the figures we keep go to ``benchmarks/RESULTS.md``.

    python -m benchmarks.run                 # all
    python -m benchmarks.run ingest pipeline # some
    python -m benchmarks.run fleet_screen    # /fleet and /progress in Chromium, alerts (10,000 devices)

A new ``bench_<name>.py`` is picked up by its file name; shared data helpers live beside them
without the prefix (``fleetdata.py``: the fleet's databases and the province-scale data set).
"""

import importlib
import sys
from pathlib import Path

from benchmarks.harness import machine


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    here = Path(__file__).resolve().parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    chosen = names or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; available: {available}\n")
        return 2
    print(f"# Benchmarks\n\nMachine: {machine()}\n", flush=True)
    status = 0
    for name in chosen:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n## {name}\n", flush=True)
        status |= int(module.main([]))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
