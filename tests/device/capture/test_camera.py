"""Cameras: OpenCV on a missing device and on a real MJPG stream that ends (unplugged), the Pi
camera's picamera2 imported only when configured (and driven through a stand-in module, since
there is no Pi camera here), the fake camera's sequence, and a camera pulled mid-dossier."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from device.capture.base import ScanRequest
from device.capture.camera import (
    Camera,
    CameraSource,
    OpenCVCamera,
    PiCamera,
)
from device.capture.config import FakeCameraConfig, OpenCVCameraConfig, PiCameraConfig
from device.capture.fake_camera import FakeCamera
from device.capture.registry import open_camera
from device.dossier.config import SessionConfig
from device.dossier.session import DossierSession
from device.dossier.sources import CapturePages
from device.errors import CameraUnavailable, CaptureError


def state(camera: Camera) -> str:
    """The camera's state, read afresh (mypy would keep a narrowed property from an earlier assert)."""
    return camera.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def mjpg_stream(path: Path, frames: int, size: tuple[int, int] = (320, 240)) -> Path:
    """A real MJPG video file: what a UVC camera sends, read through the same OpenCV code."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 + i * 30, np.uint8))
    writer.release()
    return path


def test_missing_usb_camera_is_a_state() -> None:
    """A V4L2 device that does not exist (path and index): CameraUnavailable (also a CaptureError
    and an OSError), state absent with a plain reason, the listener told once; a second read within
    retry_s does not hammer the driver."""
    clock = Clock()
    seen: list[tuple[str, str | None]] = []
    for device in ("/dev/video-missing-99", 63):
        camera = OpenCVCamera(OpenCVCameraConfig(device=device, retry_s=5), clock=clock)
        camera.add_listener(lambda state, problem: seen.append((state, problem)))
        assert state(camera) == "closed"
        with pytest.raises(CameraUnavailable) as err:
            camera.read()
        assert isinstance(err.value, CaptureError) and isinstance(err.value, OSError)
        assert state(camera) == "absent" and camera.problem == f"no camera at {device}"
        with pytest.raises(CameraUnavailable):
            camera.capture_still()
        camera.close()
        assert state(camera) == "closed"
    assert seen == [("absent", "no camera at /dev/video-missing-99"), ("closed", None),
                    ("absent", "no camera at 63"), ("closed", None)]


def test_opencv_stream_then_unplugged_then_back(tmp_path: Path) -> None:
    """Frames flow from a real MJPG stream; when it ends (the cable pulled) the camera goes
    absent instead of crashing; after retry_s it is found again."""
    clock = Clock()
    stream = mjpg_stream(tmp_path / "cam.avi", 4)
    camera = OpenCVCamera(
        OpenCVCameraConfig(device=str(stream), api="any", width=None, height=None, fourcc=None, still_discard=1,
                           retry_s=1),
        clock=clock,
    )
    with camera:
        first = camera.read()
        assert state(camera) == "ready" and first.image.shape == (240, 320, 3) and first.seq == 1
        still = camera.capture_still()  # drops one stale frame, returns the next
        assert still.seq == 2 and int(still.image.mean()) > int(first.image.mean()) + 40
        camera.read()
        with pytest.raises(CameraUnavailable, match="stopped giving frames"):
            camera.read()
        assert state(camera) == "absent"
        with pytest.raises(CameraUnavailable):
            camera.read()  # too soon to try again
        clock.now += 2
        assert camera.read().image.shape == (240, 320, 3) and state(camera) == "ready"


def test_picamera2_not_imported_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening USB and fake cameras never imports picamera2; a picamera2 camera on a machine
    without it is an absent camera with a clear reason, not an ImportError."""
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    cams = [open_camera(OpenCVCameraConfig(device="/dev/video-missing")),
            open_camera(FakeCameraConfig(type="fake"))]
    for cam in cams:
        with contextlib.suppress(CameraUnavailable):
            cam.read()
        cam.close()
    assert "picamera2" not in sys.modules
    pi = open_camera(PiCameraConfig(type="picamera2"))
    assert isinstance(pi, PiCamera)
    with pytest.raises(CameraUnavailable, match="picamera2 is not installed"):
        pi.read()
    assert state(pi) == "absent"


