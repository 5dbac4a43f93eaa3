"""The one place a capture backend is chosen: the config's ``type`` selects a factory, for
scanners and for cameras alike. A factory imports its backend (and the backend its hardware
library) only when it is called, so importing this module touches no hardware.

A new backend is a config model with its own ``type`` literal (:mod:`device.capture.config`) and
one entry here.

>>> from device.capture.config import FakeCameraConfig, FakeScannerConfig
>>> make_source(FakeScannerConfig(type="fake", pages=1)).kind
'scanner'
>>> open_camera(FakeCameraConfig(type="fake")).state
'closed'
>>> sorted(SCANNERS), sorted(CAMERAS)
(['fake', 'sane'], ['fake', 'opencv', 'picamera2'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from device.capture.config import (
    CameraConfig,
    FakeCameraConfig,
    FakeScannerConfig,
    OpenCVCameraConfig,
    PiCameraConfig,
    SaneScannerConfig,
    ScannerConfig,
)

if TYPE_CHECKING:
    from device.capture.base import CaptureSource
    from device.capture.camera import Camera


def _sane(config: SaneScannerConfig) -> CaptureSource:
    from device.capture.sane import IsolatedSaneSource, SaneSource

    return IsolatedSaneSource(config) if config.isolate else SaneSource(config)


def _fake_scanner(config: FakeScannerConfig) -> CaptureSource:
    from device.capture.fake import FakeSource

    return FakeSource(pages=config.pages, width=config.width, height=config.height, dpi=config.dpi,
                      noise=config.noise)


def _opencv(config: OpenCVCameraConfig) -> Camera:
    from device.capture.camera import OpenCVCamera

    return OpenCVCamera(config)


def _picamera2(config: PiCameraConfig) -> Camera:
    from device.capture.camera import PiCamera

    return PiCamera(config)


def _fake_camera(config: FakeCameraConfig) -> Camera:
    from device.capture.fake_camera import FakeCamera

    return FakeCamera(config)


SCANNERS: dict[str, Callable[[Any], CaptureSource]] = {"sane": _sane, "fake": _fake_scanner}
"""Scanner factories by the ``scanner:`` section's ``type``."""
CAMERAS: dict[str, Callable[[Any], Camera]] = {"opencv": _opencv, "picamera2": _picamera2, "fake": _fake_camera}
"""Camera factories by the ``camera:`` section's ``type``."""


def make_source(config: ScannerConfig | None) -> CaptureSource | None:
    """The scanner backend the config selects, not opened yet; None when no scanner is configured."""
    return None if config is None else SCANNERS[config.type](config)


def open_camera(config: CameraConfig) -> Camera:
    """The camera backend the config selects, not opened yet (the first read opens it)."""
    return CAMERAS[config.type](config)
