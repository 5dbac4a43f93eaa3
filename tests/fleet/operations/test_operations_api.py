"""The operations API on the database alone (no broker: nothing is published), on SQLite and
PostgreSQL: settings layers and versions, commands and their acknowledgements through the ingest
writer, rollouts paused, resumed and cancelled by hand; who may see and do what (a province
admin everything, a unit admin their subtree, a viewer reads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.ingest import Incoming
from fleet.operations.models import CommandRow
from fleet.operations.service import Operations
from protocol.messages import CommandAck, ConfigReported, Status, UpdateProgress, encode
from tests.authn import login
from tests.durability import record_fsyncs
from tests.fleet.conftest import make_config, state_of

DEVICES = ["kiosk-0001", "kiosk-0002", "kiosk-0003"]


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_config(tmp_path, db_url))) as client:
        login(client)  # a province admin
        yield client


def _deliver(client: TestClient, *messages: Status | CommandAck | ConfigReported | UpdateProgress) -> None:
    """Messages as the ingest writer receives them, with the operations hook attached."""
    from fleet.ingest import Writer

    state = state_of(client)
    writer = Writer(state.sessions, state.metrics)
    writer.hooks.append(Operations(state.config, state.sessions).hook)
    channel = {Status: "status", CommandAck: "cmd/ack", ConfigReported: "config/reported",
               UpdateProgress: "update"}
    items = [Incoming(f"sohoa/v1/{m.device_id}/{channel[type(m)]}", encode(m)) for m in messages]
    assert writer.write(items) == len(items)


def _online(client: TestClient, unit: str = "U1") -> None:
    _deliver(client, *(Status(device_id=d, state="online", unit=unit) for d in DEVICES))


def test_settings_layers_most_specific_wins_and_versions_bump_only_on_change(api: TestClient) -> None:
    """Bad input: a fleet level with a key other than 'default', an unknown scope."""
    _online(api)
    assert api.put("/api/v1/settings/fleet/other", json={"settings": {}}).status_code == 422
    assert api.put("/api/v1/settings/planet/x", json={"settings": {}}).status_code == 422
    api.put("/api/v1/settings/fleet/default", json={"settings": {"kiosk_language": "vi", "scan": {"dpi": 300}}})
    api.put("/api/v1/settings/unit/U1", json={"settings": {"scan": {"dpi": 400}}})
    changed = api.put("/api/v1/settings/device/kiosk-0002", json={"settings": {"kiosk_language": "en"}}).json()
    assert changed["devices_changed"] == ["kiosk-0002"]
    one = api.get("/api/v1/devices/kiosk-0001/settings").json()
    two = api.get("/api/v1/devices/kiosk-0002/settings").json()
    assert one["desired"] == {"kiosk_language": "vi", "scan": {"dpi": 400}}
    assert two["desired"] == {"kiosk_language": "en", "scan": {"dpi": 400}}
    version = two["desired_version"]
    again = api.put("/api/v1/settings/device/kiosk-0002", json={"settings": {"kiosk_language": "en"}}).json()
    assert again["devices_changed"] == []
    assert api.get("/api/v1/devices/kiosk-0002/settings").json()["desired_version"] == version
    _deliver(api, ConfigReported(device_id="kiosk-0002", version=version, applied=False,
                                 error="scan.dpi: too high", settings={"kiosk_language": "vi", "scan": {"dpi": 300}}))
    view = api.get("/api/v1/devices/kiosk-0002/settings").json()
    assert not view["in_sync"] and view["error"] == "scan.dpi: too high"
    assert {d["path"] for d in view["diff"]} == {"kiosk_language", "scan.dpi"}
    assert api.get("/api/v1/devices/kiosk-9999/settings").status_code == 404
    # The filter: only devices whose reported settings differ (none of the three reported v-current
    # except kiosk-0002, which rejected it); then one in sync drops out of the filtered list.
    _deliver(api, ConfigReported(device_id="kiosk-0001", version=one["desired_version"], applied=True,
                                 settings={"kiosk_language": "vi", "scan": {"dpi": 400, "colour_mode": "color"}}))
    listing = api.get("/api/v1/settings").json()
    assert listing["total"] == 3 and listing["differing"] == 2
    assert [d["device_id"] for d in listing["devices"]][-1] == "kiosk-0001"  # not in sync first
    differing = api.get("/api/v1/settings", params={"differs": "true"}).json()["devices"]
    assert {d["device_id"]: d["differences"] for d in differing} == {"kiosk-0002": 2, "kiosk-0003": 2}
    assert next(d for d in differing if d["device_id"] == "kiosk-0002")["error"] == "scan.dpi: too high"
    assert api.get("/api/v1/settings", params={"differs": "true", "unit": "U9"}).json()["devices"] == []


def test_command_states_follow_the_device_only_forward(api: TestClient) -> None:
    """Bad input: a command for an unknown device, an unknown command name, an ack from another
    device, an ack going backwards (in_progress after succeeded)."""
    _online(api)
    assert api.post("/api/v1/devices/kiosk-9999/commands", json={"name": "reboot"}).status_code == 404
    assert api.post("/api/v1/devices/kiosk-0001/commands", json={"name": "self_destruct"}).status_code == 422
    command = api.post("/api/v1/devices/kiosk-0001/commands", json={"name": "reboot"}).json()
    assert command["state"] == "queued" and command["delivered_at"] is None
    _deliver(api, CommandAck(device_id="kiosk-0002", command_id=command["id"], state="succeeded"))
    assert api.get(f"/api/v1/commands/{command['id']}").json()["state"] == "queued"
    _deliver(api, CommandAck(device_id="kiosk-0001", command_id=command["id"], state="in_progress"))
    seen = api.get(f"/api/v1/commands/{command['id']}").json()
    assert seen["state"] == "in_progress" and seen["delivered_at"] is not None
    _deliver(api, CommandAck(device_id="kiosk-0001", command_id=command["id"], state="succeeded", detail="ok"),
             CommandAck(device_id="kiosk-0001", command_id=command["id"], state="in_progress"))
    assert api.get(f"/api/v1/commands/{command['id']}").json()["state"] == "succeeded"
    assert [c["id"] for c in api.get("/api/v1/devices/kiosk-0001/commands").json()] == [command["id"]]
    recent = api.get("/api/v1/commands").json()
    assert recent["states"] == {"succeeded": 1} and [c["id"] for c in recent["commands"]] == [command["id"]]
    assert api.get("/api/v1/commands", params={"state": "queued"}).json()["commands"] == []


def test_rollout_pause_resume_cancel_by_hand(api: TestClient, tmp_path: Path) -> None:
    """Bad input: a bundle name with a path in it, a missing bundle, a duplicate rollout id,
    pausing a paused rollout, resuming a cancelled one. Cancelling withdraws the offers no
    device has taken yet."""
    _online(api)
    assert api.put("/api/v1/bundles/..%2Fx.bundle", content=b"x").status_code in (404, 422)
    up = api.put("/api/v1/bundles/app-0.2.0.bundle", content=b"bundle bytes").json()
    assert up["size"] == 12 and len(up["sha256"]) == 64
    body = {"rollout_id": "r1", "bundle": "app-0.2.0.bundle", "version": "0.2.0",
            "target": {"unit_subtree": "U1"}, "phases": [{"percent": 33}, {"percent": 100}]}
    assert api.post("/api/v1/rollouts", json={**body, "bundle": "none.bundle"}).status_code == 404
    created = api.post("/api/v1/rollouts", json=body)
    assert created.status_code == 201, created.text
    assert api.post("/api/v1/rollouts", json=body).status_code == 409
    summary = api.get("/api/v1/rollouts/r1").json()["summary"]
    assert summary["status"] == "running" and summary["states"] == {"offered": 1, "pending": 2}
    [canary] = [d for d, p in api.get("/api/v1/rollouts/r1").json()["devices"].items() if p["state"] == "offered"]
    assert api.post("/api/v1/rollouts/r1/pause").status_code == 200
    assert api.post("/api/v1/rollouts/r1/pause").status_code == 409
    [offer] = api.get(f"/api/v1/devices/{canary}/commands").json()
    assert offer["name"] == "update" and offer["args"]["sha256"] == up["sha256"]
    assert offer["args"]["url"].endswith("/api/v1/bundles/app-0.2.0.bundle?rollout=r1")
    assert api.get("/api/v1/bundles/app-0.2.0.bundle", params={"rollout": "r1"}).content == b"bundle bytes"
    [listed] = api.get("/api/v1/rollouts").json()
    assert listed["rollout_id"] == "r1" and listed["devices"] == 3 and listed["summary"]["status"] == "paused"
    assert api.get("/api/v1/rollouts", params={"status": "running"}).json() == []
    _deliver(api, CommandAck(device_id=canary, command_id=offer["id"], state="in_progress"),
             UpdateProgress(device_id=canary, rollout_id="r1", version="0.2.0", state="succeeded"))
    assert api.get("/api/v1/rollouts/r1").json()["summary"]["states"] == {"succeeded": 1, "pending": 2}  # paused
    assert api.post("/api/v1/rollouts/r1/resume").status_code == 200
    assert api.get("/api/v1/rollouts/r1").json()["summary"]["states"] == {"succeeded": 1, "offered": 2}
    first = api.get("/api/v1/rollouts/r1", params={"limit": 1}).json()  # those needing attention first
    assert first["devices_total"] == 3 and [p["state"] for p in first["devices"].values()] == ["offered"]
    assert api.post("/api/v1/rollouts/r1/cancel").status_code == 200
    assert api.post("/api/v1/rollouts/r1/resume").status_code == 409
    with state_of(api).sessions() as session:
        states = {c.device_id: (c.state, c.detail) for c in session.query(CommandRow)}
    assert states[canary] == ("in_progress", None)  # taken by the device before the cancel
    withdrawn = [d for d in DEVICES if d != canary]
    assert all(states[d] == ("rejected", "rollout cancelled before delivery") for d in withdrawn)
    served = api.get("/api/v1/bundles/app-0.2.0.bundle", headers={"Range": "bytes=7-"})
    assert served.status_code == 206 and served.content == b"bytes"
    # The cancelled rollout's offer is withdrawn at the bundle URL: a device acting on it late
    # (the command waited in the broker) gets 410 and installs nothing. So does an unknown rollout.
    gone = api.get("/api/v1/bundles/app-0.2.0.bundle", params={"rollout": "r1"}, headers={"Range": "bytes=7-"})
    assert gone.status_code == 410 and "cancelled" in gone.json()["detail"]
    assert api.get("/api/v1/bundles/app-0.2.0.bundle", params={"rollout": "r-none"}).status_code == 410


def _as(client: TestClient, role: str, unit_code: str | None = None) -> dict[str, str]:
    saved = client.headers.get("Authorization")
    login(client, role=role, unit_code=unit_code)  # type: ignore[arg-type]
    headers = {"Authorization": client.headers["Authorization"]}
    client.headers["Authorization"] = saved or ""
    return headers


def test_unit_admins_see_and_act_on_their_subtree_only_and_viewers_read(api: TestClient) -> None:
    """Bad input: a unit admin reading, commanding, configuring a device of another unit (404,
    as if absent), setting the fleet level (403), rolling out to a unit that is not theirs
    (nothing matches), cancelling a rollout that reaches other units (403); a viewer writing
    (403); no session at all (401). Each 404 for another unit's object reads as the one for an
    object that does not exist (its existence must not show)."""
    _online(api, unit="U1")
    _deliver(api, Status(device_id="kiosk-0009", state="online", unit="U2"))
    api.put("/api/v1/bundles/app-0.2.0.bundle", content=b"bundle bytes")
    rollout = {"bundle": "app-0.2.0.bundle", "version": "0.2.0", "phases": [{"percent": 100}]}
    assert api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-all"}).status_code == 201
    u1 = _as(api, "unit_admin", "U1")
    viewer = _as(api, "viewer", "U1")

    assert api.get("/api/v1/devices/kiosk-0009/settings", headers=u1).status_code == 404
    assert api.get("/api/v1/devices/kiosk-0001/settings", headers=u1).status_code == 200
    assert api.post("/api/v1/devices/kiosk-0009/commands", json={"name": "reboot"}, headers=u1).status_code == 404
    assert api.put("/api/v1/settings/device/kiosk-0009", json={"settings": {}}, headers=u1).status_code == 404
    assert api.put("/api/v1/settings/unit/U2", json={"settings": {}}, headers=u1).status_code == 404
    assert api.put("/api/v1/settings/fleet/default", json={"settings": {}}, headers=u1).status_code == 403
    assert api.put("/api/v1/settings/unit/U1", json={"settings": {"kiosk_language": "en"}},
                   headers=u1).status_code == 200
    assert api.put("/api/v1/bundles/x.bundle", content=b"x", headers=u1).status_code == 403
    assert {d["device_id"] for d in api.get("/api/v1/settings", headers=u1).json()["devices"]} == set(DEVICES)
    assert api.get("/api/v1/settings", params={"unit": "U2"}, headers=u1).status_code == 403

    # Rollouts: the province-wide one is seen with U1's devices only, and cannot be cancelled.
    [seen] = api.get("/api/v1/rollouts", headers=u1).json()
    assert seen["rollout_id"] == "r-all" and seen["devices"] == 3
    assert set(api.get("/api/v1/rollouts/r-all", headers=u1).json()["devices"]) == set(DEVICES)
    assert api.get("/api/v1/rollouts/r-all", headers=u1).json()["can_control"] is False
    assert api.get("/api/v1/rollouts/r-all").json()["can_control"] is True
    assert api.post("/api/v1/rollouts/r-all/cancel", headers=u1).status_code == 403
    assert api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-u2", "target": {"unit_subtree": "U2"}},
                    headers=u1).status_code == 422
    mine = api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-u1"}, headers=u1)
    assert mine.status_code == 201 and mine.json()["summary"]["states"] == {"offered": 3}
    assert api.get("/api/v1/rollouts/r-u1", headers=u1).json()["can_control"] is True
    assert api.post("/api/v1/rollouts/r-u1/pause", headers=u1).status_code == 200
    only_u2 = api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-2", "target": {"unit_subtree": "U2"}})
    assert only_u2.status_code == 201
    assert api.get("/api/v1/rollouts/r-2", headers=u1).status_code == 404
    assert "r-2" not in {r["rollout_id"] for r in api.get("/api/v1/rollouts", headers=u1).json()}
    assert {c["device_id"] for c in api.get("/api/v1/commands", headers=u1).json()["commands"]} == set(DEVICES)
    [u2_offer] = api.get("/api/v1/devices/kiosk-0009/commands").json()[:1]
    assert api.get(f"/api/v1/commands/{u2_offer['id']}", headers=u1).status_code == 404
    for theirs, absent in [("/api/v1/commands/" + u2_offer["id"], "/api/v1/commands/no-such-command"),
                           ("/api/v1/rollouts/r-2", "/api/v1/rollouts/no-such-rollout"),
                           ("/api/v1/devices/kiosk-0009/settings", "/api/v1/devices/kiosk-9999/settings"),
                           ("/api/v1/devices/kiosk-0009/commands", "/api/v1/devices/kiosk-9999/commands"),
                           ("/api/v1/settings/device/kiosk-0009", "/api/v1/settings/device/kiosk-9999")]:
        answers = [api.get(path, headers=u1) for path in (theirs, absent)]
        assert [(a.status_code, a.json()) for a in answers] == [(404, answers[1].json())] * 2, theirs
    assert api.post("/api/v1/rollouts/r-2/cancel", headers=u1).json() == \
        api.post("/api/v1/rollouts/no-such-rollout/cancel", headers=u1).json()

    # A viewer reads their unit's state and changes nothing.
    assert api.get("/api/v1/rollouts/r-u1", headers=viewer).json()["can_control"] is False
    assert api.get("/api/v1/devices/kiosk-0001/commands", headers=viewer).status_code == 200
    assert api.post("/api/v1/rollouts/r-u1/resume", headers=viewer).status_code == 403
    assert api.post("/api/v1/devices/kiosk-0001/commands", json={"name": "reboot"}, headers=viewer).status_code == 403
    assert api.put("/api/v1/settings/unit/U1", json={"settings": {}}, headers=viewer).status_code == 403
    api.cookies.clear()  # logging in set a session cookie too
    assert api.get("/api/v1/rollouts", headers={"Authorization": ""}).status_code == 401


def test_an_uploaded_bundle_and_its_sha256_survive_a_power_cut(
        api: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle and its ``.sha256`` are each written to a temporary name, fsynced and renamed
    into place, and the folder is fsynced: a cut never leaves a half-written checksum beside a
    whole bundle (devices would then refuse a good bundle)."""
    synced = record_fsyncs(monkeypatch)
    up = api.put("/api/v1/bundles/app-0.3.0.bundle", content=b"bundle bytes")
    assert up.status_code == 201
    directory = next(p.parent for p in tmp_path.rglob("app-0.3.0.bundle"))
    assert (directory / "app-0.3.0.bundle.sha256").read_text() == up.json()["sha256"] + "\n"
    assert any(p.name.startswith(".app-0.3.0.bundle.sha256.") for p in synced), "checksum not written atomically"
    assert synced.count(directory) >= 2
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def test_downgrades_raw_updates_and_other_download_hosts_are_for_province_admins(api: TestClient) -> None:
    """Bad input from a unit admin on their own devices: a raw ``update`` command (any URL, a
    downgrade), a rollout with ``allow_downgrade`` and one with ``base_url`` pointing elsewhere.
    Each 403, nothing queued; their plain rollout goes through, and a province admin may do each."""
    _online(api, unit="U1")
    api.put("/api/v1/bundles/app-0.2.0.bundle", content=b"bundle bytes")
    u1 = _as(api, "unit_admin", "U1")
    raw = {"name": "update", "args": {"rollout_id": "raw", "url": "http://attacker.example/b.bundle",
                                      "version": "0.0.1", "allow_downgrade": True}}
    assert api.post("/api/v1/devices/kiosk-0001/commands", json=raw, headers=u1).status_code == 403
    rollout = {"bundle": "app-0.2.0.bundle", "version": "0.2.0", "phases": [{"percent": 100}]}
    for extra in ({"allow_downgrade": True}, {"base_url": "http://attacker.example"}):
        r = api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-x", **extra}, headers=u1)
        assert r.status_code == 403, (extra, r.text)
    assert api.get("/api/v1/devices/kiosk-0001/commands").json() == []
    assert api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-u1"}, headers=u1).status_code == 201
    assert api.post("/api/v1/rollouts/r-u1/cancel", headers=u1).status_code == 200
    assert api.post("/api/v1/devices/kiosk-0001/commands", json=raw).status_code == 201
    assert api.post("/api/v1/rollouts", json={**rollout, "rollout_id": "r-p", "allow_downgrade": True}
                    ).status_code == 201
