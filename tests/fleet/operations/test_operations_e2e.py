"""Fleet operations end to end: the fleet served by uvicorn (ingest and the operations service
on a real mosquitto), device agents in this process on loopback.

Shown here: a settings change reaches a device that was offline when it was made; an invalid
one is rejected by the device, which keeps its last good settings, and the API shows desired !=
reported with the device's reason; a command to an offline device waits (queued, not delivered)
and runs after the reconnect, another times out at its deadline and stays timed out; the other
commands (collect_logs uploaded as a file, reboot through a harmless program, restart_agent and
rotate_certificate refused); an update rollout through a running agent installs a signed bundle
served by the fleet (Range-capable FileResponse) and reports succeeded, after waiting (reported
to the fleet as ``waiting``, with the reason) for the dossier open at the counter to close; a
tampered bundle is refused, never installed, and halts the rollout."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.update_slots import SlotStore
from fleet.api.state import fleet_state
from fleet.enroll.config import EnrollmentConfig
from fleet.operations.service import Operations
from images.bundle import generate_keys
from tests.devices import enroll_device, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.operations.harness import FleetServer, agent_config, start_agent, wait_until
from tests.images.device_harness import bootstrap, probe
from tests.images.helpers import app_bundle, flip_byte
from tests.services import Mosquitto

DEVICE = "kiosk-ops-1"


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[FleetServer]:
    server = FleetServer(make_config(tmp_path / "fleet", f"sqlite:///{tmp_path}/fleet.db", mosquitto,
                                     client_id="fleet-ops-test"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def enrolled_fleet(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[FleetServer]:
    """The fleet with its CA, over HTTPS: an agent enrolled with it uploads signed files. It tells
    enrolled devices the plain loopback broker (this file is not about the broker's TLS)."""
    config = with_pki(make_config(tmp_path / "fleet", f"sqlite:///{tmp_path}/fleet.db", mosquitto,
                                  client_id="fleet-ops-test"), tmp_path / "fleet")
    config = config.model_copy(update={"enrollment": EnrollmentConfig(broker_url=f"mqtt://127.0.0.1:{mosquitto.port}")})
    server = FleetServer(config)
    try:
        yield server
    finally:
        server.close()


def _ops(fleet: FleetServer) -> Operations:
    ops = fleet_state(fleet.app).services.operations
    assert ops is not None
    return ops


def _settings(fleet: FleetServer, device_id: str = DEVICE) -> dict[str, Any]:
    result: dict[str, Any] = fleet.json("GET", f"/devices/{device_id}/settings")
    return result


def _command(fleet: FleetServer, command_id: str) -> dict[str, Any]:
    result: dict[str, Any] = fleet.json("GET", f"/commands/{command_id}")
    return result


def _known(fleet: FleetServer, device_id: str = DEVICE) -> None:
    wait_until(lambda: fleet.api("GET", f"/devices/{device_id}").status_code == 200, 20, "the fleet to know the device")


def test_settings_reach_an_offline_device_and_an_invalid_one_is_rejected(
    tmp_path: Path, mosquitto: Mosquitto, fleet: FleetServer
) -> None:
    """Bad input: ``scan.dpi`` 100 (records need >= 200). The API refuses it (422, nothing stored);
    set anyway, as a fleet that did not check would, the device rejects it with the reason,
    keeps running version 2, and the API shows the difference and the reason."""
    config = agent_config(tmp_path, DEVICE, mosquitto.port, fleet.url)
    agent = start_agent(config)
    try:
        _known(fleet)
        wait_until(lambda: _settings(fleet)["reported_version"] == 1, 20, "the defaults (v1) to be reported")
    finally:
        agent.close()
    changed = fleet.json("PUT", f"/settings/device/{DEVICE}",
                         json={"settings": {"kiosk_language": "en", "telemetry_interval_s": 30}})
    assert changed["devices_changed"] == [DEVICE]
    wait_until(lambda: _settings(fleet)["published"], 20, "v2 to be retained on the broker")
    view = _settings(fleet)
    assert view["desired_version"] == 2 and view["reported_version"] == 1 and not view["in_sync"]
    assert {d["path"] for d in view["diff"]} == {"kiosk_language", "telemetry_interval_s"}

    agent = start_agent(config)  # back online: the retained desired settings arrive
    try:
        wait_until(lambda: _settings(fleet)["in_sync"], 20, "v2 to be applied and reported")
        assert agent.settings.version == 2
        assert agent.config.kiosk.language == "en" and agent.config.telemetry.interval_s == 30

        bad = {"kiosk_language": "en", "scan": {"dpi": 100}}
        refused = fleet.api("PUT", f"/settings/device/{DEVICE}", json={"settings": bad})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "settings", "scan", "dpi"]
        assert _settings(fleet)["desired_version"] == 2  # the API stored nothing
        fleet.unchecked_settings(DEVICE, bad)  # as a fleet that did not check would: the device still says no
        wait_until(lambda: _settings(fleet)["reported_version"] == 3, 20, "v3 to be answered")
        view = _settings(fleet)
        assert view["applied"] is False and not view["in_sync"]
        assert "scan.dpi" in view["error"]
        # The dpi the fleet never set is the local config's (the fake scanner's 75), reported as run.
        assert {"path": "scan.dpi", "desired": 100, "reported": 75} in view["diff"]
        assert agent.settings.version == 2
        assert agent.config.scanner is not None and agent.config.scanner.dpi == 75
        assert agent.config.kiosk.language == "en"  # the last good settings still run
    finally:
        agent.close()


