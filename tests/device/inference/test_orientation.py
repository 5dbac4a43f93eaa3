"""Turning pages upright, safely: Tesseract's OSD as the second opinion, and the pages that must
never be turned (cards on a desk, guilloche-bordered certificates, pages the check cannot read)."""

from collections.abc import Iterator

import numpy as np
import pytest

from device.inference import geometry, synthetic
from device.inference.config import OsdConfig, PipelineConfig
from device.inference.osd import Osd, OsdAnswer
from device.inference.pipeline import PagePipeline
from training.generator import render


@pytest.fixture(scope="module")
def pipeline() -> Iterator[PagePipeline]:
    with PagePipeline() as p:
        yield p


def test_tesseract_osd_is_installed() -> None:
    """The device image and the dev setup install tesseract-ocr-osd: without it no page is
    ever turned, which must not go unnoticed."""
    with Osd() as osd:
        assert osd.available()


@pytest.mark.parametrize("turned", [0, 90, 180, 270])
def test_osd_reads_the_turn_of_a_printed_page(turned: int) -> None:
    page = synthetic.text_page(seed=5, dpi=150)
    with Osd() as osd:
        answer = osd.detect(synthetic.turn(page, turned), dpi=150)
    assert answer is not None
    assert answer.turn == (360 - turned) % 360
    assert answer.confidence >= OsdConfig().min_confidence


def test_osd_has_no_answer_for_a_page_without_letters() -> None:
    blank = np.full((800, 600), 250, np.uint8)
    with Osd() as osd:
        assert osd.detect(blank, dpi=100) is None


@pytest.mark.parametrize("doctype", ["birth_certificate", "marriage_certificate", "land_certificate"])
def test_upright_guilloche_certificate_is_not_turned(pipeline: PagePipeline, doctype: str) -> None:
    """Certificates framed by a guilloche border, scanned upright: left as they are."""
    for seed in range(3):
        page = render(doctype, 300 + seed, split="heldout", dpi=150)
        result = pipeline.process(page, dpi=150)
        assert result.orientation == 0, (doctype, seed)


@pytest.mark.parametrize("seed", range(4))
def test_upright_card_on_a_textured_desk_is_not_turned(pipeline: PagePipeline, seed: int) -> None:
    """An ID card with its guilloche background, photographed upright on a wood-grain desk with
    clutter around it: not turned."""
    card = render("id_card", 40 + seed, split="heldout", dpi=300)
    h, w = card.shape[:2]
    x0, y0 = 380 + 20 * seed, 300 - 10 * seed
    quad = [(x0, y0), (x0 + w * 0.8, y0 + 12), (x0 + w * 0.8 - 6, y0 + h * 0.8 + 10), (x0 + 4, y0 + h * 0.8)]
    scene = synthetic.camera_scene(card, frame=(1600, 1200), quad=quad, seed=seed)
    result = pipeline.process(scene.image, source="camera")
    assert result.quad is not None
    assert result.orientation == 0


@pytest.mark.parametrize("turned", [90, 180, 270])
def test_certificate_turned_by_the_scanner_is_turned_back(pipeline: PagePipeline, turned: int) -> None:
    """The other side of safety: a certificate fed sideways or upside down is still set upright."""
    page = render("birth_certificate", 7, split="heldout", dpi=150)
    result = pipeline.process(synthetic.turn(page, turned), dpi=150)
    assert result.orientation == (360 - turned) % 360


def test_without_a_second_opinion_no_page_is_turned() -> None:
    """With the OSD check off (or Tesseract missing) the pipeline's own measure alone never
    turns a page, however sure it is."""
    page = synthetic.text_page(seed=2, dpi=100)
    with PagePipeline(PipelineConfig(osd=OsdConfig(enabled=False))) as p:
        for turned in (90, 180, 270):
            result = p.process(synthetic.turn(page, turned), dpi=100)
            assert result.orientation == 0
            own, confidence = geometry.estimate_orientation(geometry.to_gray(synthetic.turn(page, turned)))
            assert own == (360 - turned) % 360 and confidence > 0.5  # it was sure, and still waited


