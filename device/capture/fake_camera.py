"""A camera that plays a scripted sequence of generated frames, for tests and for the kiosk's
end-to-end test: an empty desk, then a document sliding into view, then the document in place
but blurred (the citizen's hand still moving), then still and sharp. Each :meth:`read` is the
next frame (or, with ``realtime_fps``, the frame the clock has reached); the last phase repeats.
:meth:`FakeCamera.unplug` makes it vanish as a USB camera pulled out would. :attr:`history`
records what happened (gpiozero's mock pins are the model).

>>> camera = FakeCamera(FakeCameraConfig(type="fake", empty_frames=1, slide_frames=2, blur_frames=1))
>>> [camera.phase_of(i) for i in range(5)]
['empty', 'slide', 'slide', 'blur', 'still']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import cached_property
from typing import Literal

from device.capture.camera import Camera, Image
from device.capture.config import FakeCameraConfig
from device.errors import CameraUnavailable

Phase = Literal["empty", "slide", "blur", "still"]

A4_RATIO = 297.0 / 210.0


class FakeCamera(Camera):
    """Generated frames on a generated desk; deterministic by ``config.seed``."""

    def __init__(self, config: FakeCameraConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config.retry_s, config.dpi, clock=clock)
        self.config = config
        self.history: list[str] = []
        self._gone = False
        self._reads = 0
        self._t0: float | None = None
        self._opened = False
        self._cache: dict[tuple[int, float], Image] = {}

    @property
    def model(self) -> str | None:
        return "Sohoa fake camera"

    # -- what tests do to it -------------------------------------------------------------------

    def unplug(self) -> None:
        """The camera is pulled out: reads fail until :meth:`plug`."""
        with self._lock:
            self._gone = True
            self.history.append("unplugged")

    def plug(self) -> None:
        with self._lock:
            self._gone = False
            self.history.append("plugged")

    def restart(self) -> None:
        """Start the sequence again (the next document slides in)."""
        with self._lock:
            self._reads = 0
            self._t0 = None
            self.history.append("restart")

    # -- the sequence --------------------------------------------------------------------------

    def phase_of(self, index: int) -> Phase:
        c = self.config
        if index < c.empty_frames:
            return "empty"
        if index < c.empty_frames + c.slide_frames:
            return "slide"
        if index < c.empty_frames + c.slide_frames + c.blur_frames:
            return "blur"
        return "still"

    @property
    def document_quad(self) -> list[tuple[float, float]]:
        """Where the document's corners are once it is in place (preview pixels, clockwise from
        top-left): tests compare the pipeline's outline with it."""
        w, h = self.config.width, self.config.height
        dh = 0.82 * h
        dw = dh / A4_RATIO
        x0, y0 = (w - dw) / 2, (h - dh) / 2
        k = 0.03 * dw  # a little keystone, as a camera above a desk gives
        return [(x0 + k, y0), (x0 + dw - k, y0), (x0 + dw, y0 + dh), (x0, y0 + dh)]

    def frame_at(self, index: int, scale: float = 1.0) -> Image:
        """Frame ``index`` of the sequence, ``scale`` times the preview size."""
        phase = self.phase_of(index)
        c = self.config
        key_index = {
            "empty": 0,
            "slide": index,
            "blur": index,
            "still": c.empty_frames + c.slide_frames + c.blur_frames,
        }[phase]
        key = (key_index, scale)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = self._render(phase, index, scale)
        return self._cache[key]

    @cached_property
    def _page(self) -> Image:
        from device.inference.synthetic import text_page

        # sharp enough for the still: the page's height in a still, in dots per inch of A4
        still_height_px = 0.82 * self.config.height * self.config.still_scale
        dpi = max(100, math.ceil(still_height_px / (297.0 / 25.4)) + 5)
        return text_page(seed=self.config.seed, dpi=dpi, qr_text=self.config.qr_text)

    def _desk(self, scale: float) -> Image:
        from device.inference.synthetic import desk

        w, h = round(self.config.width * scale), round(self.config.height * scale)
        key = (-1, scale)
        if key not in self._cache:
            if scale == 1.0:
                self._cache[key] = desk(w, h, self.config.seed)
            else:
                # The preview's desk enlarged: generating the clutter and its noise at still size
                # takes seconds of CPU, and the desk is only the background the document lies on.
                import cv2
                import numpy as np

                preview = self._desk(1.0)
                self._cache[key] = np.asarray(cv2.resize(preview, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)
        return self._cache[key]

    def _render(self, phase: Phase, index: int, scale: float) -> Image:
        import cv2
        import numpy as np

        c = self.config
        if phase == "blur" and scale > 1:
            # A defocused still holds no more detail than the defocused preview: made from it,
            # enlarged, rather than blurred at full size (seconds of CPU on a loaded machine).
            preview = self.frame_at(index, 1.0)
            size = (round(c.width * scale), round(c.height * scale))
            return np.asarray(cv2.resize(preview, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
        bg = self._desk(scale)
        if phase == "empty":
            return bg.copy()
        w, h = bg.shape[1], bg.shape[0]
        quad = np.array(self.document_quad, dtype=np.float32) * scale
        if phase == "slide":
            progress = (index - c.empty_frames + 1) / (c.slide_frames + 1)
            eased = 1 - (1 - progress) ** 2
            quad[:, 0] += (1 - eased) * (w - float(quad[:, 0].min()) + 8)
        page = self._page
        ph, pw = page.shape[:2]
        src = np.array([(0, 0), (pw - 1, 0), (pw - 1, ph - 1), (0, ph - 1)], dtype=np.float32)
        m = cv2.getPerspectiveTransform(src, quad)
        warped = cv2.warpPerspective(page, m, (w, h), flags=cv2.INTER_AREA)
        mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
        out = np.where(mask[..., None] > 0, warped, bg)
        if phase == "blur":
            remaining = c.empty_frames + c.slide_frames + c.blur_frames - index
            # defocus the pipeline calls blurry at still resolution, easing as the hand settles
            sigma = max(h, w) * (0.0022 + 0.0004 * (remaining - 1))
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        elif phase == "slide":
            out = cv2.blur(out, (max(3, round(0.02 * w)) | 1, 1))  # moving: smeared sideways
        return np.asarray(out, dtype=np.uint8)

    def _index(self) -> int:
        if self.config.realtime_fps is None:
            index = self._reads
            self._reads += 1
            return index
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        return int((now - self._t0) * self.config.realtime_fps)

    # -- the Camera part -----------------------------------------------------------------------

    def _open(self) -> None:
        if self._gone:
            raise CameraUnavailable("no camera attached (fake camera unplugged)")
        self._opened = True
        self.history.append("open")

    def _read(self) -> Image:
        if self._gone:
            raise CameraUnavailable("camera stopped giving frames (fake camera unplugged)")
        index = self._index()
        self.history.append(f"frame {index} {self.phase_of(index)}")
        return self.frame_at(index).copy()

    def _still(self) -> Image:
        if self._gone:
            raise CameraUnavailable("camera stopped giving frames (fake camera unplugged)")
        index = max(0, self._reads - 1) if self.config.realtime_fps is None else self._index()
        self.history.append(f"still {index} {self.phase_of(index)}")
        return self.frame_at(index, self.config.still_scale).copy()

    def _release(self) -> None:
        if self._opened:
            self._opened = False
            self.history.append("closed")


