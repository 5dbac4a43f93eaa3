"""Cameras: the Pi camera through picamera2 and USB document cameras through OpenCV (V4L2);
``device/capture/fake_camera.py`` generates one for tests and demos. The config's ``type``
chooses among them in :mod:`device.capture.registry`.

A :class:`Camera` gives live preview frames (:meth:`Camera.read`, for the kiosk's guidance) and
full-resolution stills (:meth:`Camera.capture_still`). A missing or unplugged camera is a
state, not a crash: :attr:`Camera.state` says ``absent``, listeners hear it, the call raises
:class:`~device.errors.CameraUnavailable`, and the next call tries again (no more often than
``retry_s``). :class:`CameraSource` puts a camera behind the capture interface the scanner has,
so one shot is a batch of one page.

picamera2 exists only on a Pi and probes hardware when imported: it is imported in
:meth:`PiCamera.open`, only when a ``picamera2`` camera is configured.

>>> camera = OpenCVCamera(OpenCVCameraConfig(device="/dev/video0"))  # doctest: +SKIP
>>> with camera:                                                       # doctest: +SKIP
...     frame = camera.read()
"""

from __future__ import annotations

import io
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

from device.capture.base import CapturedPage, CaptureSource, ScanRequest
from device.capture.config import OpenCVCameraConfig, PiCameraConfig
from device.errors import CameraUnavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Image = npt.NDArray[np.uint8]
else:
    Image = Any

log = logging.getLogger(__name__)

CameraState = Literal["closed", "ready", "absent"]
"""``closed``: not opened yet (or closed); ``ready``: frames flow; ``absent``: missing, unplugged
or failing (the last error is in :attr:`Camera.problem`)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from a camera (BGR, uint8), numbered from 1 since the camera was opened."""

    image: Image = field(repr=False)
    seq: int
    ts: float
    """time.monotonic() when it was read."""


StateListener = Callable[[CameraState, str | None], None]


