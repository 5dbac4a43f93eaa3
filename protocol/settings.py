"""The settings the fleet may set on a device remotely (``config/desired``), the same on both sides.

The fleet checks desired settings with :func:`parse_settings` before it stores and publishes them
(a typo is an answer at the API); the device validates them again, applies them and answers on
``config/reported`` (``device/remote_settings.py``). Only these keys are remotely settable: identity,
broker, fleet address and paths stay in the device's own config file, because a bad remote value
there could cut the device off.

>>> parse_settings({"scan": {"dpi": 400}}).scan.dpi
400
>>> parse_settings({}).kiosk_language
'vi'
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanSettings(_Model):
    dpi: int = Field(default=300, ge=200, le=600, description="Scan resolution; records need at least 200 dpi")
    colour_mode: Literal["color", "gray"] = Field(
        default="color", description="Colour mode; records require 24-bit colour, gray only for internal copies"
    )


class QualityThresholds(_Model):
    """Overrides of the page pipeline's quality thresholds (same names as its QualityConfig)."""

    min_sharpness: float | None = Field(default=None, ge=0, le=10, description="Blurry below this")
    min_paper_level: float | None = Field(default=None, ge=0, le=255, description="Too dark below this")
    max_glare_fraction: float | None = Field(default=None, ge=0, le=1, description="Glare share allowed")
    max_skew_deg: float | None = Field(default=None, ge=0, le=45, description="Skewed above this")
    min_dpi: float | None = Field(default=None, ge=100, le=1200, description="Low resolution below this")
    max_blank_ink: float | None = Field(default=None, ge=0, le=0.1, description="Blank below this ink share")

    def overrides(self) -> dict[str, float]:
        """Only the thresholds set: ``quality_config.model_copy(update=...)`` takes them."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ClassifierSettings(_Model):
    model_version: str | None = Field(
        default=None,
        max_length=64,
        description="Classifier model version to run (must be installed on the device); None: the installed one",
    )
    min_confidence: float = Field(default=0.6, ge=0, le=1, description="Below this the page's type is left unknown")


def _parse_hhmm(value: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value[:16]!r} is not HH:MM") from None


class MaintenanceWindow(_Model):
    """When the device may install updates and restart: local time, may wrap past midnight.

    >>> w = MaintenanceWindow(start="23:00", end="02:00", timezone="Asia/Ho_Chi_Minh")
    >>> from datetime import datetime, UTC
    >>> w.is_open(datetime(2026, 1, 1, 17, 30, tzinfo=UTC))   # 00:30 in Hanoi
    True
    """

    start: str = Field(default="01:00", description="Opening, local HH:MM")
    end: str = Field(default="05:00", description="Closing, local HH:MM (before start: wraps past midnight)")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="IANA time zone the times are in")
    days: list[int] = Field(
        default_factory=lambda: list(range(7)),
        description="Weekdays (0 = Monday) on which the window opens",
    )

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        _parse_hhmm(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value[:40]!r}") from None
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 0 or d > 6 for d in value):
            raise ValueError("days must be a non-empty list of 0..6 (Monday = 0)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _not_empty(self) -> MaintenanceWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    def _opening(self, day: datetime) -> tuple[datetime, datetime]:
        start, end = _parse_hhmm(self.start), _parse_hhmm(self.end)
        opens = day.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
        closes = day.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if closes <= opens:
            closes += timedelta(days=1)
        return opens, closes

    def is_open(self, now: datetime) -> bool:
        return self.next_open(now) <= now

    def next_open(self, now: datetime) -> datetime:
        """``now`` if the window is open, else when it next opens (aware, in the window's zone)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        for offset in range(-1, 9):
            day = local + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens, closes = self._opening(day)
            if opens <= local < closes:
                return local
            if opens > local:
                return opens
        raise AssertionError("unreachable: a non-empty window opens within a week")

    def closes_at(self, now: datetime) -> datetime | None:
        """When the open window closes, or None when it is closed."""
        local = now.astimezone(ZoneInfo(self.timezone))
        for offset in (-1, 0):
            day = local + timedelta(days=offset)
            if day.weekday() in self.days:
                opens, closes = self._opening(day)
                if opens <= local < closes:
                    return closes
        return None


class RemoteSettings(_Model):
    """Every remotely settable key, with the default a device runs before the fleet sets any."""

    scan: ScanSettings = Field(default_factory=ScanSettings, description="Scanner resolution and colour")
    quality: QualityThresholds = Field(default_factory=QualityThresholds, description="Quality thresholds")
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings, description="Document classifier")
    telemetry_interval_s: float = Field(default=60, ge=10, le=86400, description="Seconds between health reports")
    kiosk_language: Literal["vi", "en"] = Field(default="vi", description="Language the kiosk screen opens in")
    maintenance_window: MaintenanceWindow = Field(
        default_factory=MaintenanceWindow, description="When updates may be installed"
    )


def parse_settings(settings: dict[str, Any]) -> RemoteSettings:
    """Desired settings checked against :class:`RemoteSettings`; raises pydantic's
    ``ValidationError`` naming each key that does not fit (an unknown one included)."""
    return RemoteSettings.model_validate(settings)
