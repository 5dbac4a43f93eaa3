"""A small fleet to test scoping on: the sample unit tree, one device with a page, its file and
a correction in commune 99001 (under district 991), the same in commune 99004 (district 992)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from fleet.api.state import FleetState, fleet_state
from fleet.models import Device, Event, Page, StoredFile
from fleet.progress.units import import_units, sample_csv

AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Holding:
    """One unit's device, page and page file."""

    unit: str
    device_id: str
    page_id: str
    sha256: str
    content: bytes


def _hold(state: FleetState, unit: str, n: int) -> Holding:
    content = f"page scanned in unit {unit}".encode() * 50
    sha = hashlib.sha256(content).hexdigest()
    state.store.put_bytes(sha, content)
    holding = Holding(unit, f"kiosk-{unit}", f"page-{unit}", sha, content)
    with state.sessions() as session:
        session.add(Device(id=holding.device_id, unit_code=unit, first_seen=AT, last_seen=AT, status="online"))
        session.flush()
        session.add(StoredFile(sha256=sha, size=len(content), content_type="image/png", stored_at=AT,
                               uploaded_by=holding.device_id))
        session.add(Page(page_id=holding.page_id, device_id=holding.device_id, event_id=f"ev-{n}",
                         batch_id=f"batch-{n}", sequence=1, side="front", dossier_code=f"H{n}.001", sha256=sha,
                         size=len(content), content_type="image/png", width=10, height=10, dpi=200,
                         source="scanner", captured_at=AT, received_at=AT))
        session.add(Event(id=f"corr-{n}", device_id=holding.device_id, type="doctype_corrected", severity="info",
                          ts=AT, received_at=AT,
                          payload={"page_id": holding.page_id, "sha256": sha, "doctype": "cccd", "previous": None,
                                   "by": "clerk"}))
        session.commit()
    return holding


@dataclass(frozen=True)
class World:
    mine: Holding  # unit 99001, under district 991
    other: Holding  # unit 99004, under district 992


def build_world(client: TestClient) -> World:
    state = fleet_state(client.app)
    with state.sessions() as session:
        import_units(session, sample_csv())
    return World(mine=_hold(state, "99001", 1), other=_hold(state, "99004", 2))
