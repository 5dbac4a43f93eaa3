"""Reading the title for the document type: its cost per page, and how long the page's result
(quality verdict included) waits for it, side by side for the two ways of asking it.

    python -m benchmarks.run doctype_text

The pipeline runs pinned to one core as in the pipeline benchmark; Tesseract runs in a child
process pinned to the other core (``OMP_THREAD_LIMIT=1``). Measured: the title reading alone
(wall and the child's CPU time); the pipeline's time per page, from the page to its result, with
the image model alone, with the title read on every page (``doctype.text.when: always``, the
behaviour before) and with the title read only when the image model is unsure (``when: unsure``,
the default), the medians and the ratio always/unsure, and on how many pages Tesseract was asked.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from benchmarks.harness import machine
from device.inference.config import DoctypeConfig, TitleConfig
from device.inference.doctype import DOCTYPES, load_classifier
from device.inference.pipeline import PagePipeline, load_image
from device.inference.titles import TitleReader, tesseract_has
from training.dataset import default_real_root
from training.generator import degrade, render

GOAL_PAGES_PER_MIN = 120


def _pages() -> dict[str, list[np.ndarray]]:
    def scan(doctype: str, seed: int, dpi: int) -> np.ndarray:
        return degrade(render(doctype, seed, split="heldout", dpi=dpi), seed, split="heldout", strength=0.4)

    sets = {
        "generated pages, every class, held-out style, 200 dpi (cards 400 dpi), 2 per class": [
            scan(d, 900_000 + 10 * i + k, 400 if d == "id_card" else 200)
            for i, d in enumerate(DOCTYPES) for k in range(2)
        ],
    }
    dev = default_real_root()
    real = sorted((dev / "docbank_samples").glob("*.jpg"))[:4] + sorted((dev / "softmatic_receipts").glob("*.jpg"))[:4]
    if real:
        name = "real pages of ../shared/data/dev (4 DocBank pages, 4 receipt scans)"
        sets[name] = [load_image(p).image for p in real]
    return sets


def _child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def main(argv: list[str]) -> int:
    if not tesseract_has("vie"):
        print("tesseract with Vietnamese is not installed: nothing to measure")
        return 0
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"Machine: {machine()}; pipeline on one core, tesseract on the other.\n")
    reader = TitleReader(TitleConfig(timeout_s=30))
    modes = {
        "image": DoctypeConfig(text=TitleConfig(enabled=False)),
        "always": DoctypeConfig(text=TitleConfig(timeout_s=30, when="always")),
        "unsure": DoctypeConfig(text=TitleConfig(timeout_s=30, when="unsure")),
    }
    print("| pages | title read: wall / tesseract CPU (medians) | page to result, image only | title on every "
          "page (always) | title when unsure (default) | always / unsure | pages read (unsure) | "
          "pace, unsure |")
    print("|---|---|---|---|---|---|---|---|")
    for name, pages in _pages().items():
        walls, cpus = [], []
        for page in pages:
            c0, t0 = _child_cpu(), time.perf_counter()
            reader.read(page)
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((_child_cpu() - c0) * 1000)
        # Interleaved, page by page, so the machine's load falls alike on every mode.
        if len(cores) >= 2:
            os.sched_setaffinity(0, {cores[0]})  # tesseract children inherit it: move them after start
        clfs = {label: load_classifier(cfg) for label, cfg in modes.items()}
        pipelines = {label: PagePipeline(classifier=clf) for label, clf in clfs.items()}
        for clf in clfs.values():
            if clf.titles is not None and len(cores) >= 2:
                clf.titles.cpu = cores[1]
        times: dict[str, list[float]] = {label: [] for label in modes}
        for label, pipeline in pipelines.items():
            pipeline.process(pages[0])  # warm-up
            clfs[label].title_readings = 0
        for page in pages:
            for label, pipeline in pipelines.items():
                t0 = time.perf_counter()
                pipeline.process(page)
                times[label].append((time.perf_counter() - t0) * 1000)
        read_share = f"{clfs['unsure'].title_readings}/{len(pages)}"
        for clf in clfs.values():
            clf.close()
        if len(cores) >= 2:
            os.sched_setaffinity(0, set(cores))
        per_page = {label: statistics.median(t) for label, t in times.items()}
        pace = 60_000 / statistics.mean(times["unsure"])
        print(f"| {name} | {statistics.median(walls):.0f} ms / {statistics.median(cpus):.0f} ms | "
              f"{per_page['image']:.0f} ms | {per_page['always']:.0f} ms | {per_page['unsure']:.0f} ms | "
              f"{per_page['always'] / per_page['unsure']:.2f} | {read_share} | "
              f"{pace:.0f} pages/min (goal {GOAL_PAGES_PER_MIN}) |")
    return 0
