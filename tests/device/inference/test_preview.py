"""The kiosk's live preview: corners, a hint for the first thing to fix, and stillness before
auto-capture."""

import numpy as np

from device.inference import synthetic
from device.inference.preview import PreviewAnalyzer

QUAD = [(150, 40), (470, 55), (490, 440), (130, 425)]


def _frame(seed: int = 0, quad: list[tuple[int, int]] = QUAD) -> np.ndarray:
    page = synthetic.text_page(seed=seed, dpi=80)
    return synthetic.camera_scene(page, frame=(640, 480), quad=quad, seed=seed).image


def test_still_sharp_page_becomes_ready_after_the_still_frames() -> None:
    """The same well-placed frame five times: not ready until the fifth, then ready."""
    analyzer = PreviewAnalyzer(still_frames=5)
    frame = _frame()
    states = [analyzer.analyse(frame) for _ in range(5)]
    assert [s.ready for s in states] == [False, False, False, False, True]
    assert states[-1].quad is not None and states[-1].hint is None


def test_moving_page_is_not_still() -> None:
    """The page jumps 30 px between frames: never still, so never captured."""
    analyzer = PreviewAnalyzer(still_frames=3)
    for i in range(6):
        shifted = [(x + 30 * (i % 2), y) for x, y in QUAD]
        assert not analyzer.analyse(_frame(quad=shifted)).still


def test_hints_for_blur_glare_cut_off_and_nothing() -> None:
    """A blurred frame says blurry, a burnt highlight says glare, a page running out of the
    frame says cut_off, an empty desk says too_small (bring a page)."""
    analyzer = PreviewAnalyzer(still_frames=1)
    frame = _frame()
    assert analyzer.analyse(synthetic.blur(frame, 0.006)).hint == "blurry"
    assert analyzer.analyse(synthetic.glare(frame, (0.5, 0.45), 0.12)).hint == "glare"
    out = [(150, -60), (470, -40), (490, 440), (130, 425)]
    assert analyzer.analyse(_frame(quad=out)).hint == "cut_off"
    assert analyzer.analyse(synthetic.desk(640, 480, seed=2)).hint == "too_small"
