"""``make demo``'s sample pages, rendered by the project's generator, are typed as what they are by
the shipped document-type model through the page pipeline, as the demo's kiosk will show them."""

from __future__ import annotations

from pathlib import Path

from device.inference.config import DoctypeConfig
from device.inference.doctype import load_classifier
from device.inference.pipeline import PagePipeline
from scripts import demo


def test_every_demo_sample_page_comes_back_as_its_own_type(tmp_path: Path) -> None:
    assert demo._render_samples(tmp_path) == len(demo.SAMPLE_TYPES)
    typed = {}
    with PagePipeline(classifier=load_classifier(DoctypeConfig())) as pipeline:
        for path in sorted(tmp_path.glob("sample-*.jpg")):
            typed[path.stem.split("-", 2)[2]] = pipeline.process_file(path).doctype
    assert typed == {t: t for t in demo.SAMPLE_TYPES}
