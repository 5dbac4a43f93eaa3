"""Who sees what on the progress dashboard, the alerts and the fleet screen: a unit admin and a
viewer see their unit's subtree only, a viewer cannot acknowledge, a viewer with no unit sees the
province. Over the known data set (see conftest) with offline alerts for kiosk-p (99), kiosk-c
(99003) and kiosk-n (no unit); on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from tests.authn import browser_login, login, make_user
from tests.browser import chromium, needs_chromium
from tests.fleet.conftest import make_config, state_of
from tests.fleet.progress.conftest import NOW, fill, serve

SPAN = {"from": "2026-01", "to": "2026-02"}


def _alerts(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/alerts", params={"status": "active", **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def _evaluated(client: TestClient) -> dict[str, int]:
    """Evaluate as the province admin; {device: alert id}."""
    assert client.post("/api/v1/alerts/evaluate").status_code == 200
    return {a["device_id"]: a["id"] for a in _alerts(client)}


def _report_summary(client: TestClient) -> str:
    """The summary lines on top of the XLSX report (read with openpyxl)."""
    import io

    from openpyxl import load_workbook

    response = client.get("/api/v1/progress/report.xlsx", params=SPAN)
    assert response.status_code == 200, response.text
    rows = list(load_workbook(io.BytesIO(response.content))["Báo cáo"].iter_rows(values_only=True))
    title = next(i for i, r in enumerate(rows) if str(r[0] or "").startswith("BÁO CÁO ĐỊNH KỲ"))
    end = next(i for i in range(title, len(rows)) if not any(rows[i]))
    return " ".join(str(r[0]) for r in rows[title + 1:end])


UNATTRIBUTED_LINE = "chưa gắn được với đơn vị"


def test_a_unit_admin_sees_and_changes_only_their_subtree(filled: TestClient) -> None:
    """Bad input tried, as the admin of commune 99003: a unit filter on the province and on a
    sibling commune (403), an alert and a device of another unit by id (404), acknowledging
    another unit's alert (404), dossiers received and a target for a sibling (403), a tier's
    target and the unit tree (403); the province-wide count of unattributed dossiers is not in
    their report (it is in the province admin's)."""
    ids = _evaluated(filled)
    assert set(ids) == {"kiosk-p", "kiosk-c", "kiosk-n"}
    assert UNATTRIBUTED_LINE in _report_summary(filled)
    me = login(filled, role="unit_admin", unit_code="99003")
    assert UNATTRIBUTED_LINE not in _report_summary(filled)

    body = filled.get("/api/v1/progress", params=SPAN).json()
    assert body["root"] == "99003" and [u["code"] for u in body["units"]] == ["99003"]
    assert body["unattributed"] == 0  # the province's figure is not theirs
    for unit in ("99", "99001"):
        assert filled.get("/api/v1/progress", params={**SPAN, "unit": unit}).status_code == 403
        assert filled.get("/api/v1/progress/pages-per-day", params={**SPAN, "unit": unit}).status_code == 403
        assert filled.get("/api/v1/progress/report.xlsx", params={**SPAN, "unit": unit}).status_code == 403
    days = filled.get("/api/v1/progress/pages-per-day", params=SPAN).json()
    assert days["root"] == "99003" and sum(d["pages"] for d in days["days"]) == 5  # kiosk-c's pages only
    assert filled.get("/api/v1/progress/rejects", params=SPAN).json()["root"] == "99003"
    assert filled.get("/api/v1/progress/report.pdf", params=SPAN).status_code == 200

    assert [a["device_id"] for a in _alerts(filled)] == ["kiosk-c"]
    assert filled.get("/api/v1/alerts/counts").json()["total"] == 1
    assert filled.get("/api/v1/alerts", params={"under": "99"}).status_code == 403
    assert filled.get("/api/v1/alerts", params={"unit": "99"}).status_code == 403
    assert filled.get(f"/api/v1/alerts/{ids['kiosk-p']}").status_code == 404
    assert filled.post(f"/api/v1/alerts/{ids['kiosk-p']}/acknowledge").status_code == 404
    assert filled.post(f"/api/v1/alerts/{ids['kiosk-n']}/acknowledge").status_code == 404  # no unit at all
    acked = filled.post(f"/api/v1/alerts/{ids['kiosk-c']}/acknowledge")
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == me.name

    screen = filled.get("/api/v1/fleet/devices").json()
    assert [d["id"] for d in screen["devices"]] == ["kiosk-c"] and screen["total"] == 1
    assert filled.get("/api/v1/fleet/devices", params={"unit": "99001"}).status_code == 403
    assert filled.get("/api/v1/fleet/devices/kiosk-a").status_code == 404
    assert filled.get("/api/v1/fleet/devices/kiosk-c").status_code == 200

    received = [{"unit_code": "99001", "period": "2026-02", "received": 3}]
    assert filled.post("/api/v1/progress/received", json=received).status_code == 403
    own = [{"unit_code": "99003", "period": "2026-02", "received": 3}]
    assert filled.post("/api/v1/progress/received", json=own).status_code == 200
    target = {"period_from": "2026-03", "rate": 0.4}
    assert filled.put("/api/v1/progress/targets", json={**target, "unit_code": "99003"}).status_code == 200
    assert filled.put("/api/v1/progress/targets", json={**target, "unit_code": "99001"}).status_code == 403
    assert filled.put("/api/v1/progress/targets", json={**target, "tier": "commune"}).status_code == 403
    assert filled.post("/api/v1/units/import", content=b"code,name,tier,parent_code,valid_from,valid_to\n",
                       headers={"Content-Type": "text/csv"}).status_code == 403


def test_a_viewer_reads_their_subtree_and_cannot_acknowledge(filled: TestClient) -> None:
    """Bad input tried, as a viewer of province 99: acknowledging an alert of their own
    province (403), posting dossiers received (403). A viewer with no unit sees everything."""
    ids = _evaluated(filled)
    login(filled, role="viewer", unit_code="99")
    assert sorted(a["device_id"] for a in _alerts(filled)) == ["kiosk-c", "kiosk-p"]
    body = filled.get("/api/v1/progress", params=SPAN).json()
    assert [u["code"] for u in body["units"]] == ["99", "99001", "99003", "99004"]
    assert filled.post(f"/api/v1/alerts/{ids['kiosk-p']}/acknowledge").status_code == 403
    assert filled.get(f"/api/v1/alerts/{ids['kiosk-p']}").json()["status"] == "open"
    received = [{"unit_code": "99", "period": "2026-02", "received": 3}]
    assert filled.post("/api/v1/progress/received", json=received).status_code == 403
    assert sorted(d["id"] for d in filled.get("/api/v1/fleet/devices").json()["devices"]) == [
        "kiosk-a", "kiosk-c", "kiosk-p"]

    login(filled, role="viewer")
    assert len(_alerts(filled)) == 3
    assert filled.get("/api/v1/progress", params=SPAN).json()["unattributed"] == 1


@pytest.mark.browser
@needs_chromium
def test_a_viewer_in_the_browser_sees_their_alerts_without_an_acknowledge_button(tmp_path: Path,
                                                                                  artifacts: Path) -> None:
    """A viewer of commune 99003 logged in through the /login form: /fleet lists kiosk-c only and
    its alert with no acknowledge button; /progress shows 99003 and its one alert. An admin of
    the same commune gets the button (the check that the page can show it at all)."""
    from playwright.sync_api import expect

    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db")
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)
        fill(client)
        assert client.post("/api/v1/alerts/evaluate").status_code == 200
        sessions = state_of(client).sessions
        make_user(sessions, name="xem-99003", password="mat-khau-xem-1", role="viewer", unit_code="99003")
        make_user(sessions, name="qt-99003", password="mat-khau-qt-1", role="unit_admin", unit_code="99003")
    shots = artifacts / "progress"
    shots.mkdir(parents=True, exist_ok=True)
    with serve(create_app(config, clock=lambda: NOW)) as url, chromium() as browser:
        for name, password, buttons in (("xem-99003", "mat-khau-xem-1", 0), ("qt-99003", "mat-khau-qt-1", 1)):
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            browser_login(page, url, name, password)
            page.goto(url + "/fleet")
            expect(page.locator("#devices tbody tr")).to_have_count(1)
            expect(page.locator('#devices tr[data-device="kiosk-c"]')).to_be_visible()
            expect(page.locator("#alerts tbody tr")).to_have_count(1)
            expect(page.locator("#alerts button.ack")).to_have_count(buttons)
            page.screenshot(path=str(shots / f"scope-fleet-{name}.png"), full_page=True)
            page.goto(url + "/progress?from=2026-01&to=2026-02")
            expect(page.locator("#units tbody tr[data-code]")).to_have_count(1)
            expect(page.locator('tr[data-code="99003"] span.alert-badge')).to_have_text("⚑ 1")
            expect(page.locator("#alerts tbody tr")).to_have_count(1)
            page.context.close()