def test_commands_wait_for_an_offline_device_or_time_out(
    tmp_path: Path, mosquitto: Mosquitto, enrolled_fleet: FleetServer
) -> None:
    """Bad input: a command whose 1 s deadline passes while the device is away (timed_out,
    and the device's late refusal does not change that); restart_agent on an agent that cannot
    restart itself; reboot args it does not take (422 at the API; queued anyway, the device
    refuses them too). The agent is enrolled: its collect_logs upload
    is signed (rotate_certificate has its own test below)."""
    fleet = enrolled_fleet
    kiosk = enroll_device(fleet.http, DEVICE, "000.00.00.H01", tmp_path)
    config = agent_config(tmp_path, DEVICE, mosquitto.port, fleet.url,
                          identity={"dir": str(kiosk.identity.directory)})
    agent = start_agent(config)
    _known(fleet)
    agent.close()
    waiting = fleet.json("POST", f"/devices/{DEVICE}/commands", 201,
                         json={"name": "test_scan", "args": {"max_pages": 1}, "timeout_s": 120})
    late = fleet.json("POST", f"/devices/{DEVICE}/commands", 201, json={"name": "test_scan", "timeout_s": 1})
    _ops(fleet).tick()  # published to the broker; the device is away
    assert _command(fleet, waiting["id"])["state"] == "queued"
    assert _command(fleet, waiting["id"])["delivered_at"] is None
    wait_until(lambda: _command(fleet, late["id"])["state"] == "timed_out", 20, "the deadline to pass")

    agent = start_agent(config)
    try:
        wait_until(lambda: _command(fleet, waiting["id"])["state"] == "succeeded", 30, "the queued scan to run")
        done = _command(fleet, waiting["id"])
        assert done["delivered_at"] is not None and "1 page" in done["detail"]
        wait_until(lambda: agent.rejected["cmd:expired"] == 1, 20, "the device to refuse the expired command")
        assert _command(fleet, late["id"])["state"] == "timed_out"

        ids = {name: fleet.json("POST", f"/devices/{DEVICE}/commands", 201, json={"name": name})["id"]
               for name in ("collect_logs", "reboot", "restart_agent")}
        refused = fleet.api("POST", f"/devices/{DEVICE}/commands", json={"name": "reboot", "args": {"now": 1}})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "args", "now"]
        bad = {"id": fleet.unchecked_command(DEVICE, "reboot", {"now": 1})}  # the device refuses it too
        final = {"succeeded", "failed", "rejected", "timed_out"}
        pending = [*ids.values(), bad["id"]]
        wait_until(lambda: all(_command(fleet, c)["state"] in final for c in pending), 30, "the commands to finish")
        assert _command(fleet, ids["reboot"])["state"] == "succeeded"
        assert _command(fleet, ids["restart_agent"])["state"] == "rejected"
        assert _command(fleet, bad["id"])["state"] == "rejected"
        logs = _command(fleet, ids["collect_logs"])
        assert logs["state"] == "succeeded", logs
        sha256 = logs["detail"].split("sha256=")[1].split()[0]
        wait_until(lambda: fleet.api("GET", f"/files/{sha256}").status_code == 200, 30, "the log file upload")
        with tarfile.open(fileobj=io.BytesIO(fleet.api("GET", f"/files/{sha256}").content)) as tar:
            names = tar.getnames()
            log_text = tar.extractfile("logs/agent.log").read().decode()  # type: ignore[union-attr]
        assert names == ["logs/agent.log", "logs/status.json"] and "cmd: expired" in log_text
    finally:
        agent.close()


