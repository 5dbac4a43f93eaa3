"""The agent as a real process meets bad conditions: a jammed feeder, malformed commands and
settings from the broker, and a full disk. Each is reported and counted; the agent keeps serving."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device.delivery.sealing import OVERHEAD
from protocol.messages import Command, ConfigDesired, encode
from tests.device.agent_harness import AgentProcess, Recorder, agent_config, sane_conf, wait_until
from tests.services import Mosquitto

DEVICE = "kiosk-test"
CMD = f"sohoa/v1/{DEVICE}/cmd"
DESIRED = f"sohoa/v1/{DEVICE}/config/desired"


def test_jam_is_reported_and_the_next_scan_works(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder
) -> None:
    """The test backend's read-return-value is set to SANE_STATUS_JAMMED (through test.conf's
    read-status-code): the batch ends ``interrupted`` with a ``scanner_jammed`` event and the
    scanner state ``jammed``; the agent stays up. The scanner then vanishes and the backend
    crashes its process: ``scanner_gone`` and state ``absent``, the agent unharmed. Once it is
    back and the jam cleared, the next feeder batch gives its 10 pages."""
    sane_conf(sane_dir, read_status_code='"SANE_STATUS_JAMMED"')
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port), tmp_path, sane_dir)
    try:
        agent.start()
        result = agent.scan(source="adf")
        assert result["outcome"] == "interrupted" and result["detail"] == "scanner_jammed"
        recorder.wait_for(lambda r: len(r.events("scanner_jammed")) == 1, 20, "scanner_jammed")
        jam = recorder.events("scanner_jammed")[0]
        assert jam.batch_id == result["batch_id"] and jam.severity == "error"
        assert "jammed" in jam.message
        recorder.wait_for(lambda r: any(e.batch_id == result["batch_id"] for e in r.events("batch_finished")), 20,
                          "the interrupted batch")
        assert agent.status()["scanner"]["state"] == "jammed"
        # The scanner vanishes: the test backend then crashes (SIGSEGV) when SANE lists devices.
        # The driver runs in a child process, so this costs a scanner_gone event, not the agent.
        sane_conf(sane_dir, number_of_devices="0")
        gone = agent.scan(source="adf")
        assert gone["outcome"] == "interrupted" and gone["detail"] == "scanner_gone", gone
        recorder.wait_for(lambda r: len(r.events("scanner_gone")) == 1, 20, "scanner_gone")
        assert "exit code -11" in recorder.events("scanner_gone")[0].message
        assert agent.status()["scanner"]["state"] == "absent"
        sane_conf(sane_dir)  # plugged back in, jam cleared
        again = agent.scan(source="adf")
        assert again["outcome"] == "complete" and again["pages"] == 10
        assert agent.status()["scanner"]["state"] == "ready"
        assert not agent.exited()
    finally:
        agent.close()


def _command(**fields: object) -> bytes:
    base = Command(device_id=DEVICE, name="test_scan", deadline=datetime.now(UTC) + timedelta(minutes=5))
    data = json.loads(encode(base))
    data.update(fields)
    return json.dumps(data).encode()


def test_malformed_commands_and_settings_are_refused_and_counted(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """Sent on ``cmd``: bytes that are not JSON, a JSON list, a wrong schema version, a 1 MB
    payload, a command naming another device, an unknown command name, an expired deadline,
    bad ``test_scan`` arguments, an argument this agent does not know (a newer fleet's, #7), an
    unsupported command, and one command delivered twice. Sent on ``config/desired``: not JSON, a
    setting the fleet may not change (``broker``) and an invalid value (dpi 0). Each is refused and
    counted (nothing crashes, refused commands with a readable id get a ``rejected`` ack); a valid
    command and valid settings right after work, though each carries an envelope field this agent
    does not know (a newer fleet's additive change: ignored, #7)."""
    config = agent_config(tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 3})
    agent = AgentProcess(config, tmp_path)
    try:
        agent.start()
        deadline_past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        bad_cmds = [
            b"{not json",
            b"[1, 2, 3]",
            _command(schema_version=2),
            b"{" + b" " * (1024 * 1024) + b"}",
            _command(device_id="kiosk-other"),
            _command(name="self_destruct"),
            _command(deadline=deadline_past),
            _command(args={"max_pages": "many"}),
            _command(args={"max_pages": 1, "priority": "high"}),
            _command(name="rotate_certificate"),  # no identity (issue 6): rejected 'not enrolled'
        ]
        for payload in bad_cmds:
            recorder.publish(CMD, payload)
        recorder.publish(DESIRED, b"\xff\xfe")
        recorder.publish(DESIRED, encode(ConfigDesired(device_id=DEVICE, version=1, settings={"broker": {"port": 1}})))
        recorder.publish(DESIRED, encode(ConfigDesired(device_id=DEVICE, version=2, settings={"scan": {"dpi": 0}})))
        good = Command(device_id=DEVICE, name="test_scan", deadline=datetime.now(UTC) + timedelta(minutes=5),
                       args={"max_pages": 2})
        newer_good = json.loads(encode(good))
        newer_good["issued_by"] = "admin-01"  # an envelope field from a newer fleet
        recorder.publish(CMD, json.dumps(newer_good).encode())
        recorder.publish(CMD, encode(good))  # redelivery: must not scan twice
        desired = json.loads(encode(ConfigDesired(device_id=DEVICE, version=3, settings={"telemetry_interval_s": 30})))
        desired["merged_from"] = ["fleet", "unit"]
        recorder.publish(DESIRED, json.dumps(desired).encode())
        recorder.wait_for(lambda r: any(a.command_id == good.id and a.state == "succeeded"
                                        for a in r.decoded("cmd/ack")), 30, "the good command's success")
        recorder.wait_for(lambda r: any(c.version == 3 for c in r.decoded("config/reported")), 30, "config version 3")
        wait_until(lambda: agent.status()["duplicates"] == 1, 10, "the duplicate to be noticed")
        status = agent.status()
        assert status["rejected"] == {
            "cmd:malformed_json": 2,
            "cmd:schema_version": 1,
            "cmd:too_large": 1,
            "cmd:device_mismatch": 1,
            "cmd:invalid": 1,
            "cmd:expired": 1,
            "cmd:invalid_args": 2,
            "cmd:not_enrolled": 1,
            "config/desired:malformed_json": 1,
            "config/desired:invalid": 2,
        }
        batches = [b for b in status["batches"] if b["source"] == "scanner"]
        assert len(batches) == 1 and batches[0]["pages"] == 2
        reported = {c.version: c for c in recorder.decoded("config/reported")}
        assert not reported[1].applied and "broker" in (reported[1].error or "")
        assert not reported[2].applied and "dpi" in (reported[2].error or "")
        assert reported[3].applied and reported[3].settings["telemetry_interval_s"] == 30
        acks = recorder.decoded("cmd/ack")
        rejected = {a.command_id for a in acks if a.state == "rejected"}
        assert len(rejected) >= 5  # every refused command whose id could be read
        assert any(a.state == "rejected" and "priority" in (a.detail or "") for a in acks)  # the unknown arg, named
        assert [a.state for a in acks if a.command_id == good.id] == ["in_progress", "succeeded"]
        assert not agent.exited()
        assert "Traceback" not in agent.logs()
    finally:
        agent.close()



def test_disk_full_refuses_the_next_scan_and_keeps_pages(
    tmp_path: Path, mosquitto: Mosquitto, small_disk: Path, recorder: Recorder
) -> None:
    """The outbox lives on a 4 MB tmpfs with a 1 MB floor, filled by another file to just above
    the floor. A batch stops once the floor is crossed (``disk_low``); the next scan is refused
    with ``scan_refused(disk_full)`` and a ``disk_low`` event, a clear log line and HTTP 409;
    every page stored before is still on disk, whole. Freeing space makes scans work again."""
    config = agent_config(tmp_path, mosquitto.port, state_dir=str(small_disk / "state"), min_free_bytes=1024 * 1024,
                          scanner={"type": "fake", "pages": 30, "width": 200, "height": 200})
    agent = AgentProcess(config, tmp_path)
    try:
        agent.start()
        free = agent.status()["free_bytes"]
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (free - 1024 * 1024 - 64 * 1024))
        first = agent.scan(source="adf")
        assert first["outcome"] == "interrupted" and first["detail"] == "disk_low", first
        assert 0 < first["pages"] < 30
        second = agent.scan(source="adf")
        assert second["http_status"] == 409 and second["detail"] == "disk_full"
        recorder.wait_for(lambda r: len(r.events("scan_refused")) == 1, 20, "scan_refused")
        refused = recorder.events("scan_refused")[0]
        assert refused.reason == "disk_full" and "below the floor" in refused.message
        recorder.wait_for(lambda r: len(r.events("disk_low")) >= 2, 20, "disk_low events")
        assert "scan refused: only" in agent.logs()
        recorder.wait_for(lambda r: len(r.events("page_captured")) == first["pages"], 20, "the stored pages")
        for event in recorder.events("page_captured"):
            stored = small_disk / "state" / "files" / event.page.sha256
            assert stored.stat().st_size == event.page.size + OVERHEAD  # sealed
        ballast.unlink()
        third = agent.scan(source="adf", max_pages=2)
        assert third["outcome"] == "complete" and third["pages"] == 2
        assert agent.terminate() == 0
    finally:
        agent.close()


