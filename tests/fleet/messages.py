"""Real protocol messages for the fleet tests (what a device would send)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from protocol.messages import OutboxDepth, Page, PageCaptured, ScannerFault, ScannerInfo, Status, Telemetry, new_id


def page_event(device_id: str, data: bytes, *, sequence: int = 1, batch_id: str = "batch-0001",
               dossier_code: str | None = "000.00.00.H13-260101-0001", captured_at: datetime | None = None,
               event_id: str | None = None) -> PageCaptured:
    page = Page(
        page_id=new_id(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type="image/png",
        width=1240,
        height=1754,
        dpi=150,
        source="scanner",
        batch_id=batch_id,
        sequence=sequence,
        dossier_code=dossier_code,
        captured_at=captured_at or datetime.now(UTC),
    )
    if event_id is None:
        return PageCaptured(device_id=device_id, page=page)
    return PageCaptured(id=event_id, device_id=device_id, page=page)


def fault(device_id: str) -> ScannerFault:
    return ScannerFault(device_id=device_id, type="scanner_jammed", severity="warning",
                        message="Document feeder jammed")


def telemetry(device_id: str, *, state: str = "ready", events: int = 0) -> Telemetry:
    return Telemetry(
        device_id=device_id,
        agent_version="0.1.0",
        uptime_s=12.0,
        cpu_percent=3.5,
        memory_percent=20.0,
        disk_free_bytes=10**10,
        disk_total_bytes=3 * 10**10,
        scanner=ScannerInfo(state=state, model="SANE test"),
        outbox=OutboxDepth(events=events, files=1, bytes=1234),
    )


def status(device_id: str, state: str) -> Status:
    return Status(device_id=device_id, state=state, agent_version="0.1.0",
                  unit="26734" if state == "online" else None)