def test_rotate_certificate_through_a_running_agent(
    tmp_path: Path, mosquitto: Mosquitto, enrolled_fleet: FleetServer
) -> None:
    """``rotate_certificate`` to an enrolled agent: it makes a new key, the fleet issues a new
    certificate (another serial, audited as a renewal naming the previous one), the agent
    reconnects and says ``succeeded``; its next upload is signed with the new key, which the fleet
    accepts only because it holds the new certificate. Once the agent confirms the new
    certificate (a request signed by it) the previous one is revoked. Bad input: the same command
    to an agent with no identity (rejected 'not enrolled') and with an argument it does not take
    (rejected)."""
    fleet = enrolled_fleet
    kiosk = enroll_device(fleet.http, DEVICE, "000.00.00.H01", tmp_path)
    runtime = fleet_state(fleet.app).services.enroll
    assert runtime is not None
    before = kiosk.identity.certificate().serial_number
    first = runtime.store.latest_certificate(DEVICE)
    assert first is not None and first.serial == before
    agent = start_agent(agent_config(tmp_path, DEVICE, mosquitto.port, fleet.url,
                                     identity={"dir": str(kiosk.identity.directory)}))
    plain = start_agent(agent_config(tmp_path, "kiosk-ops-2", mosquitto.port, fleet.url))
    try:
        _known(fleet)
        _known(fleet, "kiosk-ops-2")
        rotate = fleet.json("POST", f"/devices/{DEVICE}/commands", 201, json={"name": "rotate_certificate"})
        refused = fleet.api("POST", f"/devices/{DEVICE}/commands",
                            json={"name": "rotate_certificate", "args": {"now": True}})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "args", "now"]
        bad = {"id": fleet.unchecked_command(DEVICE, "rotate_certificate", {"now": True})}
        unenrolled = fleet.json("POST", "/devices/kiosk-ops-2/commands", 201, json={"name": "rotate_certificate"})
        final = {"succeeded", "failed", "rejected", "timed_out"}
        pending = [rotate["id"], bad["id"], unenrolled["id"]]
        wait_until(lambda: all(_command(fleet, c)["state"] in final for c in pending), 30, "the commands to finish")
        done = _command(fleet, rotate["id"])
        assert done["state"] == "succeeded", done
        after = kiosk.identity.certificate().serial_number
        assert after != before and done["detail"] == f"new certificate serial={after:x}"
        renewed = runtime.store.latest_certificate(DEVICE)
        assert renewed is not None and renewed.serial == after
        # The agent confirmed the new certificate with a request signed by it: the old one is revoked.
        wait_until(lambda: before in runtime.store.revoked_serials(), 30, "the previous certificate revoked")
        audit = fleet.json("GET", "/audit", params={"limit": 200})
        assert any(a["action"] == "certificate.renewed" and f"previous={before:x}" in (a["detail"] or "")
                   for a in audit), [a["action"] for a in audit]
        assert _command(fleet, bad["id"])["state"] == "rejected"
        assert _command(fleet, unenrolled["id"])["state"] == "rejected"
        assert _command(fleet, unenrolled["id"])["detail"] == "not enrolled"

        # The agent goes on with the new key: a signed upload after the rotation is accepted.
        logs = fleet.json("POST", f"/devices/{DEVICE}/commands", 201, json={"name": "collect_logs"})
        wait_until(lambda: _command(fleet, logs["id"])["state"] in final, 30, "collect_logs after the rotation")
        sha256 = _command(fleet, logs["id"])["detail"].split("sha256=")[1].split()[0]
        wait_until(lambda: fleet.api("GET", f"/files/{sha256}").status_code == 200, 30, "the upload signed anew")
        assert agent.link.connected.is_set()
    finally:
        agent.close()
        plain.close()


def _open_now() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"start": (now - timedelta(hours=2)).strftime("%H:%M"), "end": (now + timedelta(hours=2)).strftime("%H:%M"),
            "timezone": "UTC"}


