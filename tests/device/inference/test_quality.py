"""Each quality code triggers on its defect and stays quiet on a clean page."""

import numpy as np
import pytest

from device.inference import synthetic
from device.inference.config import PipelineConfig, QualityConfig
from device.inference.pipeline import PagePipeline
from device.inference.quality import MESSAGES, judge, measure

DPI = 200


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    return synthetic.text_page(seed=5, dpi=DPI)


def _codes(img: np.ndarray, dpi: float | None = DPI, source: str | None = None) -> list[str]:
    return PagePipeline().process(img, dpi=dpi, source=source).verdict.codes


def test_clean_scan_is_ok(page: np.ndarray) -> None:
    """A clean upright 200 dpi page: no issue at all."""
    assert _codes(page) == []


def test_clean_camera_frame_is_ok() -> None:
    """A well-lit page filling most of a 12 MP-like frame (effective dpi above 200): no issue."""
    doc = synthetic.text_page(seed=6, dpi=120)
    scene = synthetic.camera_scene(
        doc, frame=(1700, 2300), quad=[(120, 110), (1580, 140), (1600, 2190), (100, 2170)], seed=2, light=1.0
    )
    result = PagePipeline().process(scene.image, source="camera")
    assert result.verdict.codes == [] or result.verdict.codes == ["low_resolution"]
    assert result.measures.dpi is not None and result.measures.dpi > 140


@pytest.mark.parametrize(
    ("code", "degrade"),
    [
        ("blurry", lambda p: synthetic.blur(p, 0.002)),
        ("blurry", lambda p: synthetic.motion_blur(p, 0.006, angle=30)),
        ("too_dark", lambda p: synthetic.exposure(p, 0.35)),
        ("too_bright", lambda p: synthetic.exposure(p, 2.0, 120)),
        ("glare", lambda p: synthetic.glare(synthetic.exposure(p, 0.8), (0.6, 0.4), 0.12)),
        ("skewed", lambda p: synthetic.rotate(p, 7.0)),
    ],
)
def test_each_code_triggers_on_its_defect(page: np.ndarray, code: str, degrade: object) -> None:
    """Blur (gaussian, motion), under- and over-exposure, a burnt highlight, a 7 degree lean."""
    assert callable(degrade)
    assert code in _codes(degrade(page))


def test_low_resolution_and_drawings(page: np.ndarray) -> None:
    """A 150 dpi scan is below the 200 dpi rule; a 250 dpi one passes as a form but not as a
    map (300 dpi rule)."""
    assert "low_resolution" in _codes(synthetic.downscale(page, 0.75), dpi=150)
    m = measure(page)
    m.dpi = 250
    assert "low_resolution" not in judge(m, QualityConfig()).codes
    assert "low_resolution" in judge(m, QualityConfig(), doctype="map").codes


def test_cut_off_camera_frame() -> None:
    """A page whose top runs out of the camera frame."""
    doc = synthetic.text_page(seed=8, dpi=100)
    scene = synthetic.camera_scene(doc, quad=[(300, -90), (1000, -60), (1010, 900), (290, 880)], seed=4)
    assert "cut_off" in _codes(scene.image, dpi=None, source="camera")


