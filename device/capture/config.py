"""Where pages come from, as the config selects it: a scanner (``scanner:``, by its ``type``), a
watched folder (``folder:``) and a document camera (``camera:``, by its ``type``). The backends
themselves are made by :mod:`device.capture.registry`; these models import no hardware library.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(CameraConfig).validate_python({"type": "fake"}).width
960
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

A4_WIDTH_MM = 210.0
A4_HEIGHT_MM = 297.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(_Model):
    """The scan area in millimetres from the top-left corner; clamped to what the device offers."""

    width_mm: float = Field(default=A4_WIDTH_MM, gt=0, le=1000, description="Width of the area (A4: 210)")
    height_mm: float = Field(default=A4_HEIGHT_MM, gt=0, le=2000, description="Height of the area (A4: 297)")


class SaneScannerConfig(_Model):
    """A scanner driven through SANE (python-sane)."""

    type: Literal["sane"] = Field(default="sane", description="Backend: a SANE scanner")
    device: str = Field(
        default="auto",
        min_length=1,
        description="SANE device name (e.g. 'fujitsu:fi-7160:12345'), or 'auto' for the first one found",
    )
    source: Literal["flatbed", "adf"] = Field(default="adf", description="Flatbed glass or document feeder")
    duplex: bool = Field(default=False, description="Scan both sides, where the feeder offers it")
    dpi: int = Field(default=300, ge=75, le=1200, description="Resolution; administrative documents need >= 200")
    mode: Literal["color", "gray"] = Field(default="color", description="Colour mode (records require 24-bit colour)")
    area: Area = Field(default_factory=Area, description="Scan area, clamped to the device's maximum")
    max_pages: int = Field(default=200, ge=1, le=10000, description="Stop a feeder batch after this many images")
    png_compress_level: int = Field(
        default=3, ge=0, le=9, description="PNG compression (lossless at any level; higher is smaller and slower)"
    )
    isolate: bool = Field(
        default=True,
        description="Run the SANE driver in a child process: a driver that crashes, or hangs in sane_cancel after a "
                    "fault (sanei_thread's asynchronous cancel), costs a restart of the child, not the agent",
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Backend-specific SANE options set after the standard ones, by SANE name (e.g. 'page-height')",
    )


class FakeScannerConfig(_Model):
    """A scanner that makes up pages (for trying the agent without hardware)."""

    type: Literal["fake"] = Field(description="Backend: generated pages, no hardware")
    pages: int = Field(default=3, ge=0, le=1000, description="Pages a feeder batch yields")
    width: int = Field(default=620, ge=1, le=20000, description="Page width in pixels")
    height: int = Field(default=877, ge=1, le=20000, description="Page height in pixels")
    dpi: int = Field(default=75, ge=1, le=1200, description="Resolution the pages claim")
    noise: bool = Field(default=False, description="Random pixels: pages that do not compress (disk tests)")


ScannerConfig = Annotated[SaneScannerConfig | FakeScannerConfig, Field(discriminator="type")]


class FolderConfig(_Model):
    """Ingest image files dropped in a folder (archives scanned elsewhere)."""

    path: Path = Field(description="Folder watched for .png, .jpg, .jpeg, .tif, .tiff files")
    interval_s: float = Field(default=5.0, gt=0, le=3600, description="How often the folder is looked at")
    settle_s: float = Field(
        default=2.0, ge=0, le=600, description="A file must be unchanged this long before it is taken (still copying)"
    )
    after_import: Literal["move", "delete"] = Field(
        default="move", description="move: into '<path>/imported/'; delete: remove once safely in the outbox"
    )
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="Larger files are refused and left")


class _CameraModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retry_s: float = Field(default=2.0, ge=0, le=600, description="Least time between two attempts to reopen")
    dpi: int | None = Field(
        default=None, ge=1, le=2400, description="Resolution of a still on the document plane, when calibrated"
    )


class OpenCVCameraConfig(_CameraModel):
    """A USB (UVC) document camera read through OpenCV's V4L2 backend."""

    type: Literal["opencv"] = Field(default="opencv", description="Backend: OpenCV VideoCapture")
    device: int | str = Field(
        default=0, description="V4L2 index (0 = /dev/video0), a device path (/dev/v4l/by-id/...) or a stream URL"
    )
    api: Literal["v4l2", "any"] = Field(
        default="v4l2", description="OpenCV capture API: v4l2 for USB cameras, any to let OpenCV choose"
    )
    width: int | None = Field(default=1920, ge=16, le=10000, description="Requested frame width (None: camera's)")
    height: int | None = Field(default=1080, ge=16, le=10000, description="Requested frame height (None: camera's)")
    fps: float | None = Field(default=None, gt=0, le=120, description="Requested frame rate (None: camera's)")
    fourcc: str | None = Field(
        default="MJPG", min_length=4, max_length=4, description="Pixel format to ask for (MJPG lets USB 2 do 1080p)"
    )
    still_discard: int = Field(
        default=2, ge=0, le=30, description="Frames dropped before a still (the driver's buffer holds stale ones)"
    )


class PiCameraConfig(_CameraModel):
    """The Raspberry Pi camera through picamera2 (libcamera)."""

    type: Literal["picamera2"] = Field(description="Backend: picamera2 (only on a Raspberry Pi)")
    camera_num: int = Field(default=0, ge=0, le=8, description="Which camera, when the board has several")
    preview_width: int = Field(default=1280, ge=16, le=10000, description="Preview frame width")
    preview_height: int = Field(default=960, ge=16, le=10000, description="Preview frame height")
    still_width: int | None = Field(default=None, ge=16, le=20000, description="Still width (None: sensor's full)")
    still_height: int | None = Field(default=None, ge=16, le=20000, description="Still height (None: sensor's full)")


class FakeCameraConfig(_CameraModel):
    """Generated frames: a document slides onto a desk, blurred, then still (tests, demos)."""

    type: Literal["fake"] = Field(description="Backend: generated frames, no hardware")
    width: int = Field(default=960, ge=64, le=4000, description="Preview frame width")
    height: int = Field(default=720, ge=48, le=4000, description="Preview frame height")
    still_scale: float = Field(
        default=4.0, ge=1, le=6, description="A still is this many times the preview size (4: about 200 dpi on A4)"
    )
    empty_frames: int = Field(default=4, ge=0, le=1000, description="Frames of an empty desk first")
    slide_frames: int = Field(default=8, ge=0, le=1000, description="Frames of the document sliding into place")
    blur_frames: int = Field(default=4, ge=0, le=1000, description="Frames of the document in place but blurred")
    qr_text: str | None = Field(
        default=None, max_length=512, description="A QR code printed top-left on the document (needs segno)"
    )
    seed: int = Field(default=0, description="Seed of the generated document and desk")
    realtime_fps: float | None = Field(
        default=None, gt=0, le=120, description="Advance by the clock at this rate; None: one frame per read"
    )


CameraConfig = Annotated[OpenCVCameraConfig | PiCameraConfig | FakeCameraConfig, Field(discriminator="type")]
