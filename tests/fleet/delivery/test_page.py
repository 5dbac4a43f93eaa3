"""The deliveries API, alerts, metrics and the Deliveries page (/deliveries) in real headless
Chromium: backlog per target, a failed delivery with its reason, an admin's retry and cancel
(audited), a viewer without buttons, English, and axe-core finding no serious violation.
Screenshots in test-artifacts/deliveries/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.api.app import create_app
from fleet.auth.models import AuditEntry
from fleet.config import FleetConfig
from fleet.delivery.config import DeliveryConfig, FolderTarget
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login, make_user
from tests.browser import axe_serious, chromium, needs_chromium
from tests.fleet.conftest import make_config, state_of
from tests.fleet.delivery.conftest import NOW, add_documents
from tests.fleet.progress.conftest import serve

VIEWER, VIEWER_PASSWORD = "xem-giao", "viewer-password-9"


def _config(tmp_path: Path) -> FleetConfig:
    base = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db")
    # The worker's thread is off: the test runs its passes, so what the page shows is known.
    delivery = DeliveryConfig(enabled=False, targets=[FolderTarget(name="motcua-share", dir=tmp_path / "share")],
                              backlog_alert=2)
    return base.model_copy(update={"delivery": delivery})


@dataclass
class Fed:
    failed_id: int
    waiting_id: int


def _feed(client: TestClient) -> Fed:
    """Two good dossiers delivered, one whose code cannot be a file name (failed), one queued."""
    state = state_of(client)
    add_documents(state.sessions, state.store, 2, per_dossier=1, unit="99001")
    add_documents(state.sessions, state.store, 1, per_dossier=1, unit="99001", prefix="bad..x")
    worker = state.services.delivery
    assert worker is not None
    worker.run_once()
    add_documents(state.sessions, state.store, 1, per_dossier=1, unit="99001", prefix="LATE")
    with state.sessions.begin() as session:
        from fleet.delivery import outbox

        outbox.enqueue(session, state.config.delivery.targets, NOW, 10)
    listed = client.get("/api/v1/deliveries?state=failed").json()
    waiting = client.get("/api/v1/deliveries?state=waiting").json()
    return Fed(failed_id=listed[0]["id"], waiting_id=waiting[0]["id"])


def test_api_alerts_and_metrics(tmp_path: Path) -> None:
    with TestClient(create_app(_config(tmp_path), clock=lambda: NOW)) as client:
        login(client)
        fed = _feed(client)
        summary = client.get("/api/v1/deliveries/summary").json()
        assert summary == [{"name": "motcua-share", "type": "folder", "configured": True,
                            "by_state": {"queued": 1, "sending": 0, "delivered": 0, "acknowledged": 2, "failed": 1,
                                         "cancelled": 0},
                            "backlog": 1, "oldest_waiting": summary[0]["oldest_waiting"]}]
        failed = client.get("/api/v1/deliveries?state=failed").json()
        assert [(d["document"], d["last_error"], d["attempts"]) for d in failed] == [
            ("bad..x-261207-00000.1", "dossier code is not usable as a file name", 1)]

        alerts = client.post("/api/v1/alerts/evaluate").json()
        assert {(a["alert"]["kind"], a["alert"]["subject"]) for a in alerts} == {
            ("delivery_failed", "target:motcua-share")}
        metrics = client.get("/metrics").text
        assert 'sohoa_fleet_deliveries{state="failed",target="motcua-share"} 1.0' in metrics

        assert client.post(f"/api/v1/deliveries/{fed.waiting_id}/retry").status_code == 409
        assert client.post(f"/api/v1/deliveries/{fed.failed_id}/retry").json()["state"] == "queued"
        assert client.post(f"/api/v1/deliveries/{fed.failed_id}/cancel").json()["state"] == "cancelled"
        assert client.post(f"/api/v1/deliveries/{fed.failed_id}/cancel").status_code == 409
        assert client.post("/api/v1/deliveries/999/retry").status_code == 404
        alerts = client.post("/api/v1/alerts/evaluate").json()
        assert {(a["event"], a["alert"]["kind"]) for a in alerts} == {("resolved", "delivery_failed")}

        login(client, role="viewer")
        assert client.post(f"/api/v1/deliveries/{fed.failed_id}/retry").status_code == 403
        login(client, role="unit_admin", unit_code="99002")  # another unit's admin: not theirs
        assert client.post(f"/api/v1/deliveries/{fed.failed_id}/retry").status_code == 404
        assert client.get("/api/v1/deliveries?state=cancelled").json() == []
        with state_of(client).sessions() as session:
            audited = [(a.action, a.outcome) for a in session.scalars(select(AuditEntry).where(
                AuditEntry.target == f"/api/v1/deliveries/{fed.failed_id}/retry"))]
        assert ("POST /api/v1/deliveries/{delivery_id}/retry", "200") in audited
        assert ("POST /api/v1/deliveries/{delivery_id}/retry", "403") in audited


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    config = _config(tmp_path)
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)
        ensure_admin(state_of(client).sessions)
        make_user(state_of(client).sessions, name=VIEWER, password=VIEWER_PASSWORD, role="viewer", unit_code=None)
        _feed(client)
    with serve(create_app(config, clock=lambda: NOW)) as url:
        yield url


@pytest.mark.browser
@needs_chromium
def test_deliveries_page(served: str, artifacts: Path) -> None:
    from playwright.sync_api import expect

    shots = artifacts / "deliveries"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        browser_login(page, served, ADMIN_NAME, ADMIN_PASSWORD)
        page.goto(served + "/deliveries")
        target = page.locator('#targets tr[data-target="motcua-share"]')
        expect(target.locator("td.backlog")).to_have_text("1")
        expect(target.locator("td.acknowledged")).to_have_text("2")
        expect(target).to_have_class("stuck")
        failed = page.locator("#failed tbody tr")
        expect(failed).to_have_count(1)
        expect(failed.locator("td.reason")).to_have_text("dossier code is not usable as a file name")
        assert axe_serious(page) == []
        page.screenshot(path=str(shots / "deliveries-vi.png"), full_page=True)

        failed.locator('button[data-act="retry"]').click()
        expect(page.locator("#notice")).to_have_text("Đã xếp hàng gửi lại bad..x-261207-00000.1 tới motcua-share.")
        expect(page.locator("#failed tbody tr td.muted")).to_have_text("Không có.")
        expect(target.locator("td.backlog")).to_have_text("2")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator('#waiting tbody tr').first.locator('button[data-act="cancel"]').click()
        expect(target.locator("td.cancelled")).to_have_text("1")

        page.locator("#lang").click()
        expect(page.locator("#targets thead")).to_contain_text("Acknowledged")
        expect(page.locator("h1")).to_have_text("Delivery of signed dossiers")
        assert axe_serious(page) == []
        page.screenshot(path=str(shots / "deliveries-en.png"), full_page=True)

        viewer = browser.new_context().new_page()
        browser_login(viewer, served, VIEWER, VIEWER_PASSWORD)
        viewer.goto(served + "/deliveries")
        expect(viewer.locator('#targets tr[data-target="motcua-share"]')).to_be_visible()
        expect(viewer.locator("button[data-act]")).to_have_count(0)