@pytest.mark.parametrize("case", ["good", "tampered"])
def test_update_rollout_through_a_running_agent(tmp_path: Path, mosquitto: Mosquitto, enrolled_fleet: FleetServer,
                                                case: str) -> None:
    """Bad input: the bundle with one byte of its wheel flipped. Refused before anything is
    written to slot B; the device reports failed and the rollout halts. The good one arrives
    while a dossier is open: the device waits (the fleet shows why) and installs once it closes.
    The agent is enrolled: it downloads over HTTPS (the fleet's CA) with signed requests."""
    fleet = enrolled_fleet
    kiosk = enroll_device(fleet.http, DEVICE, "000.00.00.H01", tmp_path)
    private, public = generate_keys(tmp_path / "keys")
    root = tmp_path / "opt-sohoa"
    bootstrap(root, tmp_path)
    updater = {"root": str(root), "public_keys": [str(public)], "jitter_max_s": 0, "retry_min_s": 0.01,
               "retry_max_s": 0.05, "health_timeout_s": 20, "health_interval_s": 0.1, "lock_check": "off"}
    agent = start_agent(agent_config(tmp_path, DEVICE, mosquitto.port, fleet.url, updater=updater,
                                     identity={"dir": str(kiosk.identity.directory)}))
    try:
        _known(fleet)
        fleet.json("PUT", f"/settings/device/{DEVICE}", json={"settings": {"maintenance_window": _open_now()}})
        wait_until(lambda: _settings(fleet)["in_sync"], 20, "the open maintenance window to be applied")
        bundle = app_bundle(tmp_path, private, "0.2.0")
        if case == "tampered":
            bundle = flip_byte(bundle, bundle.read_bytes().index(b"PK\x03\x04") + 40)
        uploaded = fleet.json("PUT", "/bundles/sohoa-app-0.2.0.bundle", 201, content=bundle.read_bytes())
        ranged = fleet.api("GET", "/bundles/sohoa-app-0.2.0.bundle", headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == bundle.read_bytes()[10:20]
        assert agent.session is not None
        if case == "good":
            agent.session.open()  # a citizen at the counter when the offer arrives
        created = fleet.json("POST", "/rollouts", 201, json={
            "rollout_id": f"r-{case}", "bundle": "sohoa-app-0.2.0.bundle", "version": "0.2.0",
            "target": {"device_ids": [DEVICE]}, "phases": [{"percent": 100}], "base_url": fleet.url})
        assert created["offer"]["sha256"] == uploaded["sha256"]
        if case == "good":
            def device() -> dict[str, Any]:
                progress: dict[str, Any] = fleet.json("GET", "/rollouts/r-good")["devices"][DEVICE]
                return progress

            wait_until(lambda: device()["state"] == "waiting", 30, "the device to say it waits")
            assert device()["detail"] == "a dossier is open at the counter"
            assert SlotStore(root).active() == "a" and agent.session.state == "open"
            agent.session.cancel()  # the clerk is done: the update may go on
        wait_until(lambda: fleet.json("GET", f"/rollouts/r-{case}")["summary"]["status"] in ("completed", "halted"),
                   120, "the rollout to settle")
        rollout = fleet.json("GET", f"/rollouts/r-{case}")
        [command] = [c for c in fleet.json("GET", f"/devices/{DEVICE}/commands") if c["rollout_id"] == f"r-{case}"]
        wait_until(lambda: _command(fleet, command["id"])["state"] in ("succeeded", "failed"), 30, "the update ack")
        store = SlotStore(root)
        if case == "good":
            assert rollout["summary"]["status"] == "completed" and rollout["summary"]["states"] == {"succeeded": 1}
            assert _command(fleet, command["id"])["state"] == "succeeded"
            assert store.active() == "b" and probe(root) == ("0.2.0", True)
        else:
            assert rollout["summary"]["status"] == "halted"
            assert rollout["devices"][DEVICE]["state"] == "failed"
            assert _command(fleet, command["id"])["state"] == "failed"
            assert store.active() == "a" and not store.slot_dir("b").exists()
            assert probe(root) == ("0.1.0", True)
        pause = fleet.api("POST", f"/rollouts/r-{case}/pause")
        assert pause.status_code == 409  # a settled rollout cannot be paused
    finally:
        agent.close()
