"""Live camera guidance: where the document is in the preview, what to tell the person holding
it, and when it is time to take the picture (inside the frame, sharp, nothing glaring, still).

The page pipeline's ``analyze_preview`` is used when it has one; otherwise its ``process`` on
the reduced preview frame gives the outline and the issues. Stillness is measured here, frame
to frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from device.dossier.model import Image
from device.dossier.sources import PageProcessor

log = logging.getLogger(__name__)

HINTS: dict[str, tuple[str, str]] = {
    "no_document": ("Đặt giấy tờ vào trong khung", "Place the document inside the frame"),
    "cut_off": ("Đưa giấy tờ vào trong khung", "Move the document fully inside the frame"),
    "too_small": ("Đưa giấy tờ lại gần hơn", "Bring the document closer"),
    "glare": ("Tránh lóa sáng", "Avoid glare"),
    "too_dark": ("Cần thêm ánh sáng", "More light is needed"),
    "too_bright": ("Ánh sáng quá mạnh", "The light is too strong"),
    "hold_still": ("Giữ yên", "Hold still"),
    "capturing": ("Đang chụp, giữ yên", "Taking the picture, hold still"),
    "camera_absent": ("Máy ảnh chưa sẵn sàng, vui lòng gọi cán bộ", "The camera is not ready, please ask staff"),
    "looking_for_code": ("Đưa mã QR trên giấy hẹn vào khung", "Show the QR code on your appointment slip"),
}
"""Hint code -> (Vietnamese, English): plain words, one instruction at a time."""

BLOCKING = ("cut_off", "too_small", "glare", "too_dark", "too_bright")


@dataclass(frozen=True, slots=True)
class Guidance:
    """What the screen shows over the preview. ``quad`` is the outline in 0..1 of the frame's
    width and height, clockwise from top-left."""

    quad: tuple[tuple[float, float], ...] | None
    hint: str
    still_frames: int
    ready: bool

    @property
    def hint_vi(self) -> str:
        return HINTS[self.hint][0]

    @property
    def hint_en(self) -> str:
        return HINTS[self.hint][1]

    def as_dict(self) -> dict[str, Any]:
        return {"quad": self.quad, "hint": self.hint, "hint_vi": self.hint_vi, "hint_en": self.hint_en,
                "ready": self.ready}


class Guide:
    """Assess preview frames one after another (not thread-safe: one camera loop owns it)."""

    def __init__(self, pipeline: PageProcessor | None, *, still_frames: int = 3, still_threshold: float = 2.5) -> None:
        self.pipeline = pipeline
        self.still_needed = still_frames
        self.still_threshold = still_threshold
        self._previous: Any = None
        self._still = 0

    def reset(self) -> None:
        self._previous = None
        self._still = 0

    def _stillness(self, frame: Image) -> int:
        import cv2
        import numpy as np

        small = cv2.cvtColor(cv2.resize(frame, (160, max(1, round(160 * frame.shape[0] / frame.shape[1])))),
                             cv2.COLOR_BGR2GRAY).astype(np.int16)
        previous, self._previous = self._previous, small
        if previous is None or previous.shape != small.shape:
            self._still = 0
        elif float(np.abs(small - previous).mean()) < self.still_threshold:
            self._still += 1
        else:
            self._still = 0
        return self._still

    def assess(self, frame: Image) -> Guidance:
        still = self._stillness(frame)
        quad, issues = self._analyse(frame)
        height, width = frame.shape[:2]
        norm = None if quad is None else tuple((float(x) / width, float(y) / height) for x, y in quad)
        if quad is None or "blank" in issues:
            return Guidance(None, "no_document", still, False)
        for code in BLOCKING:
            if code in issues:
                return Guidance(norm, code, still, False)
        if "blurry" in issues or still < self.still_needed:
            return Guidance(norm, "hold_still", still, False)
        return Guidance(norm, "capturing", still, True)

    def _analyse(self, frame: Image) -> tuple[Any, set[str]]:
        if self.pipeline is None:
            return None, set()
        preview = getattr(self.pipeline, "analyze_preview", None)
        try:
            result = preview(frame) if callable(preview) else self.pipeline.process(frame, source="camera", dpi=None)
        except Exception as exc:  # guidance is best effort: a bad frame is "no document"
            log.debug("preview analysis failed (%s)", type(exc).__name__)
            return None, set()
        quad = getattr(result, "quad", None)
        if quad is None:
            quad = getattr(result, "corners", None)
        if quad is not None and len(quad) != 4:
            quad = None
        issues: set[str] = set()
        verdict = getattr(result, "quality", None)
        if verdict is None:
            verdict = getattr(result, "verdict", None)
        found = getattr(verdict, "issues", None)
        if found is None:
            found = getattr(result, "issues", None)
        for issue in found or ():
            issues.add(str(getattr(issue, "code", issue)))
        return quad, issues
