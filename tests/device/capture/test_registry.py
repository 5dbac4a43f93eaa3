"""One registry chooses every capture backend by the config's ``type``: each type a config can
name has exactly one factory, and a factory makes its backend without touching hardware."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from device.capture.base import CaptureSource
from device.capture.camera import Camera, OpenCVCamera, PiCamera
from device.capture.config import CameraConfig, ScannerConfig
from device.capture.fake import FakeSource
from device.capture.fake_camera import FakeCamera
from device.capture.registry import CAMERAS, SCANNERS, make_source, open_camera
from device.capture.sane import IsolatedSaneSource, SaneSource


def _types(union: Any) -> set[str]:
    models: tuple[type[BaseModel], ...] = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(model.model_fields["type"].annotation)[0] for model in models}


def test_every_configurable_type_has_one_factory() -> None:
    assert set(SCANNERS) == _types(ScannerConfig) == {"sane", "fake"}
    assert set(CAMERAS) == _types(CameraConfig) == {"opencv", "picamera2", "fake"}


@pytest.mark.parametrize(
    ("raw", "backend"),
    [
        ({"type": "sane"}, IsolatedSaneSource),
        ({"type": "sane", "isolate": False}, SaneSource),
        ({"type": "fake", "pages": 2}, FakeSource),
    ],
)
def test_scanners_by_type(raw: dict[str, Any], backend: type[CaptureSource]) -> None:
    source = make_source(TypeAdapter(ScannerConfig).validate_python(raw))
    try:
        assert type(source) is backend
    finally:
        assert source is not None
        source.close()


def test_no_scanner_configured() -> None:
    assert make_source(None) is None


@pytest.mark.parametrize(
    ("raw", "backend"),
    [({"type": "opencv", "device": "/dev/video-missing"}, OpenCVCamera), ({"type": "picamera2"}, PiCamera),
     ({"type": "fake"}, FakeCamera)],
)
def test_cameras_by_type_open_nothing_until_used(raw: dict[str, Any], backend: type[Camera]) -> None:
    with open_camera(TypeAdapter(CameraConfig).validate_python(raw)) as camera:
        assert type(camera) is backend and camera.state == "closed"


def test_an_unknown_type_is_a_config_error() -> None:
    """Bad input: a backend no registry entry names never reaches the registry."""
    with pytest.raises(ValidationError):
        TypeAdapter(CameraConfig).validate_python({"type": "webcam"})