def test_cut_off_text_running_into_the_edge(page: np.ndarray) -> None:
    """A scan cropped through the text (the page was bigger than the bed)."""
    h, w = page.shape[:2]
    assert "cut_off" in _codes(page[h // 4 :, w // 5 :])


@pytest.mark.parametrize("doctype", ["birth_certificate", "land_certificate", "official_document", "receipt"])
def test_edge_to_edge_scan_is_not_cut_off(doctype: str) -> None:
    """A paper scanned edge to edge (the frame is the page, guilloche borders and all) is whole."""
    from training.generator import render

    assert "cut_off" not in _codes(render(doctype, 11, split="heldout", dpi=DPI))


@pytest.mark.parametrize("doctype", ["official_document", "receipt"])
def test_scan_cut_through_the_writing_is_cut_off(doctype: str) -> None:
    """The same papers with a third cut away through their lines of text are cut off."""
    from training.generator import render

    page = render(doctype, 11, split="heldout", dpi=DPI)
    h, w = page.shape[:2]
    cut = page[:, w // 3 :] if h < 2 * w else page[h // 3 :, :]
    assert "cut_off" in _codes(np.ascontiguousarray(cut))


def test_receipt_cut_between_two_lines_is_cut_off() -> None:
    """A till receipt whose top third is cut away between two printed lines has no letter on the
    edge, but its print starts at once where a whole receipt has paper above its header."""
    slip = synthetic.text_page(seed=4, dpi=DPI, size_mm=(60.0, 240.0), font_pt=8)
    h, w = slip.shape[:2]
    assert h > 1.8 * w and "cut_off" not in _codes(slip)
    rows = (slip.min(axis=2) < 128).any(axis=1)
    blank = [y for y in range(h // 3, h // 2) if not rows[y - 2 : y + 3].any()]
    gap_ends = [y for y in blank if rows[y + 3 : y + 8].any()]  # just above a line of print
    assert gap_ends, "no gap between lines in the receipt's second third"
    assert "cut_off" in _codes(np.ascontiguousarray(slip[gap_ends[0] :]))


def test_tight_crop_with_text_close_to_the_edge_is_not_cut_off(page: np.ndarray) -> None:
    """Cropped right up to the writing, a page whose text stops a few pixels short of every
    edge is whole; a scanner's dark line along one edge does not make it cut."""
    ink = np.nonzero(page.min(axis=2) < 128)
    top, bottom = int(ink[0].min()), int(ink[0].max())
    left, right = int(ink[1].min()), int(ink[1].max())
    tight = np.ascontiguousarray(page[top - 6 : bottom + 7, left - 6 : right + 7])
    assert "cut_off" not in _codes(tight)
    lined = tight.copy()
    lined[:, -3:] = 30
    assert "cut_off" not in _codes(lined)


def test_receipt_laid_in_the_corner_of_the_bed_is_not_cut_off() -> None:
    """A receipt pushed into the scanner's corner touches two edges of the frame: whole. The
    same receipt running off the bed, its text cut by the frame's edge: cut off."""
    slip = synthetic.text_page(seed=4, dpi=DPI, size_mm=(80.0, 160.0), font_pt=8)
    h, w = slip.shape[:2]
    bed = synthetic.on_scan_bed(slip, (1654, 2339), at=(w // 2, h // 2), seed=3)
    assert "cut_off" not in _codes(bed.image)
    off = synthetic.on_scan_bed(slip, (1654, 2339), at=(w // 2 - w // 4, h // 2 + 100), seed=3)
    assert "cut_off" in _codes(off.image)


def test_too_small_in_camera_frame() -> None:
    """A page covering a tenth of the frame."""
    doc = synthetic.text_page(seed=9, dpi=60)
    scene = synthetic.camera_scene(doc, quad=[(500, 380), (760, 390), (750, 700), (505, 690)], seed=6)
    assert "too_small" in _codes(scene.image, dpi=None, source="camera")


def test_blank_back_with_show_through_is_blank_and_nothing_else() -> None:
    """The back of a single-sided sheet: paper grain, faint mirrored show-through, specks."""
    back = synthetic.blank_back(1654, 2339, seed=3)
    assert _codes(back) == ["blank"]


def test_almost_empty_page_is_not_blank(page: np.ndarray) -> None:
    """A page with only a header and two lines (a nearly empty form) must not be dropped."""
    sparse = synthetic.text_page(seed=12, dpi=DPI, fill=0.12)
    assert "blank" not in _codes(sparse)


def test_thresholds_come_from_config(page: np.ndarray) -> None:
    """Raising min_dpi to 300 makes the clean 200 dpi page low resolution; loosening the skew
    limit to 10 degrees quiets a 7 degree lean."""
    cfg = PipelineConfig(quality=QualityConfig(min_dpi=300))
    assert PagePipeline(cfg).process(page, dpi=DPI).verdict.codes == ["low_resolution"]
    cfg = PipelineConfig(quality=QualityConfig(max_skew_deg=10))
    assert "skewed" not in PagePipeline(cfg).process(synthetic.rotate(page, 7.0), dpi=DPI).verdict.codes


def test_measures_do_not_depend_on_resolution(page: np.ndarray) -> None:
    """The same page at 200 and 100 dpi measures alike (sharpness within 15%, levels within 5)."""
    a = measure(page)
    b = measure(synthetic.downscale(page, 0.5))
    assert a.sharpness is not None and b.sharpness is not None
    assert abs(a.sharpness - b.sharpness) / a.sharpness < 0.15
    assert abs(a.paper_level - b.paper_level) < 5


def test_every_code_has_both_messages() -> None:
    """Each code says what to do in Vietnamese and in English."""
    for code, (vi, en) in MESSAGES.items():
        assert vi and en and vi != en, code
