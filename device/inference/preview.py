"""Live camera preview analysis for the kiosk: where the page is, whether it is sharp and free of
glare, and whether the hand has been still long enough to capture, at preview resolution
(640x480) and fast enough to guide a hand in real time.

>>> import numpy as np
>>> analyzer = PreviewAnalyzer(still_frames=2)
>>> frame = np.full((480, 640, 3), 60, np.uint8)
>>> frame[60:420, 180:460] = 235
>>> [analyzer.analyse(frame).still for _ in range(3)]
[False, True, True]
"""

from dataclasses import dataclass

import numpy as np

from device.inference import geometry
from device.inference.config import QualityConfig
from device.inference.quality import IssueCode, sharpness


@dataclass(frozen=True)
class PreviewResult:
    """One preview frame's analysis; ``hint`` is the first thing to fix (a quality code), or
    None when the page can be captured."""

    quad: geometry.Quad | None
    sharpness: float | None
    glare_fraction: float
    area_fraction: float
    still: bool
    hint: IssueCode | None

    @property
    def ready(self) -> bool:
        return self.hint is None and self.still


class PreviewAnalyzer:
    """Analyses successive preview frames; remembers the last corners to tell stillness.

    ``still_frames``: how many frames in a row the corners must stay within ``still_tolerance``
    (a share of the frame's diagonal) before the page counts as still.
    """

    def __init__(
        self, config: QualityConfig | None = None, still_frames: int = 5, still_tolerance: float = 0.01
    ) -> None:
        self.config = config or QualityConfig()
        self.still_frames = still_frames
        self.still_tolerance = still_tolerance
        self._last: geometry.Quad | None = None
        self._steady = 0

    def reset(self) -> None:
        self._last = None
        self._steady = 0

    def close(self) -> None:
        self.reset()

    def __enter__(self) -> "PreviewAnalyzer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyse(self, frame: geometry.Img) -> PreviewResult:
        small, factor = geometry.shrink(frame, 640)
        h, w = small.shape[:2]
        doc = geometry.find_document(small)
        if doc is None:
            self.reset()
            return PreviewResult(None, None, 0.0, 0.0, False, "too_small")
        quad = doc.quad
        moved = (
            float(np.abs(quad - self._last).max()) / float(np.hypot(h, w)) if self._last is not None else 1.0
        )
        self._steady = self._steady + 1 if moved <= self.still_tolerance else 0
        self._last = quad
        flat = geometry.warp(small, quad)
        gray = geometry.to_gray(flat)
        sharp = sharpness(gray)
        median = float(np.median(gray))
        glare = float((gray >= 250).mean()) if median < 225 else 0.0
        cfg = self.config
        hint: IssueCode | None = None
        if doc.corners_outside > 0 or doc.border_contact > cfg.max_border_contact:
            hint = "cut_off"
        elif doc.area_frac < cfg.min_area_fraction:
            hint = "too_small"
        elif float(np.percentile(gray, 90)) < cfg.min_paper_level:
            hint = "too_dark"
        elif glare > cfg.max_glare_fraction:
            hint = "glare"
        elif sharp is not None and sharp < cfg.min_sharpness:
            hint = "blurry"
        return PreviewResult(
            (quad / factor).astype(np.float32),
            sharp,
            glare,
            doc.area_frac,
            self._steady >= self.still_frames - 1,
            hint,
        )
