"""Alerts from what devices report through the fleet's real ingest writer, with the fleet's clock
moved by the test: offline (opens late enough, once, clears when the device returns), scanner
jam and cover open, disk nearly full, a growing outbox backlog, a high reject rate, a unit behind
its target pace; acknowledgement; the API's filters; the periodic evaluator thread. On SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fleet.alerts.evaluator import AlertEvaluator
from fleet.api.app import create_app
from fleet.progress.units import sample_csv
from tests.authn import login
from tests.fleet.alerts.conftest import (
    T0,
    Clock,
    alerts_config,
    evaluator_of,
    jam,
    offline,
    online,
    page,
    report,
    send,
    statements,
)


def evaluate(client: TestClient) -> list[tuple[str, str, str]]:
    """Evaluate now through the API: (event, kind, subject) of what changed."""
    response = client.post("/api/v1/alerts/evaluate")
    assert response.status_code == 200, response.text
    return [(t["event"], t["alert"]["kind"], t["alert"]["subject"]) for t in response.json()]


def active(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/alerts", params={"status": "active", **filters})
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()
    return alerts


def test_offline_alert_opens_once_and_clears_when_the_device_returns(fleet: TestClient, clock: Clock) -> None:
    """Bad input tried: a device silent for less than the set time (no alert), evaluating again
    while offline (no second alert), acknowledging twice, acknowledging a resolved alert (409)
    and an unknown one (404), an unknown status filter (422)."""
    send(fleet, online("kiosk-a", T0), T0)
    send(fleet, report("kiosk-a", T0), T0)
    clock.advance(minutes=5)  # silent past the heartbeat timeout (180 s), not yet 15 minutes
    assert evaluate(fleet) == []
    send(fleet, offline("kiosk-a", T0 + timedelta(minutes=6)), T0 + timedelta(minutes=6))  # its Last Will
    clock.advance(minutes=15)  # 14 minutes since the Will
    assert evaluate(fleet) == []
    clock.advance(minutes=2)
    assert evaluate(fleet) == [("opened", "offline", "device:kiosk-a")]
    [alert] = active(fleet)
    assert alert["status"] == "open" and alert["device_id"] == "kiosk-a" and alert["unit_code"] == "99001"
    assert alert["value"] == 16 * 60
    assert "mất kết nối" in alert["message_vi"] and "offline" in alert["message_en"]
    assert "từ 09:06 20/03" in alert["message_vi"] and "since 09:06 20/03" in alert["message_en"]
    clock.advance(minutes=10)
    with statements(fleet) as written:
        assert evaluate(fleet) == []  # still offline: the same alert, and nothing about it changed
    assert not [s for s in written if s.startswith("UPDATE alerts")], written
    [again] = active(fleet)
    assert again == alert  # not rewritten: same message, value as opened, updated_at as opened

    acked = fleet.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"by": "it-admin"})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    # Who acknowledged is the logged-in user, not what the body claims.
    assert acked.json()["acknowledged_by"] == fleet.get("/api/v1/auth/me").json()["name"] != "it-admin"
    assert fleet.post(f"/api/v1/alerts/{alert['id']}/acknowledge").json()["status"] == "acknowledged"
    assert evaluate(fleet) == []
    assert [a["status"] for a in active(fleet)] == ["acknowledged"]

    back = clock.advance(minutes=1)
    send(fleet, online("kiosk-a", back), back)
    assert evaluate(fleet) == [("resolved", "offline", "device:kiosk-a")]
    assert active(fleet) == []
    resolved = fleet.get(f"/api/v1/alerts/{alert['id']}").json()
    assert resolved["status"] == "resolved" and resolved["resolved_at"] is not None
    assert fleet.post(f"/api/v1/alerts/{alert['id']}/acknowledge").status_code == 409
    assert fleet.post("/api/v1/alerts/999999/acknowledge").status_code == 404
    assert fleet.get("/api/v1/alerts", params={"status": "closed"}).status_code == 422

    # Offline again later: a new alert, the old one stays resolved.
    gone = clock.advance(minutes=1)
    send(fleet, offline("kiosk-a", gone), gone)
    clock.advance(minutes=20)
    assert evaluate(fleet) == [("opened", "offline", "device:kiosk-a")]
    history = fleet.get("/api/v1/alerts", params={"device_id": "kiosk-a"}).json()
    assert [a["status"] for a in history] == ["open", "resolved"]


def test_scanner_jam_and_cover_open(fleet: TestClient, clock: Clock) -> None:
    """A jam event opens an alert at once, before the next telemetry; telemetry saying ready
    clears it. Bad input tried: a jam event older than the latest telemetry (already over: no
    alert), a cover left open (its own kind)."""
    send(fleet, online("kiosk-j", T0), T0)
    send(fleet, report("kiosk-j", T0), T0)
    send(fleet, jam("kiosk-j", T0 - timedelta(minutes=1)), T0)  # before the ready report: over
    assert evaluate(fleet) == []
    at = clock.advance(minutes=1)
    send(fleet, jam("kiosk-j", at), at)
    assert evaluate(fleet) == [("opened", "scanner_jammed", "device:kiosk-j")]
    devices = fleet.get("/api/v1/fleet/devices").json()["devices"]
    assert devices[0]["scanner_state"] == "jammed" and devices[0]["alerts"][0]["kind"] == "scanner_jammed"
    at = clock.advance(minutes=1)
    send(fleet, report("kiosk-j", at, scanner="jammed"), at)
    assert evaluate(fleet) == []  # still jammed: one alert
    at = clock.advance(minutes=1)
    send(fleet, report("kiosk-j", at), at)
    assert evaluate(fleet) == [("resolved", "scanner_jammed", "device:kiosk-j")]
    at = clock.advance(minutes=1)
    send(fleet, report("kiosk-j", at, scanner="cover_open"), at)
    assert evaluate(fleet) == [("opened", "scanner_cover_open", "device:kiosk-j")]
    assert [a["kind"] for a in active(fleet, kind="scanner_cover_open")] == ["scanner_cover_open"]
    assert active(fleet, kind="scanner_jammed") == []


def test_disk_backlog_and_reject_rate(fleet: TestClient, clock: Clock) -> None:
    """Bad input tried: a large but shrinking backlog (no alert), a large backlog reported only
    once (nothing to compare: no alert), too few pages today to judge the reject rate, rejected
    pages from yesterday (not today's)."""
    send(fleet, online("kiosk-d", T0), T0)
    send(fleet, report("kiosk-d", T0, free=2 * 10**9, total=3 * 10**10, backlog=150), T0)
    assert evaluate(fleet) == [("opened", "disk_low", "device:kiosk-d")]  # 6.7% free; one backlog report
    at = clock.advance(minutes=40)
    send(fleet, report("kiosk-d", at, free=10**10, backlog=120), at)  # shrinking
    assert evaluate(fleet) == [("resolved", "disk_low", "device:kiosk-d")]
    at = clock.advance(minutes=40)
    send(fleet, report("kiosk-d", at, backlog=400), at)  # larger than 30 minutes ago
    assert evaluate(fleet) == [("opened", "outbox_backlog", "device:kiosk-d")]
    at = clock.advance(minutes=40)
    send(fleet, report("kiosk-d", at, backlog=300), at)  # still large: stays open
    assert evaluate(fleet) == []
    at = clock.advance(minutes=40)
    send(fleet, report("kiosk-d", at, backlog=20), at)
    assert evaluate(fleet) == [("resolved", "outbox_backlog", "device:kiosk-d")]

    yesterday = clock.now - timedelta(days=1)
    for n in range(30):
        send(fleet, page("kiosk-d", f"old-{n}".encode(), yesterday, ok=False, n=n + 1), yesterday)
    for n in range(19):  # 19 pages today, 10 rejected: too few to judge
        send(fleet, page("kiosk-d", f"p-{n}".encode(), clock.now, ok=n >= 10, n=n + 1), clock.now)
    assert evaluate(fleet) == []
    send(fleet, page("kiosk-d", b"p-19", clock.now, ok=None, n=20), clock.now)
    assert evaluate(fleet) == [("opened", "reject_rate", "device:kiosk-d")]
    [alert] = active(fleet, kind="reject_rate")
    assert alert["value"] == 0.5 and "10/20" in alert["message_en"]
    row = fleet.get("/api/v1/fleet/devices").json()["devices"][0]
    assert (row["pages_today"], row["rejected_today"], row["reject_rate"]) == (20, 10, 0.5)
    for n in range(20, 40):
        send(fleet, page("kiosk-d", f"p-{n}".encode(), clock.now, n=n + 1), clock.now)
    assert evaluate(fleet) == [("resolved", "reject_rate", "device:kiosk-d")]  # 10/40 = 25%


def test_unit_behind_target_pace(fleet: TestClient, clock: Clock) -> None:
    """Commune 99001 received 10 dossiers in March and digitized 2 (20% < 35%): an alert while
    the month runs, none in its first days. Bad input tried: a unit with nothing received (no
    alert), a unit on target (99003: 4 of 10)."""
    assert fleet.post("/api/v1/units/import", content=sample_csv().encode(),
                      headers={"Content-Type": "text/csv"}).status_code == 200
    assert fleet.post("/api/v1/progress/received", json=[
        {"unit_code": "99001", "period": "2026-03", "received": 10},
        {"unit_code": "99003", "period": "2026-03", "received": 10}]).status_code == 200
    early = T0.replace(day=3)
    send(fleet, online("kiosk-a", early, unit="99001"), early)
    send(fleet, online("kiosk-c", early, unit="99003"), early)
    for n in range(2):
        send(fleet, page("kiosk-a", f"a-{n}".encode(), early, dossier=f"A{n}"), early)
    for n in range(4):
        send(fleet, page("kiosk-c", f"c-{n}".encode(), early, dossier=f"C{n}"), early)
    clock.now = early + timedelta(hours=1)  # 3 March: too early to judge the pace
    pace = [t for t in evaluate(fleet) if t[1] == "behind_pace"]
    assert pace == []
    clock.now = T0
    pace = [t for t in evaluate(fleet) if t[1] == "behind_pace"]
    assert pace == [("opened", "behind_pace", "unit:99001")]
    [alert] = active(fleet, kind="behind_pace")
    assert alert["unit_code"] == "99001" and alert["device_id"] is None and alert["value"] == 0.2
    assert "35%" in alert["message_en"] and "days left" in alert["message_en"]
    for n in range(2, 4):
        send(fleet, page("kiosk-a", f"a-{n}".encode(), T0, dossier=f"A{n}"), T0)
    pace = [t for t in evaluate(fleet) if t[1] == "behind_pace"]
    assert pace == [("resolved", "behind_pace", "unit:99001")]  # 4 of 10 = 40%


def test_fleet_device_detail(fleet: TestClient, clock: Clock) -> None:
    """The device page's data: timeline newest first, latest pages with verdict, type and file
    link, alerts; the list limited and searched. Bad input tried: an unknown device (404), a
    limit of 0 (422)."""
    send(fleet, online("kiosk-v", T0), T0)
    send(fleet, report("kiosk-v", T0), T0)
    send(fleet, page("kiosk-v", b"good", T0, dossier="D1"), T0)
    later = T0 + timedelta(minutes=1)
    send(fleet, page("kiosk-v", b"bad", later, ok=False, dossier="D1", n=2), later)
    send(fleet, jam("kiosk-v", later + timedelta(seconds=5)), later)
    evaluate(fleet)
    data = fleet.get("/api/v1/fleet/devices/kiosk-v").json()
    assert [e["type"] for e in data["events"]] == ["scanner_jammed", "page_captured", "page_captured"]
    assert [(p["verdict"], p["doctype"], p["issues"]) for p in data["pages"]] == [
        ("rejected", "don_de_nghi", ["blurry"]), ("ok", "don_de_nghi", [])]
    assert data["pages"][0]["file_url"].startswith("/api/v1/pages/") and data["pages"][0]["file_available"] is False
    assert data["device"]["camera_state"] == "ready" and data["device"]["unit"] == "99001"
    assert [a["kind"] for a in data["alerts"]] == ["scanner_jammed"]
    assert fleet.get("/api/v1/fleet/devices/kiosk-zz").status_code == 404
    send(fleet, online("kiosk-w", T0, unit="99003"), T0)
    listing = fleet.get("/api/v1/fleet/devices", params={"limit": 1}).json()
    assert (listing["total"], listing["with_alerts"], [d["id"] for d in listing["devices"]]) == (2, 1, ["kiosk-v"])
    found = fleet.get("/api/v1/fleet/devices", params={"q": "99003"}).json()
    assert [d["id"] for d in found["devices"]] == ["kiosk-w"] and found["total"] == 1
    assert fleet.get("/api/v1/fleet/devices", params={"limit": 0}).status_code == 422
    page_html = fleet.get("/fleet")
    assert page_html.status_code == 200 and "Thiết bị" in page_html.text and "__REFRESH_MS__" not in page_html.text


def test_periodic_evaluator_runs_by_itself(tmp_path: Path, db_url: str) -> None:
    """`serve`'s evaluator thread (interval from the config) opens the alert with nobody asking."""
    clock = Clock()
    config = alerts_config(tmp_path, db_url, enabled=True, interval_s=0.05)
    with TestClient(create_app(config, clock=clock)) as client:
        login(client)  # a province admin
        send(client, offline("kiosk-p", T0), T0)
        clock.advance(hours=1)
        evaluator: AlertEvaluator = evaluator_of(client)
        runs = evaluator.runs
        assert evaluator.wait_for_runs(runs + 2, timeout=20)
        assert [a["kind"] for a in active(client)] == ["offline"]


def test_days_months_and_messages_follow_the_configured_zone(tmp_path: Path, db_url: str) -> None:
    """A fleet in America/New_York (UTC-4 in spring) at 02:00 UTC on 1 April 2026: it is still
    31 March there (09:00 on 1 April in Vietnam). March's pace is judged (two hours left), today's
    pages are New York's 31 March, and a message names New York's moment. Under Vietnam's offset
    it would be April (too early to judge) and a page of 16:00 UTC yesterday's. Traps: a page at
    03:00 UTC on 31 March (30 March in New York), one at 16:00 UTC (today there, yesterday in
    Vietnam), two at 01:00 UTC on 1 April (March in New York, April in Vietnam)."""
    clock = Clock(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))
    config = alerts_config(tmp_path, db_url).model_copy(update={"time_zone": "America/New_York"})
    with TestClient(create_app(config, clock=clock)) as client:
        login(client)
        assert client.post("/api/v1/units/import", content=sample_csv().encode(),
                           headers={"Content-Type": "text/csv"}).status_code == 200
        assert client.post("/api/v1/progress/received", json=[
            {"unit_code": "99001", "period": "2026-03", "received": 10}]).status_code == 200
        enrolled = datetime(2026, 3, 1, tzinfo=UTC)
        send(client, online("kiosk-a", enrolled), enrolled)
        for n, (when, dossier) in enumerate([(datetime(2026, 3, 31, 3, tzinfo=UTC), None),
                                             (datetime(2026, 3, 31, 16, tzinfo=UTC), "A0"),
                                             (datetime(2026, 4, 1, 1, tzinfo=UTC), "A1"),
                                             (datetime(2026, 4, 1, 1, tzinfo=UTC), "A2")]):
            send(client, page("kiosk-a", f"z-{n}".encode(), when, dossier=dossier, n=n + 1), when)
        gone = datetime(2026, 3, 31, 23, 55, tzinfo=UTC)
        send(client, online("kiosk-o", gone - timedelta(minutes=5)), gone - timedelta(minutes=5))
        send(client, offline("kiosk-o", gone), gone)

        opened = evaluate(client)
        assert ("opened", "behind_pace", "unit:99001") in opened  # March: 3 of 10 = 30% < 35%
        [pace] = active(client, kind="behind_pace")
        assert "in 2026-03" in pace["message_en"] and "0 days left" in pace["message_en"]
        [off] = active(client, kind="offline", device_id="kiosk-o")
        assert "since 19:55 31/03 EDT" in off["message_en"] and "từ 19:55 31/03 EDT" in off["message_vi"]
        rows = {d["id"]: d for d in client.get("/api/v1/fleet/devices").json()["devices"]}
        assert rows["kiosk-a"]["pages_today"] == 3  # 31 March in New York, from 04:00 UTC
        detail = client.get("/api/v1/fleet/devices/kiosk-a").json()["device"]
        assert detail["pages_today"] == 3

        late = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)  # still March there: 4 of 10 = 40%
        send(client, page("kiosk-a", b"z-4", late, dossier="A3", n=5), late)
        assert ("resolved", "behind_pace", "unit:99001") in evaluate(client)
        clock.now = datetime(2026, 4, 1, 4, 30, tzinfo=UTC)  # 00:30 on 1 April there: a new day and month
        assert client.get("/api/v1/fleet/devices/kiosk-a").json()["device"]["pages_today"] == 0
        assert [t for t in evaluate(client) if t[1] == "behind_pace"] == []  # April: too early to judge
