"""Reading the title for the document type: its cost per page, and what it does to the page
pipeline's pace and to when the quality verdict is ready, on this machine's two cores.

    python -m benchmarks.run doctype_text

The pipeline runs pinned to one core as in the pipeline benchmark; Tesseract runs in a child
process pinned to the other core (``OMP_THREAD_LIMIT=1``). Measured: the title reading alone
(wall and the child's CPU time), the pipeline's time per page with the image model alone and
with the title (the difference is what the title adds before the page's result, verdict included,
is returned), and the pace of a counter feeding pages back to back.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import machine
from device.inference.config import DoctypeConfig, TitleConfig
from device.inference.doctype import load_classifier
from device.inference.pipeline import PagePipeline, load_image
from device.inference.titles import TitleReader, tesseract_has
from training.generator import degrade, render

GOAL_PAGES_PER_MIN = 120


def _pages() -> dict[str, list[np.ndarray]]:
    def scan(doctype: str, seed: int, dpi: int) -> np.ndarray:
        return degrade(render(doctype, seed, split="heldout", dpi=dpi), seed, split="heldout", strength=0.4)

    sets = {
        "A4 scans at 300 dpi (generated: decision, form, birth certificate, dossier slip)": [
            scan(d, 900_000 + i, 300)
            for i, d in enumerate(("official_document", "application_form", "birth_certificate", "dossier_receipt"))
        ],
        "ID cards at 400 dpi (generated)": [scan("id_card", 900_100 + i, 400) for i in range(4)],
    }
    dev = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
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
    image_only = DoctypeConfig(text=TitleConfig(enabled=False))
    with_text = DoctypeConfig(text=TitleConfig(timeout_s=30))
    print("| pages | title read: wall median | title read: tesseract CPU median | pipeline, image only "
          "| pipeline, image + title | added before the verdict | pace back to back |")
    print("|---|---|---|---|---|---|---|")
    for name, pages in _pages().items():
        walls, cpus = [], []
        for _ in range(2):
            for page in pages:
                c0, t0 = _child_cpu(), time.perf_counter()
                reader.read(page)
                walls.append((time.perf_counter() - t0) * 1000)
                cpus.append((_child_cpu() - c0) * 1000)
        per_page: dict[str, float] = {}
        for label, cfg in (("image", image_only), ("text", with_text)):
            if len(cores) >= 2:
                os.sched_setaffinity(0, {cores[0]})  # tesseract children inherit it: move them after start
            with load_classifier(cfg) as clf:
                pipeline = PagePipeline(classifier=clf)
                if label == "text" and clf.titles is not None and len(cores) >= 2:
                    clf.titles.cpu = cores[1]
                pipeline.process(pages[0])  # warm-up
                times = []
                for _ in range(2):
                    for page in pages:
                        t0 = time.perf_counter()
                        pipeline.process(page)
                        times.append((time.perf_counter() - t0) * 1000)
            per_page[label] = statistics.median(times)
        if len(cores) >= 2:
            os.sched_setaffinity(0, set(cores))
        pace = 60_000 / per_page["text"]
        added = per_page["text"] - per_page["image"]
        print(f"| {name} | {statistics.median(walls):.0f} ms | {statistics.median(cpus):.0f} ms | "
              f"{per_page['image']:.0f} ms | {per_page['text']:.0f} ms | {added:.0f} ms | "
              f"{pace:.0f} pages/min (goal {GOAL_PAGES_PER_MIN}) |")
    return 0