def test_receipt_the_ink_shape_measure_calls_upright_is_asked_of_osd(
    pipeline: PagePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real till receipts (logos, barcodes, centred lines) often look upright to the ink-shape
    measure when they are upside down. Given that miss, Tesseract is asked about every receipt:
    an upside-down one is turned back, an upright one is left alone."""
    slip = synthetic.text_page(seed=4, dpi=200, size_mm=(60.0, 240.0), font_pt=8)
    monkeypatch.setattr(geometry, "estimate_orientation", lambda *a, **k: (0, 0.2))
    assert pipeline.process(synthetic.turn(slip, 180), dpi=200).orientation == 180
    assert pipeline.process(slip, dpi=200).orientation == 0


def test_a_page_sure_to_be_upright_costs_no_osd_reading(pipeline: PagePipeline) -> None:
    """The fast path: a printed page the ink-shape measure is sure is upright is not read by
    Tesseract (the reading costs more than the whole pipeline's budget); turned, it is."""
    page = synthetic.text_page(seed=3, dpi=150)
    calls = pipeline.osd.calls
    assert pipeline.process(page, dpi=150).orientation == 0
    assert pipeline.osd.calls == calls
    assert pipeline.process(synthetic.turn(page, 90), dpi=150).orientation == 270
    assert pipeline.osd.calls == calls + 1


def test_a_sure_osd_turns_the_page_the_measure_misread(pipeline: PagePipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the ink-shape measure is unsure the page is upright, or sees another turn, Tesseract
    alone sets it upright when it is sure; an upright page stays as it is."""
    page = synthetic.text_page(seed=6, dpi=150)
    monkeypatch.setattr(geometry, "estimate_orientation", lambda *a, **k: (0, 0.2))
    assert pipeline.process(synthetic.turn(page, 180), dpi=150).orientation == 180
    assert pipeline.process(page, dpi=150).orientation == 0
    monkeypatch.setattr(geometry, "estimate_orientation", lambda *a, **k: (90, 1.0))
    assert pipeline.process(synthetic.turn(page, 180), dpi=150).orientation == 180
    assert pipeline.process(page, dpi=150).orientation == 0


@pytest.mark.parametrize(
    ("own", "answer", "expected"),
    [
        ((90, 1.0), OsdAnswer(90, 0.6), 90),  # both say 90: a weak OSD answer is enough
        ((90, 0.05), OsdAnswer(90, 0.6), 0),  # the measure too unsure to count as a vote
        ((90, 1.0), OsdAnswer(270, 1.0), 0),  # they disagree and OSD is not sure: left alone
        ((90, 1.0), OsdAnswer(270, 1.6), 270),  # OSD sure: its answer
        ((180, 1.0), OsdAnswer(0, 9.0), 0),  # OSD sure the page is upright
        ((0, 0.3), OsdAnswer(90, 1.0), 0),  # the measure unsure, OSD unsure: left alone
    ],
)
def test_when_unsure_the_page_is_left_as_it_is(
    pipeline: PagePipeline, monkeypatch: pytest.MonkeyPatch, own: tuple[int, float], answer: OsdAnswer, expected: int
) -> None:
    """The decision between the two opinions, each given: turn only on agreement or on a sure OSD."""
    monkeypatch.setattr(geometry, "estimate_orientation", lambda *a, **k: own)
    monkeypatch.setattr(pipeline.osd, "detect", lambda *a, **k: answer)
    assert pipeline.process(synthetic.text_page(seed=1, dpi=100), dpi=100).orientation == expected


@pytest.mark.parametrize(
    ("second", "expected"),
    [(OsdAnswer(90, 3.0), 90), (OsdAnswer(90, 1.2), 0), (OsdAnswer(270, 5.0), 0), (None, 0)],
)
def test_an_unsure_osd_answer_is_read_again_with_more_letters(
    pipeline: PagePipeline, monkeypatch: pytest.MonkeyPatch, second: OsdAnswer | None, expected: int
) -> None:
    """OSD names a turn the measure does not, without being sure: a longer reading turns the page
    only when it names the same turn surely."""
    letters: list[int | None] = []

    def detect(page: object, dpi: float | None = None, max_letters: int | None = None) -> OsdAnswer | None:
        letters.append(max_letters)
        return OsdAnswer(90, 1.0) if max_letters is None else second

    monkeypatch.setattr(geometry, "estimate_orientation", lambda *a, **k: (270, 1.0))
    monkeypatch.setattr(pipeline.osd, "detect", detect)
    assert pipeline.process(synthetic.text_page(seed=1, dpi=100), dpi=100).orientation == expected
    assert letters == [None, OsdConfig().second_reading_letters]


def test_a_longer_reading_is_surer_on_a_printed_page() -> None:
    """Tesseract with three times the letters: the same turn, a higher confidence."""
    page = synthetic.turn(synthetic.text_page(seed=8, dpi=150), 90)
    with Osd() as osd:
        short, long = osd.detect(page, dpi=150), osd.detect(page, dpi=150, max_letters=300)
        again = osd.detect(page, dpi=150)
    assert short is not None and long is not None and again is not None
    assert short.turn == long.turn == 270
    assert long.confidence > short.confidence
    assert again == short  # the letter limit went back to the config's
