"""The agent's side of fleet operations, on a real mosquitto: an update through a real agent
process that restarts into the new slot (exit code, as systemd restarts it) and answers the
update command from the restarted process; ``restart_agent`` ends the process with the restart
code; the update lock (an open dossier) holds reboots and updates; the last good settings
survive a restart; a bad stored or desired setting never replaces the local config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.agent import Agent
from device.config import AgentConfig
from device.update_slots import SlotStore
from images.bundle import generate_keys
from images.manifest import sha256_file
from protocol.messages import Command, ConfigDesired, encode
from tests.device.agent_harness import AgentProcess, Recorder, agent_config
from tests.durability import record_fsyncs
from tests.images.device_harness import bootstrap, probe
from tests.images.helpers import ServedFile, app_bundle, range_server
from tests.services import Mosquitto

DEVICE = "kiosk-test"
CMD = f"sohoa/v1/{DEVICE}/cmd"
DESIRED = f"sohoa/v1/{DEVICE}/config/desired"


@pytest.fixture
def recorder(mosquitto: Mosquitto) -> Iterator[Recorder]:
    rec = Recorder(mosquitto.port, DEVICE, client_id="ops-recorder")
    try:
        yield rec
    finally:
        rec.close()


def _command(name: str, **args: Any) -> Command:
    return Command(device_id=DEVICE, name=name, deadline=datetime.now(UTC) + timedelta(minutes=5),
                   args=args)


def _acks(recorder: Recorder, command_id: str) -> list[str]:
    return [a.state for a in recorder.decoded("cmd/ack") if a.command_id == command_id]


def _open_window() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"start": (now - timedelta(hours=2)).strftime("%H:%M"), "end": (now + timedelta(hours=2)).strftime("%H:%M"),
            "timezone": "UTC"}


def test_update_restarts_into_the_new_slot_and_the_new_process_reports(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """A real agent process (``update_restart: exit``): the update command installs into slot
    B, the process exits with the restart code, the restarted process passes the health check
    and acks the command ``succeeded``. Bad input first: the same command's arguments with a
    version that is not a string (rejected, nothing downloaded)."""
    private, public = generate_keys(tmp_path / "keys")
    root = tmp_path / "opt-sohoa"
    bootstrap(root, tmp_path)
    bundle = app_bundle(tmp_path, private, "0.2.0")
    updater = {"root": str(root), "public_keys": [str(public)], "jitter_max_s": 0, "retry_min_s": 0.01,
               "retry_max_s": 0.05, "health_timeout_s": 20, "health_interval_s": 0.1, "lock_check": "off",
               "allow_http": True}
    with range_server() as server:
        # The bundle server stands in for the fleet: offers are downloaded from the fleet's host only.
        config = agent_config(tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 1}, updater=updater,
                              commands={"restart_exit_code": 75, "update_restart": "exit"},
                              fleet_url=server.base_url, upload={"enabled": False})
        agent = AgentProcess(config, tmp_path)
        server.files["/b.bundle"] = ServedFile(bundle.read_bytes())
        try:
            before = len(recorder.decoded("telemetry"))
            agent.start()
            recorder.wait_for(lambda r: len(r.decoded("telemetry")) > before, 20, "the agent subscribed")
            recorder.publish(DESIRED, encode(ConfigDesired(device_id=DEVICE, version=1,
                                                           settings={"maintenance_window": _open_window()})))
            recorder.wait_for(lambda r: any(c.version == 1 and c.applied for c in r.decoded("config/reported")), 20,
                              "the open window")
            bad = _command("update", rollout_id="r1", url=f"{server.base_url}/b.bundle", version=[1])
            recorder.publish(CMD, encode(bad))
            recorder.wait_for(lambda r: _acks(r, bad.id) == ["rejected"], 20, "the bad update's rejection")
            good = _command("update", rollout_id="r1", url=f"{server.base_url}/b.bundle", version="0.2.0",
                            sha256=sha256_file(bundle))
            recorder.publish(CMD, encode(good))
            assert agent.proc is not None
            assert agent.proc.wait(60) == 75  # restarted into the new slot (systemd would start it)
            assert SlotStore(root).active() == "b"
            assert json.loads((agent.state / "update_command.json").read_text())["command_id"] == good.id
            agent.start()
            recorder.wait_for(lambda r: "succeeded" in _acks(r, good.id), 60, "the update's success")
            assert _acks(recorder, good.id) == ["in_progress", "succeeded"]
            states = [u.state for u in recorder.decoded("update")]
            assert states[-2:] == ["rebooting", "succeeded"] and "rolled_back" not in states
            assert probe(root) == ("0.2.0", True)
            assert not (agent.state / "update_command.json").exists()
            assert [p for p in server.requests if p[0] == "/b.bundle"] == [("/b.bundle", None)]
        finally:
            agent.close()


def test_restart_agent_exits_with_the_restart_code(tmp_path: Path, mosquitto: Mosquitto,
                                                  recorder: Recorder) -> None:
    """Bad input: ``restart_agent`` with an argument it does not take (rejected, no restart)."""
    config = agent_config(tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 1},
                          commands={"restart_exit_code": 75})
    agent = AgentProcess(config, tmp_path)
    try:
        before = len(recorder.decoded("telemetry"))
        agent.start()
        recorder.wait_for(lambda r: len(r.decoded("telemetry")) > before, 20, "the agent subscribed")
        bad = _command("restart_agent", when="now")
        recorder.publish(CMD, encode(bad))
        recorder.wait_for(lambda r: _acks(r, bad.id) == ["rejected"], 20, "the bad restart's rejection")
        assert not agent.exited()
        good = _command("restart_agent")
        recorder.publish(CMD, encode(good))
        assert agent.proc is not None and agent.proc.wait(30) == 75
        agent.start()  # as systemd does; an ack the broker had not taken before the exit goes now
        recorder.wait_for(lambda r: "succeeded" in _acks(r, good.id), 20, "the restart's ack")
        assert set(_acks(recorder, good.id)) == {"succeeded"}  # once or twice (at least once), never re-run
        assert not agent.exited()
    finally:
        agent.close()


def _started(config: AgentConfig, recorder: Recorder) -> Agent:
    """The agent started and subscribed: its first telemetry follows its SUBSCRIBE on the same
    connection, so once the recorder has it the broker routes commands to the agent."""
    before = len(recorder.decoded("telemetry"))
    agent = Agent(config).start()
    recorder.wait_for(lambda r: len(r.decoded("telemetry")) > before, 20, "the agent's first telemetry")
    return agent


def _inprocess(tmp_path: Path, port: int, **overrides: Any) -> AgentConfig:
    values = agent_config(tmp_path, port, scanner={"type": "fake", "pages": 1},
                          commands={"reboot_command": ["true"]}, **overrides)
    return AgentConfig.model_validate(values)


def test_an_open_dossier_holds_reboot_and_update(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """Bad input: a reboot while a dossier is open (rejected; with ``force`` it goes ahead);
    an update while updates are not configured (rejected)."""
    agent = _started(_inprocess(tmp_path, mosquitto.port), recorder)
    try:
        assert agent.session is not None
        agent.session.open()
        assert agent.update_locked()
        held = _command("reboot")
        recorder.publish(CMD, encode(held))
        recorder.wait_for(lambda r: _acks(r, held.id) == ["rejected"], 20, "the held reboot")
        forced = _command("reboot", force=True)
        recorder.publish(CMD, encode(forced))
        recorder.wait_for(lambda r: _acks(r, forced.id) == ["in_progress", "succeeded"], 20, "the forced reboot")
        update = _command("update", rollout_id="r1", url="http://127.0.0.1:9/x", version="9.9.9")
        recorder.publish(CMD, encode(update))
        recorder.wait_for(lambda r: _acks(r, update.id) == ["rejected"], 20, "the unconfigured update")
        agent.session.cancel()
        assert not agent.update_locked()
    finally:
        agent.close()


def test_last_good_settings_survive_a_restart(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """Bad input: a desired quality threshold out of range and a classifier model that is not
    installed, each rejected with its reason; the agent restarted runs the last good (v1)."""
    config = _inprocess(tmp_path, mosquitto.port)
    agent = _started(config, recorder)
    try:
        good = ConfigDesired(device_id=DEVICE, version=1, settings={
            "telemetry_interval_s": 20, "kiosk_language": "en", "scan": {"dpi": 400},
            "quality": {"min_sharpness": 0.5}})
        recorder.publish(DESIRED, encode(good))
        for version, settings in ((2, {"quality": {"max_glare_fraction": 3}}),
                                  (3, {"classifier": {"model_version": "9.9-nope"}})):
            recorder.publish(DESIRED, encode(ConfigDesired(device_id=DEVICE, version=version, settings=settings)))
        recorder.wait_for(lambda r: {c.version for c in r.decoded("config/reported")} >= {1, 2, 3}, 20, "3 answers")
        reported = {c.version: c for c in recorder.decoded("config/reported")}
        assert reported[1].applied and reported[1].settings["scan"]["dpi"] == 400
        assert not reported[2].applied and "quality.max_glare_fraction" in (reported[2].error or "")
        assert not reported[3].applied and "not installed" in (reported[3].error or "")
        assert agent.config.scanner is not None and agent.config.scanner.dpi == 400
        assert agent.pipeline is not None and agent.pipeline.config.quality.min_sharpness == 0.5
    finally:
        agent.close()
    again = _started(config, recorder)
    try:
        assert again.settings.version == 1
        assert again.config.telemetry.interval_s == 20 and again.config.kiosk.language == "en"
        assert again.config.scanner is not None and again.config.scanner.dpi == 400
        assert again.status()["config_version"] == 1
    finally:
        again.close()


def test_the_agents_state_files_survive_a_power_cut(
        tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which keys the fleet set (``settings_given.json``) and which command an update answers
    (``update_command.json``) are written to a temporary name, fsynced, renamed and their folder
    fsynced: after a cut the agent finds the old or the new file, never an empty one."""
    _private, public = generate_keys(tmp_path / "keys")
    root = tmp_path / "opt-sohoa"
    bootstrap(root, tmp_path)
    updater = {"root": str(root), "public_keys": [str(public)], "jitter_max_s": 0, "retry_min_s": 0.01,
               "retry_max_s": 0.05, "lock_check": "off"}
    config = _inprocess(tmp_path, mosquitto.port, updater=updater)
    synced = record_fsyncs(monkeypatch)
    agent = _started(config, recorder)
    try:
        recorder.publish(DESIRED, encode(ConfigDesired(device_id=DEVICE, version=1,
                                                       settings={"maintenance_window": _open_window()})))
        recorder.wait_for(lambda r: any(c.version == 1 and c.applied for c in r.decoded("config/reported")), 20,
                          "the applied settings")
        assert any(p.name.startswith(".settings_given.json.") for p in synced)
        update = _command("update", rollout_id="r1", url="http://127.0.0.1:9/x.bundle", version="0.2.0")
        recorder.publish(CMD, encode(update))
        recorder.wait_for(lambda r: "in_progress" in _acks(r, update.id), 20, "the update's start")
        assert any(p.name.startswith(".update_command.json.") for p in synced)
        assert config.state_dir in synced
    finally:
        agent.close()
