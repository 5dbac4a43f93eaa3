from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from fleet.models import Device, is_online


class OutboxOut(BaseModel):
    events: int | None = Field(description="Events the device still has to deliver")
    files: int | None = Field(description="Page files the device still has to upload")
    bytes: int | None = Field(description="Bytes of those files")


class DeviceOut(BaseModel):
    """A device as the fleet last heard from it."""

    id: str = Field(description="Device id")
    unit: str | None = Field(description="Code of the administrative unit it serves: its enrollment's (the fleet's "
                             "assignment), else what its status says")
    online: bool = Field(description="Status not offline and heard from within the heartbeat timeout")
    status: str = Field(
        description="Last status it (or its Last Will) published: online, offline, unknown; or revoked once an "
        "admin revoked its certificates (the broker and the API refuse it); enrolled: accepted, never connected"
    )
    status_at: datetime | None = Field(description="When that status was received")
    first_seen: datetime | None = Field(description="First message received (None: never connected)")
    last_seen: datetime | None = Field(description="Latest message received (None: never connected)")
    version: str | None = Field(description="Agent version")
    scanner_state: str | None = Field(description="ready, scanning, jammed, cover_open, no_docs, error, absent...")
    scanner_model: str | None = Field(description="Scanner vendor and model when known")
    outbox: OutboxOut = Field(description="Outbox depth from the latest telemetry")
    accepting_scans: bool | None = Field(description="False when the device refuses scans (disk low)")
    telemetry: dict[str, Any] | None = Field(default=None, description="Latest telemetry (detail view only)")

    @classmethod
    def enrolled(cls, device_id: str, unit: str) -> "DeviceOut":
        """A device enrolled (its enrollment accepted) that has not connected yet."""
        return cls(id=device_id, unit=unit, online=False, status="enrolled", status_at=None, first_seen=None,
                   last_seen=None, version=None, scanner_state=None, scanner_model=None,
                   outbox=OutboxOut(events=None, files=None, bytes=None), accepting_scans=None)

    @classmethod
    def of(cls, device: Device, now: datetime, timeout_s: float, *, detail: bool = False) -> "DeviceOut":
        return cls(
            id=device.id,
            unit=device.unit_code,
            online=device.revoked_at is None and is_online(device, now, timeout_s),
            status="revoked" if device.revoked_at is not None else device.status,
            status_at=device.status_at,
            first_seen=device.first_seen,
            last_seen=device.last_seen,
            version=device.agent_version,
            scanner_state=device.scanner_state,
            scanner_model=device.scanner_model,
            outbox=OutboxOut(events=device.outbox_events, files=device.outbox_files, bytes=device.outbox_bytes),
            accepting_scans=device.accepting_scans,
            telemetry=device.last_telemetry if detail else None,
        )
