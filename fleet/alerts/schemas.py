"""Response and request models of the alerts API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertOut(BaseModel):
    """One alert occurrence."""

    id: int = Field(description="Alert id")
    kind: str = Field(description="offline, scanner_jammed, scanner_cover_open, disk_low, outbox_backlog, "
                                  "reject_rate, behind_pace, delivery_failed or delivery_backlog")
    subject: str = Field(description="device:<id>, unit:<code> or target:<delivery target>")
    device_id: str | None = Field(description="The device, for device alerts")
    unit_code: str | None = Field(description="The unit (the device's, or the unit behind its pace)")
    status: Literal["open", "acknowledged", "resolved"] = Field(description="Where the alert is in its life")
    severity: str = Field(description="warning or error")
    message_vi: str = Field(description="What is wrong, in Vietnamese")
    message_en: str = Field(description="What is wrong, in English")
    value: float | None = Field(description="The measured figure (free share, backlog, rate; for offline "
                                            "the seconds offline when the alert opened)")
    opened_at: datetime = Field(description="When the condition was first seen")
    updated_at: datetime = Field(description="Last time it changed (opened, message, value, status)")
    acknowledged_at: datetime | None = Field(description="When an admin acknowledged it")
    acknowledged_by: str | None = Field(description="Who acknowledged it")
    resolved_at: datetime | None = Field(description="When the condition cleared")


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(default=None, max_length=64,
                           description="Not used: the logged-in user is recorded (accepted from older clients)")


class TransitionOut(BaseModel):
    event: Literal["opened", "resolved"] = Field(description="What happened to the alert")
    alert: AlertOut


class AlertCountsOut(BaseModel):
    """Active alerts (open or acknowledged), counted."""

    total: int = Field(default=0, description="Active alerts")
    by_status: dict[str, int] = Field(default_factory=dict, description="open / acknowledged -> count")
    by_severity: dict[str, int] = Field(default_factory=dict, description="error / warning -> count")
    by_kind: dict[str, int] = Field(default_factory=dict, description="Kind -> count")
    by_unit: dict[str, int] = Field(default_factory=dict, description="Unit code -> count (alerts with a unit)")


class PendingAlertOut(BaseModel):
    """An alert of a device not yet resolved, as the fleet screen's row lists it."""

    id: int
    kind: str
    status: Literal["open", "acknowledged"]
    severity: str


class FleetDeviceOut(BaseModel):
    """One device as the fleet screen shows it (times as the fleet wrote them, ISO 8601)."""

    id: str
    unit: str | None
    unit_name: str | None = Field(description="The unit's name valid today")
    online: bool
    revoked: bool = Field(description="Its certificates were revoked: neither online nor offline")
    since: str = Field(description="Online, offline or revoked since")
    last_seen: str
    version: str | None
    scanner_state: str | None
    scanner_model: str | None
    camera_state: str | None
    outbox_events: int | None
    outbox_files: int | None
    outbox_bytes: int | None
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    disk_free_share: float | None
    accepting_scans: bool | None
    pages_today: int
    rejected_today: int
    reject_rate: float | None
    alerts: list[PendingAlertOut]


class FleetDevicesOut(BaseModel):
    """The fleet screen's rows, with counts over every device that matched."""

    now: str
    total: int
    online: int
    offline: int
    revoked: int
    with_alerts: int
    devices: list[FleetDeviceOut]


class TimelineEventOut(BaseModel):
    id: str
    type: str
    severity: str
    ts: str
    detail: dict[str, Any] = Field(description="The event's fields worth a line (batch, outcome, reason, ...)")


class DevicePageOut(BaseModel):
    page_id: str
    captured_at: str
    doctype: str | None
    confidence: float | None
    dossier_code: str | None
    dropped: bool
    verdict: Literal["ok", "rejected"] | None
    issues: list[str]
    file_available: bool
    file_url: str


class FleetDeviceDetailOut(BaseModel):
    """One device: its row, newest events, newest pages and its alerts."""

    device: FleetDeviceOut
    events: list[TimelineEventOut]
    pages: list[DevicePageOut]
    alerts: list[AlertOut]
    now: str
