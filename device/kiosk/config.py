"""Configuration of the citizens' kiosk screen. The agent's config includes :class:`KioskConfig`
as ``kiosk:``."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class KioskConfig(BaseModel):
    """The kiosk's loopback web app: the screen Chromium shows full-screen, its camera guidance
    and automatic capture, and when personal data leaves the screen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Serve the kiosk screen (self-service kiosks)")
    host: str = Field(default="127.0.0.1", description="Loopback address to listen on (never beyond the device)")
    port: int = Field(default=8766, ge=0, le=65535, description="Port (0 picks a free one)")
    language: Literal["vi", "en"] = Field(default="vi", description="Language the screen starts in")
    preview_fps: float = Field(default=6.0, gt=0, le=30, description="Camera frames looked at per second")
    preview_width: int = Field(default=640, ge=160, le=1920, description="Width of the frames analysed and shown")
    still_frames: int = Field(
        default=3, ge=1, le=60, description="Consecutive still frames with the document in place before a shot"
    )
    still_threshold: float = Field(
        default=2.5, gt=0, le=50, description="Mean grey-level change between frames under which the scene is still"
    )
    qr_interval_s: float = Field(
        default=1.5, gt=0, le=60, description="Least time between two full-resolution looks for the receipt QR"
    )
    idle_reset_s: float = Field(
        default=60.0, gt=0, le=3600, description="No touch this long: the screen goes back to start, cleared"
    )
    finish_screen_s: float = Field(
        default=20.0, gt=0, le=600, description="How long the finish screen (dossier code, pages) stays"
    )
    abandon_after_s: float = Field(
        default=300.0, gt=0, le=7200, description="An open dossier nobody touched this long is abandoned"
    )
    staff_sign_out_s: float = Field(
        default=1800.0, gt=0, le=86400,
        description="A clerk signed in at the screen is signed out after this long without a touch",
    )
    abandoned_dossier: Literal["finish", "cancel"] = Field(
        default="finish",
        description="finish: an abandoned dossier's pages are filed (no page lost); cancel: they are dropped",
    )

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if value == "localhost":
            return value
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be a loopback address such as 127.0.0.1") from None
        if not address.is_loopback:
            raise ValueError("must be a loopback address: the kiosk app has no authentication")
        return value

    @model_validator(mode="after")
    def _times(self) -> KioskConfig:
        if self.abandon_after_s < self.idle_reset_s:
            raise ValueError("abandon_after_s must be at least idle_reset_s")
        return self