class FakePicamera2:
    """Stands in for picamera2.Picamera2 (there is no Pi camera here): records calls, can fail."""

    cameras: ClassVar[list[dict[str, Any]]] = []
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int) -> None:
        self.calls: list[str] = [f"init {camera_num}"]
        self.fail = False
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return FakePicamera2.cameras

    def create_preview_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "preview", **main}

    def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "still", **main}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append(f"configure {config['kind']} {config.get('size')}")
        self.size = config["size"]

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str) -> np.ndarray:
        if self.fail:
            raise RuntimeError("Camera frontend has timed out!")
        w, h = self.size
        return np.zeros((h, w, 4), np.uint8)  # XRGB8888-like: four channels

    def switch_mode_and_capture_array(self, config: dict[str, Any], name: str) -> np.ndarray:
        self.calls.append(f"still {config.get('size')}")
        w, h = config.get("size", (4056, 3040))
        return np.zeros((h, w, 3), np.uint8)

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePicamera2]]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.cameras = []
    FakePicamera2.instances = []
    yield FakePicamera2


def test_pi_camera_preview_still_and_cable_pulled(fake_picamera2: type[FakePicamera2]) -> None:
    """No camera on the connector: absent. Then one: preview frames (three channels kept of
    four), a still through the still configuration. A frontend timeout (ribbon cable pulled) is
    an absent camera, released; it comes back on a later read."""
    clock = Clock()
    cfg = PiCameraConfig(type="picamera2", preview_width=64, preview_height=48, still_width=400, still_height=300,
                         retry_s=1)
    camera = PiCamera(cfg, clock=clock)
    with pytest.raises(CameraUnavailable, match="no Pi camera number 0"):
        camera.read()
    fake_picamera2.cameras = [{"Model": "imx708"}]
    clock.now += 2
    frame = camera.read()
    assert frame.image.shape == (48, 64, 3) and camera.model == "imx708"
    assert camera.capture_still().image.shape == (300, 400, 3)
    cam = fake_picamera2.instances[-1]
    assert cam.calls == ["init 0", "configure preview (64, 48)", "start", "still (400, 300)"]
    cam.fail = True
    with pytest.raises(CameraUnavailable):
        camera.read()
    assert state(camera) == "absent" and cam.calls[-2:] == ["stop", "close"]
    clock.now += 2
    assert camera.read().image.shape == (48, 64, 3)
    camera.close()


def test_fake_camera_sequence_and_unplug() -> None:
    """The scripted phases in order, the last repeating; a still at the shown frame is larger;
    unplugging mid-sequence is an absent camera until plugged back."""
    clock = Clock()
    camera = FakeCamera(FakeCameraConfig(type="fake", width=160, height=120, empty_frames=1, slide_frames=2,
                                         blur_frames=1, retry_s=1, still_scale=2), clock=clock)
    frames = [camera.read() for _ in range(6)]
    assert [h.split()[-1] for h in camera.history if h.startswith("frame")] == [
        "empty", "slide", "slide", "blur", "still", "still"]
    assert np.array_equal(frames[4].image, frames[5].image)  # still is still
    assert not np.array_equal(frames[3].image, frames[4].image)  # blur differs
    still = camera.capture_still()
    assert still.image.shape == (240, 320, 3)
    camera.unplug()
    with pytest.raises(CameraUnavailable):
        camera.read()
    assert state(camera) == "absent"
    camera.plug()
    clock.now += 2
    assert camera.read().image.shape == (120, 160, 3)
    camera.close()
    assert camera.history[-1] == "closed"


