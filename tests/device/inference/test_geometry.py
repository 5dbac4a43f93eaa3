"""Geometry on generated pages with known truth: corners on a cluttered desk, crops on a scan
bed, skew angles and the four turns."""

import numpy as np
import pytest

from device.inference import geometry, synthetic
from device.inference.config import PipelineConfig
from device.inference.pipeline import PagePipeline

A4_QUADS = [
    [(282, 98), (972, 128), (1022, 860), (230, 822)],
    [(400, 60), (1000, 200), (860, 930), (250, 780)],  # turned about 15 degrees, perspective
    [(150, 120), (1120, 100), (1150, 880), (120, 900)],  # landscape page on its side
]


def _corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(geometry.order_quad(found) - geometry.order_quad(truth)).max())


@pytest.mark.parametrize("quad", A4_QUADS)
def test_camera_corners_on_cluttered_desk(quad: list[tuple[int, int]]) -> None:
    """A4 page on a desk with keyboard, hand-like blob, mug and pens; the corners found must be
    within 1.5% of the frame of the truth, in the frame's pixels, clockwise from top-left."""
    scene = synthetic.camera_scene(synthetic.text_page(seed=7, dpi=100), frame=(1280, 960), quad=quad, seed=3)
    result = PagePipeline(PipelineConfig(source="camera")).process(scene.image)
    assert result.quad is not None
    assert _corner_error(result.quad, scene.quad) < 0.015 * 1280
    # Clockwise from the corner nearest the top-left.
    q = result.quad
    assert int(np.argmin(q.sum(axis=1))) == 0
    a, b = q[1] - q[0], q[2] - q[1]
    assert a[0] * b[1] - a[1] * b[0] > 0  # clockwise on screen (y down)


def test_id_card_corners_and_flat_output_proportions() -> None:
    """An ID-card-sized document held at an angle: corners found, and the flattened page keeps
    the card's 85.6 x 54 proportions."""
    card = synthetic.text_page(seed=2, dpi=300, size_mm=synthetic.ID_CARD_MM, font_pt=6)
    quad = [(420, 300), (900, 340), (880, 640), (400, 600)]
    scene = synthetic.camera_scene(card, frame=(1280, 960), quad=quad, seed=5)
    result = PagePipeline(PipelineConfig(source="camera")).process(scene.image)
    assert result.quad is not None
    assert _corner_error(result.quad, scene.quad) < 0.015 * 1280
    page = result.render()
    ratio = max(page.shape[:2]) / min(page.shape[:2])
    assert abs(ratio - 85.6 / 53.98) < 0.12


def test_small_document_on_scan_bed_is_cropped() -> None:
    """A receipt-sized slip lying turned 4 degrees on a grey scan bed: it is found, cropped and
    straightened; the scan's dpi survives as the effective dpi."""
    slip = synthetic.text_page(seed=4, dpi=150, size_mm=(80.0, 160.0), font_pt=8)
    scene = synthetic.on_scan_bed(slip, (1240, 1754), at=(800, 600), angle=4.0, seed=1)
    result = PagePipeline().process(scene.image, dpi=150)
    assert result.quad is not None
    assert _corner_error(result.quad, scene.quad) < 0.015 * 1754
    page = result.render()
    assert abs(page.shape[0] - slip.shape[0]) < 0.04 * slip.shape[0]
    assert abs(page.shape[1] - slip.shape[1]) < 0.04 * slip.shape[1]
    assert result.dpi == 150


@pytest.mark.parametrize("angle", [-8.0, -2.5, 1.5, 6.0])
def test_deskew_finds_the_angle(angle: float) -> None:
    """A full page scanned crooked by a known angle: the lean is measured to 0.4 degrees and
    the rendered page is straight again (its own skew under 0.4 degrees)."""
    page = synthetic.text_page(seed=11, dpi=100)
    crooked = synthetic.rotate(page, angle)
    result = PagePipeline().process(crooked, dpi=100)
    assert result.quad is None
    assert abs(result.skew_deg - angle) < 0.4
    straight, _ = geometry.shrink(result.render(), 4000, 900)
    residual, _ = geometry.estimate_skew(geometry.to_gray(straight))
    assert abs(residual) < 0.4


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("turned", [0, 90, 180, 270])
def test_orientation_all_four_turns(seed: int, turned: int) -> None:
    """A page turned clockwise by 0/90/180/270: the pipeline reports the turn that makes it
    upright ((360 - turned) % 360) and renders it upright."""
    page = synthetic.text_page(seed=seed, dpi=100)
    result = PagePipeline().process(synthetic.turn(page, turned), dpi=100)
    assert result.orientation == (360 - turned) % 360
    assert result.render().shape[:2] == page.shape[:2]


def test_blank_frame_and_flat_colour_give_no_document() -> None:
    """A uniform grey frame and pure noise: no document, no crash, no turn."""
    rng = np.random.default_rng(0)
    for frame in (np.full((480, 640, 3), 128, np.uint8), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)):
        found = geometry.find_document(frame)
        assert found is None or found.area_frac > 0
        assert geometry.estimate_orientation(geometry.to_gray(frame))[0] in (0, 90, 180, 270)