class Camera(ABC):
    """One camera. Thread-safe: the kiosk's preview loop and a capture may call at once."""

    kind = "camera"

    def __init__(self, retry_s: float = 2.0, dpi: int | None = None, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.retry_s = retry_s
        self.dpi = dpi
        self._clock = clock
        self._lock = threading.RLock()
        self._state: CameraState = "closed"
        self.problem: str | None = None
        """Why the camera is absent, in plain words (no personal data, fit for telemetry)."""
        self._last_attempt: float | None = None
        self._seq = 0
        self._listeners: list[StateListener] = []

    # -- the backend's part --------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise CameraUnavailable when it is not there."""

    @abstractmethod
    def _read(self) -> Image:
        """One preview frame; raise CameraUnavailable when the device has gone."""

    def _still(self) -> Image:
        """A full-resolution still; by default the next preview frame."""
        return self._read()

    @abstractmethod
    def _release(self) -> None:
        """Let go of the device (never raises)."""

    @property
    def model(self) -> str | None:
        return None

    # -- the shared part -----------------------------------------------------------------------

    @property
    def state(self) -> CameraState:
        with self._lock:
            return self._state

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(state, problem)`` on every state change (e.g. to telemetry, the screen)."""
        with self._lock:
            self._listeners.append(listener)

    def open(self) -> None:
        """Open the camera now (otherwise the first read does). Raises CameraUnavailable."""
        with self._lock:
            self._ensure_open()

    def read(self) -> Frame:
        """The next preview frame. Raises CameraUnavailable when the camera is missing or was
        pulled out; the state is then ``absent`` until a later call finds it again."""
        return self._grab(self._read)

    def capture_still(self) -> Frame:
        """A full-resolution still for a page."""
        return self._grab(self._still)

    def _grab(self, how: Callable[[], Image]) -> Frame:
        with self._lock:
            self._ensure_open()
            try:
                image = how()
            except CameraUnavailable as exc:
                self._fail(str(exc))
                raise
            except Exception as exc:  # a driver error is an absent camera, not a crash
                self._fail(f"camera read failed ({type(exc).__name__})")
                raise CameraUnavailable(self.problem or "camera read failed") from None
            self._seq += 1
            return Frame(image, self._seq, self._clock())

    def _ensure_open(self) -> None:
        if self._state == "ready":
            return
        now = self._clock()
        if self._state == "absent" and self._last_attempt is not None and now - self._last_attempt < self.retry_s:
            raise CameraUnavailable(self.problem or "camera unavailable")
        self._last_attempt = now
        try:
            self._open()
        except CameraUnavailable as exc:
            self._release()
            self._fail(str(exc))
            raise
        except Exception as exc:
            self._release()
            self._fail(f"camera cannot be opened ({type(exc).__name__})")
            raise CameraUnavailable(self.problem or "camera cannot be opened") from None
        self._set_state("ready", None)
        log.info("camera ready: %s", self.model or type(self).__name__)

    def _fail(self, problem: str) -> None:
        self._release()
        if self._state != "absent":
            log.warning("camera unavailable: %s", problem)
        self._set_state("absent", problem)

    def _set_state(self, state: CameraState, problem: str | None) -> None:
        changed = state != self._state or problem != self.problem
        self._state = state
        self.problem = problem
        if not changed:
            return
        for listener in list(self._listeners):
            try:
                listener(state, problem)
            except Exception:
                log.exception("camera state listener failed")

    def close(self) -> None:
        with self._lock:
            self._release()
            self._set_state("closed", None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenCVCamera(Camera):
    """A USB document camera through OpenCV (V4L2)."""

    def __init__(self, config: OpenCVCameraConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config.retry_s, config.dpi, clock=clock)
        self.config = config
        self._cap: Any = None

    @property
    def model(self) -> str | None:
        return f"OpenCV camera {self.config.device}"

    def _open(self) -> None:
        import cv2

        cfg = self.config
        api = cv2.CAP_V4L2 if cfg.api == "v4l2" else cv2.CAP_ANY
        cap = cv2.VideoCapture(cfg.device, api)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"no camera at {cfg.device}")
        if cfg.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc))
        if cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        if cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        if cfg.fps:
            cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        self._cap = cap

    def _read(self) -> Image:
        import numpy as np

        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraUnavailable(f"camera at {self.config.device} stopped giving frames (unplugged?)")
        image: Image = np.asarray(frame, dtype=np.uint8)
        if image.ndim == 2:
            import cv2

            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        return image

    def _still(self) -> Image:
        for _ in range(self.config.still_discard):
            if not self._cap.grab():
                raise CameraUnavailable(f"camera at {self.config.device} stopped giving frames (unplugged?)")
        return self._read()

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception as exc:
                log.debug("releasing the camera: %s", type(exc).__name__)


class PiCamera(Camera):
    """The Raspberry Pi camera through picamera2: preview frames from a video configuration,
    stills by switching to a still configuration for one capture."""

    def __init__(self, config: PiCameraConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config.retry_s, config.dpi, clock=clock)
        self.config = config
        self._cam: Any = None
        self._still_config: Any = None
        self._model: str | None = None

    @property
    def model(self) -> str | None:
        return self._model

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraUnavailable("picamera2 is not installed (it exists only on a Raspberry Pi)") from None
        cfg = self.config
        cameras = Picamera2.global_camera_info()
        if len(cameras) <= cfg.camera_num:
            raise CameraUnavailable(f"no Pi camera number {cfg.camera_num} is connected")
        self._model = str(cameras[cfg.camera_num].get("Model", "Pi camera"))[:128]
        cam = Picamera2(cfg.camera_num)
        self._cam = cam
        preview = cam.create_preview_configuration(
            main={"size": (cfg.preview_width, cfg.preview_height), "format": "RGB888"}
        )
        still_main: dict[str, Any] = {"format": "RGB888"}
        if cfg.still_width and cfg.still_height:
            still_main["size"] = (cfg.still_width, cfg.still_height)
        self._still_config = cam.create_still_configuration(main=still_main)
        cam.configure(preview)
        cam.start()

    def _read(self) -> Image:
        import numpy as np

        # picamera2's "RGB888" is B, G, R in memory: what OpenCV calls BGR.
        return np.ascontiguousarray(self._cam.capture_array("main")[..., :3], dtype=np.uint8)

    def _still(self) -> Image:
        import numpy as np

        array = self._cam.switch_mode_and_capture_array(self._still_config, "main")
        return np.ascontiguousarray(array[..., :3], dtype=np.uint8)

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            for step in (cam.stop, cam.close):
                try:
                    step()
                except Exception as exc:
                    log.debug("releasing the Pi camera: %s", type(exc).__name__)


class CameraSource(CaptureSource):
    """A camera behind the capture interface: each batch is one still, as a PNG file.

    >>> session.capture(CapturePages(CameraSource(camera), ScanRequest()))  # doctest: +SKIP
    """

    kind = "camera"

    def __init__(self, camera: Camera, *, png_compress_level: int = 3) -> None:
        self.camera = camera
        self.png_compress_level = png_compress_level

    @property
    def model(self) -> str | None:
        return self.camera.model

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        from PIL import Image as PILImage

        frame = self.camera.capture_still()
        height, width = frame.image.shape[:2]
        buffer = io.BytesIO()
        options: dict[str, Any] = {"compress_level": self.png_compress_level}
        if self.camera.dpi:
            options["dpi"] = (self.camera.dpi, self.camera.dpi)
        PILImage.fromarray(frame.image[..., ::-1]).save(buffer, "PNG", **options)
        yield CapturedPage(buffer.getvalue(), "image/png", width, height, self.camera.dpi, 1)

    def close(self) -> None:
        self.camera.close()
