"""A revoked device on the fleet screen's data and in the alerts (#6, #8): once an admin revokes
its certificates it is expected to be silent, so it shows "revoked" (not offline), has its own
count, comes after the devices needing attention, and raises no alert: its open offline alert
resolves at the next evaluation and never comes back. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from tests.authn import login
from tests.devices import enroll_device, with_pki
from tests.fleet.alerts.conftest import T0, Clock, alerts_config, offline, online, report, send


@pytest.fixture
def fleet_pki(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, Clock]]:
    """The fleet app with a certificate authority (enrollment and revocation on), clock at T0."""
    clock = Clock()
    config = with_pki(alerts_config(tmp_path, db_url), tmp_path)
    with TestClient(create_app(config, clock=clock)) as client:
        login(client)  # a province admin
        yield client, clock


def _evaluate(client: TestClient) -> list[tuple[str, str, str]]:
    response = client.post("/api/v1/alerts/evaluate")
    assert response.status_code == 200, response.text
    return sorted((t["event"], t["alert"]["kind"], t["alert"]["subject"]) for t in response.json())


def _screen(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/fleet/devices", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_revoked_device_is_revoked_not_offline_and_raises_no_alert(
        fleet_pki: tuple[TestClient, Clock], tmp_path: Path) -> None:
    """Bad input tried: revoking a device the fleet never enrolled (404, nothing changes); an
    'online' status and a telemetry with a nearly full disk from the revoked device arriving
    after the revocation (refused at ingest: still revoked, still no alert); an hour more of
    silence."""
    client, clock = fleet_pki
    enroll_device(client, "kiosk-r", "99001", tmp_path, clock=clock)
    for device in ("kiosk-r", "kiosk-b"):
        send(client, online(device, T0), T0)
        send(client, report(device, T0), T0)
    gone = clock.advance(minutes=1)
    for device in ("kiosk-r", "kiosk-b"):
        send(client, offline(device, gone), gone)  # their Last Wills
    clock.advance(minutes=20)
    assert _evaluate(client) == [("opened", "offline", "device:kiosk-b"), ("opened", "offline", "device:kiosk-r")]

    assert client.post("/api/v1/devices/kiosk-nobody/revoke").status_code == 404
    revoked = client.post("/api/v1/devices/kiosk-r/revoke")
    assert revoked.status_code == 200, revoked.text
    assert _evaluate(client) == [("resolved", "offline", "device:kiosk-r")]

    # Messages after the revocation (a stale one delivered late, or the device still connected):
    # "online", a nearly full disk. The ingest refuses them.
    late = clock.advance(minutes=1)
    send(client, online("kiosk-r", late), late, stored=0)
    send(client, report("kiosk-r", late, free=10**8), late, stored=0)
    clock.advance(hours=1)
    assert _evaluate(client) == []
    active = client.get("/api/v1/alerts", params={"status": "active"}).json()
    assert [(a["kind"], a["device_id"]) for a in active] == [("offline", "kiosk-b")]

    data = _screen(client)
    assert (data["total"], data["online"], data["offline"], data["revoked"]) == (2, 0, 1, 1)
    rows = {d["id"]: d for d in data["devices"]}
    assert [d["id"] for d in data["devices"]] == ["kiosk-b", "kiosk-r"]  # the one needing attention first
    assert rows["kiosk-r"]["revoked"] is True and rows["kiosk-r"]["online"] is False
    assert rows["kiosk-r"]["alerts"] == []
    assert rows["kiosk-b"]["revoked"] is False and rows["kiosk-b"]["online"] is False
    # A revoked device is neither online nor offline for the filter.
    assert [d["id"] for d in _screen(client, online="false")["devices"]] == ["kiosk-b"]
    assert _screen(client, online="true")["devices"] == []
    one = client.get("/api/v1/fleet/devices/kiosk-r")
    assert one.status_code == 200 and one.json()["device"]["revoked"] is True
    # The / page's API says the same.
    [listed] = [d for d in client.get("/api/v1/devices").json() if d["id"] == "kiosk-r"]
    assert listed["status"] == "revoked" and listed["online"] is False