def test_enospc_mid_batch_refuses_until_space_returns(
    tmp_path: Path, mosquitto: Mosquitto, small_disk: Path, recorder: Recorder
) -> None:
    """No floor at all (min_free_bytes 0) and incompressible 120 kB pages on a 4 MB tmpfs
    filled to ~400 kB free: a write meets a real ENOSPC mid-batch. The batch ends
    ``interrupted`` (``disk_full``) with a ``disk_low`` event, the agent keeps running, the next
    scan is refused ``disk_full`` until space comes back, and the pages stored are whole."""
    config = agent_config(tmp_path, mosquitto.port, state_dir=str(small_disk / "state"), min_free_bytes=0,
                          scanner={"type": "fake", "pages": 30, "width": 200, "height": 200, "noise": True})
    agent = AgentProcess(config, tmp_path)
    try:
        agent.start()
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (agent.status()["free_bytes"] - 400 * 1024))
        first = agent.scan(source="adf")
        assert first["outcome"] == "interrupted" and first["detail"] == "disk_full", first
        assert 1 <= first["pages"] < 30
        assert "disk full while storing page" in agent.logs()
        second = agent.scan(source="adf")
        assert second["http_status"] == 409 and second["detail"] == "disk_full"
        recorder.wait_for(lambda r: any(e.reason == "disk_full" for e in r.events("scan_refused")), 20,
                          "scan_refused")
        files = small_disk / "state" / "files"
        assert not [p for p in files.iterdir() if p.name.startswith(".tmp-")]
        recorder.wait_for(lambda r: len(r.events("page_captured")) == first["pages"], 20, "the stored pages")
        for event in recorder.events("page_captured"):
            assert (files / event.page.sha256).stat().st_size == event.page.size + OVERHEAD  # sealed
        ballast.unlink()
        third = agent.scan(source="adf", max_pages=2)
        assert third["outcome"] == "complete" and third["pages"] == 2
        assert not agent.exited()
    finally:
        agent.close()


def test_no_scanner_attached(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """SANE finds no device at all (no backend enabled): the agent starts anyway with the
    scanner ``absent``, and a scan request gives ``scan_refused(no_scanner)``, not a crash."""
    empty = tmp_path / "sane-empty"
    empty.mkdir()
    (empty / "dll.conf").write_text("")
    config = agent_config(tmp_path, mosquitto.port, scanner={"type": "sane", "device": "auto"})
    agent = AgentProcess(config, tmp_path, empty)
    try:
        agent.start()
        wait_until(lambda: agent.status()["scanner"]["state"] == "absent", 10, "the scanner to be absent")
        result = agent.scan(source="adf")
        assert result["outcome"] == "interrupted" and result["detail"] == "no_scanner"
        recorder.wait_for(lambda r: any(e.reason == "no_scanner" for e in r.events("scan_refused")), 20,
                          "scan_refused(no_scanner)")
        assert not agent.exited()
    finally:
        agent.close()