def test_realtime_fake_camera_follows_the_clock() -> None:
    """With realtime_fps the frame shown is the one the clock has reached, however often it is read."""
    clock = Clock()
    camera = FakeCamera(FakeCameraConfig(type="fake", width=64, height=48, empty_frames=2, slide_frames=2,
                                         blur_frames=0, realtime_fps=10), clock=clock)
    camera.read()
    camera.read()
    clock.now += 0.25
    camera.read()
    clock.now += 10
    camera.read()
    assert [h for h in camera.history if h.startswith("frame")] == [
        "frame 0 empty", "frame 0 empty", "frame 2 slide", "frame 102 still"]


def test_camera_pulled_mid_dossier_keeps_pages() -> None:
    """Two camera pages, the camera pulled: the third shot is a camera_unavailable fault, both
    pages are still there; plugged back, the next shot joins them."""
    clock = Clock()
    camera = FakeCamera(FakeCameraConfig(type="fake", width=160, height=120, empty_frames=0, slide_frames=0,
                                         blur_frames=0, retry_s=1), clock=clock)
    source = CapturePages(CameraSource(camera), ScanRequest())
    with DossierSession(pdf_builder=None) as session:
        session.open("000.00.12.H10-260101-0005")
        camera.read()
        assert len(session.capture(source).pages) == 1
        assert len(session.capture(source).pages) == 1
        camera.unplug()
        outcome = session.capture(source)
        assert outcome.fault == "camera_unavailable" and outcome.pages == ()
        snap = session.snapshot()
        assert snap.state == "review" and len(snap.pages) == 2 and snap.fault == "camera_unavailable"
        camera.plug()
        clock.now += 2
        outcome = session.capture(source)
        assert outcome.fault is None and [p.sequence for p in outcome.pages] == [3]
        page = session.pages()[-1]
        assert page.source == "camera" and page.content_type == "image/png" and page.data is not None
        session.cancel()


def test_camera_config_is_strict() -> None:
    """Unknown keys and a picamera2 config without its type are errors."""
    from pydantic import TypeAdapter, ValidationError

    from device.capture.config import CameraConfig

    adapter: TypeAdapter[Any] = TypeAdapter(CameraConfig)
    assert isinstance(adapter.validate_python({"type": "opencv", "device": "/dev/video2"}), OpenCVCameraConfig)
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "opencv", "devise": 0})
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "usb"})


def test_fake_camera_receipt_opens_dossier_through_pipeline() -> None:
    """The fake camera's still of a receipt slip, through the real page pipeline: the document's
    outline is found where the camera put it and the slip's QR names the walk-in dossier. The
    blurred frame before it is judged blurry (a bad input the kiosk must not auto-capture)."""
    from device.inference.pipeline import PagePipeline

    receipt = "000.00.12.H10-260101-0011|1.000001|001234567890|Giấy tiếp nhận hồ sơ"
    camera = FakeCamera(FakeCameraConfig(type="fake", width=640, height=480, empty_frames=0, slide_frames=0,
                                         blur_frames=2, qr_text=receipt))
    with (PagePipeline() as pipeline,
          DossierSession(SessionConfig(keep_results=True), processor=pipeline, pdf_builder=None) as session):
        camera.read()
        blurred = pipeline.process(camera.capture_still().image, source="camera")
        assert "blurry" in blurred.verdict.codes and blurred.codes == []
        camera.read()
        camera.read()  # now still
        session.open()
        outcome = session.capture(CapturePages(CameraSource(camera), ScanRequest()))
        assert outcome.fault is None and len(outcome.pages) == 1
        snap = session.snapshot()
        assert snap.dossier_code == "000.00.12.H10-260101-0011" and snap.opened_via == "qr"
        result: Any = session.pages()[0].result
        expected = np.array(camera.document_quad) * camera.config.still_scale
        assert result.quad is not None and np.abs(result.quad - expected).max() < 0.02 * 2560
        session.cancel()
