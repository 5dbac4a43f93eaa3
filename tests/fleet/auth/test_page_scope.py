"""Pages belong to the unit they came in under (``pages.unit_code``, migration 0006), not to
their device's unit now: a kiosk moved from commune 99001 (district 991) to 99004 (district 992)
leaves its earlier pages, their files and corrections with district 991; its later pages go to
992. A page without a unit of its own (from before 0006) goes by its device's unit.

Fault tried: the device's unit changed under its history (what scoping by the device's current
unit got wrong: 991 lost its page, 992 gained it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from fleet.models import Device, Event, Page, StoredFile
from tests.authn import login
from tests.fleet.auth.conftest import Clock, open_app, state_of
from tests.fleet.auth.world import AT, Holding, build_world


def _later_page(client: TestClient, device_id: str, unit: str) -> Holding:
    """A page of ``device_id`` that came in under ``unit``, with its file and a correction."""
    state = state_of(client)
    content = b"a page scanned after the move" * 50
    sha = hashlib.sha256(content).hexdigest()
    state.store.put_bytes(sha, content)
    held = Holding(unit, device_id, "page-after-move", sha, content)
    with state.sessions() as session:
        session.add(StoredFile(sha256=sha, size=len(content), content_type="image/png", stored_at=AT,
                               uploaded_by=device_id))
        session.add(Page(page_id=held.page_id, device_id=device_id, unit_code=unit, event_id="ev-after",
                         batch_id="batch-after", sequence=1, side="front", dossier_code="H9.001", sha256=sha,
                         size=len(content), content_type="image/png", width=10, height=10, dpi=200,
                         source="scanner", captured_at=AT, received_at=AT))
        session.add(Event(id="corr-after", device_id=device_id, type="doctype_corrected", severity="info",
                          ts=AT, received_at=AT, payload={"page_id": held.page_id, "sha256": sha,
                                                          "doctype": "cccd", "previous": None, "by": "clerk"}))
        session.commit()
    return held


def _sees(client: TestClient, page_id: str, sha256: str) -> dict[str, bool]:
    return {
        "list": page_id in {p["page_id"] for p in client.get("/api/v1/pages", params={"limit": 1000}).json()},
        "page": client.get(f"/api/v1/pages/{page_id}").status_code == 200,
        "page_file": client.get(f"/api/v1/pages/{page_id}/file").status_code == 200,
        "file": client.get(f"/api/v1/files/{sha256}").status_code == 200,
        "correction": page_id in {c["page_id"] for c in client.get("/api/v1/corrections").json()},
    }


def test_a_moved_device_leaves_its_pages_with_their_unit(tmp_path: Path, db_url: str, clock: Clock) -> None:
    """On SQLite and PostgreSQL."""
    with open_app(tmp_path, db_url, clock) as app_client:
        _moved_device(app_client)


def _moved_device(app_client: TestClient) -> None:
    world = build_world(app_client)
    state = state_of(app_client)
    old = world.mine  # kiosk-99001's page, which came in while the kiosk was in commune 99001
    with state.sessions() as session:
        session.execute(update(Page).where(Page.page_id == old.page_id).values(unit_code="99001"))
        session.execute(update(Device).where(Device.id == old.device_id).values(unit_code="99004"))
        session.commit()
    # A later page from the same kiosk, now in 99004 (its own unit recorded), and world.other's
    # page, which has no unit of its own (it goes by its device, in 99004).
    later = _later_page(app_client, old.device_id, "99004")
    everything = dict.fromkeys(("list", "page", "page_file", "file", "correction"), True)
    nothing = dict.fromkeys(everything, False)

    login(app_client, role="unit_admin", unit_code="991", name="district-991")
    assert _sees(app_client, old.page_id, old.sha256) == everything
    assert _sees(app_client, later.page_id, later.sha256) == nothing
    assert _sees(app_client, world.other.page_id, world.other.sha256) == nothing
    assert [c["unit"] for c in app_client.get("/api/v1/corrections").json()] == ["99001"]

    # The fleet screen's device page (the kiosk is in 99004 now, under 992) lists only the pages
    # the viewer may open: district 991 sees the kiosk's old page there, 992 only the later one.
    assert app_client.get(f"/api/v1/fleet/devices/{old.device_id}").status_code == 404  # not its device now

    login(app_client, role="viewer", unit_code="992", name="district-992")
    listed = [p["page_id"] for p in app_client.get(f"/api/v1/fleet/devices/{old.device_id}").json()["pages"]]
    assert listed == [later.page_id]  # not old.page_id, which came in under 99001
    assert _sees(app_client, old.page_id, old.sha256) == nothing
    assert _sees(app_client, later.page_id, later.sha256) == everything
    assert _sees(app_client, world.other.page_id, world.other.sha256) == everything  # by its device's unit
