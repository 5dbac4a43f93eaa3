"""Desired and reported settings: what the fleet may set on a device remotely.

The fleet publishes a retained :class:`~protocol.messages.ConfigDesired` (its settings already
merged from fleet, unit and device levels). :class:`SettingsStore` validates it against
:class:`RemoteSettings`, hands the new settings to the agent's ``apply`` callable, and only when
that succeeded writes them to disk (atomically, fsynced) as the last good settings. Anything
invalid is rejected with the reason, and the device keeps running what it ran::

    store = SettingsStore(state_dir / "settings.json", device_id="kiosk-0001", apply=agent.apply_settings)
    reported = store.handle(desired)          # a ConfigReported, to publish on config/reported
    store.current.maintenance_window.is_open(now)

Only the keys below are remotely settable: paths, broker and fleet addresses stay local (a bad
remote value there could cut the device off).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device.durable import atomic_write
from device.errors import SohoaError
from protocol.messages import ConfigDesired, ConfigReported

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000


class SettingsRejected(SohoaError, ValueError):
    """Desired settings that do not validate or that the agent could not apply."""


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


def agent_config_overrides(settings: RemoteSettings) -> dict[str, Any]:
    """The parts of the agent's ``AgentConfig`` (device/config.py) these settings decide, shaped
    for a deep merge into ``config.model_dump()``: scanner resolution and colour mode, telemetry
    interval. Quality, classifier, language and window are read from the settings themselves.

    >>> agent_config_overrides(RemoteSettings())["scanner"]
    {'dpi': 300, 'mode': 'color'}
    """
    return {
        "scanner": {"dpi": settings.scan.dpi, "mode": settings.scan.colour_mode},
        "telemetry": {"interval_s": settings.telemetry_interval_s},
    }


def describe_errors(exc: ValidationError) -> str:
    """One line per error, 'key.path: message' (pydantic's message, not the whole input; the
    settings hold no personal data)."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(settings)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)[:MAX_ERROR_CHARS]


ApplyFn = Callable[[RemoteSettings], None]
"""The agent's hook: make the running agent use these settings, or raise to refuse them."""


class SettingsStore:
    """The device's settings: the last good ones on disk, desired ones checked and applied.

    ``available_models`` (optional) lists installed classifier model versions, so a desired
    model that is not on the device is rejected instead of breaking classification.
    """

    def __init__(
        self,
        path: Path,
        *,
        device_id: str,
        apply: ApplyFn | None = None,
        available_models: Callable[[], set[str]] | None = None,
    ) -> None:
        self.path = path
        self.device_id = device_id
        self._apply = apply
        self._available_models = available_models
        self.version: int | None = None
        self.current = RemoteSettings()
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            self.current = RemoteSettings.model_validate(raw["settings"])
            self.version = int(raw["version"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            # The file is written atomically, so this is damage from outside: run defaults.
            log.warning("settings file %s unreadable (%s): running defaults", self.path, type(exc).__name__)

    def validate(self, settings: dict[str, Any]) -> RemoteSettings:
        """Parse desired settings; raise :class:`SettingsRejected` with every reason."""
        try:
            parsed = RemoteSettings.model_validate(settings)
        except ValidationError as exc:
            raise SettingsRejected(describe_errors(exc)) from None
        wanted = parsed.classifier.model_version
        if wanted is not None and self._available_models is not None:
            installed = self._available_models()
            if wanted not in installed:
                raise SettingsRejected(
                    f"classifier.model_version: {wanted!r} is not installed (installed: {sorted(installed)})"[
                        :MAX_ERROR_CHARS
                    ]
                )
        return parsed

    def reported(self, version: int, *, error: str | None = None) -> ConfigReported:
        return ConfigReported(
            device_id=self.device_id,
            version=version,
            applied=error is None,
            error=error,
            settings=self.current.model_dump(mode="json"),
        )

    def handle(self, desired: ConfigDesired) -> ConfigReported:
        """Validate and apply desired settings; the answer to publish on ``config/reported``.

        Idempotent: the same or an older version (a retained message delivered again) is not
        applied again; the answer says what the device runs.
        """
        if self.version is not None and desired.version <= self.version:
            log.info("desired settings v%s not newer than v%s: not applied again", desired.version, self.version)
            return self.reported(self.version)
        try:
            parsed = self.validate(desired.settings)
        except SettingsRejected as exc:
            log.warning("desired settings v%s rejected: %s", desired.version, exc)
            return self.reported(desired.version, error=str(exc))
        previous = self.current
        if self._apply is not None:
            try:
                self._apply(parsed)
            except Exception as exc:  # the agent's hook refused: go back to what worked
                log.warning("applying settings v%s failed (%s): restoring the previous", desired.version, exc)
                try:
                    self._apply(previous)
                except Exception:
                    log.exception("restoring the previous settings failed")
                return self.reported(desired.version, error=f"not applied: {str(exc)[:900]}")
        payload = {"version": desired.version, "settings": parsed.model_dump(mode="json")}
        atomic_write(self.path, json.dumps(payload, indent=2).encode())
        self.current, self.version = parsed, desired.version
        log.info("settings v%s applied", desired.version)
        return self.reported(desired.version)
