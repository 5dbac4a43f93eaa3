"""On a real kiosk only (SOHOA_HARDWARE=1): the attached camera gives frames and a still.
Which camera: SOHOA_CAMERA=picamera2, or a V4L2 device path/index (default /dev/video0)."""

from __future__ import annotations

import os

import pytest

from device.capture.config import OpenCVCameraConfig, PiCameraConfig
from device.capture.registry import open_camera

pytestmark = pytest.mark.hardware


def test_real_camera_frames_and_still() -> None:
    """A real camera: three preview frames of the same size, then a still at least as large."""
    wanted = os.environ.get("SOHOA_CAMERA", "/dev/video0")
    config = (PiCameraConfig(type="picamera2") if wanted == "picamera2"
              else OpenCVCameraConfig(device=int(wanted) if wanted.isdigit() else wanted))
    with open_camera(config) as camera:
        frames = [camera.read() for _ in range(3)]
        assert camera.state == "ready" and len({f.image.shape for f in frames}) == 1
        still = camera.capture_still()
        assert still.image.shape[0] >= frames[0].image.shape[0] and still.image.shape[2] == 3
