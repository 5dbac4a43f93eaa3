"""The inbox and the six command handlers, without a broker: each command is decoded, acted on
once and answered on ``cmd/ack`` (read back from the real outbox, where the publisher stores it).
The scan worker and the dossier session are stand-ins that record what they were asked; long
work runs on the test's thread."""

from __future__ import annotations

import io
import logging
import sys
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest

from device.capture.base import ScanRequest
from device.commands import Commands
from device.config import AgentConfig
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.scanning import ScanJob
from protocol.messages import (
    Command,
    CommandAck,
    CommandName,
    ConfigDesired,
    ConfigReported,
    Message,
    decode,
    encode,
)
from protocol.topics import Channel, topic

DEVICE = "kiosk-0001"


class RecordingScans:
    """Stands in for the scan worker: records requests; ``refuse`` answers like a busy scanner."""

    def __init__(self) -> None:
        self.requests: list[tuple[ScanRequest, str, str | None]] = []
        self.refuse: str | None = None

    def request_scan(
        self, request: ScanRequest, *, kind: Literal["scanner", "folder"] = "scanner",
        command_id: str | None = None, quiet: bool = False,
    ) -> ScanJob:
        self.requests.append((request, kind, command_id))
        job = ScanJob(kind, request, command_id)
        if self.refuse is not None:
            job.outcome, job.detail = "refused", self.refuse
            job.done.set()
        return job


class CounterSession:
    """A dossier session as far as the update lock reads it."""

    def __init__(self) -> None:
        self.state = "idle"

    def snapshot(self) -> SimpleNamespace:
        return SimpleNamespace(state=self.state)


class Rig:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.config = AgentConfig.model_validate(
            {"device_id": DEVICE, "unit": "000.00.00.H01", "state_dir": tmp_path, **config}
        )
        self.outbox = Outbox(tmp_path)
        self.publisher = Publisher(self.outbox, DEVICE, window=8)
        self.scans = RecordingScans()
        self.counter = CounterSession()
        self.spawned: list[str] = []
        self.uploads = False
        self.desired: list[ConfigDesired] = []
        self.commands = Commands(
            device_id=DEVICE, config=lambda: self.config, outbox=self.outbox, publisher=self.publisher,
            scans=self.scans, spawn=self._spawn, status=lambda: {"device_id": DEVICE},
            on_desired=self._desired, session=lambda: self.counter,  # type: ignore[arg-type, return-value]
            uploads=lambda: self.uploads,
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        self.spawned.append(name)
        target()

    def _desired(self, desired: ConfigDesired) -> ConfigReported:
        self.desired.append(desired)
        error = "scan.dpi: too low" if desired.settings.get("scan") == {"dpi": 1} else None
        return ConfigReported(device_id=DEVICE, version=desired.version, applied=error is None, error=error)

    def send(self, name: CommandName, args: dict[str, Any] | None = None, *, deadline_s: float = 60,
             command_id: str | None = None) -> Command:
        command = Command(device_id=DEVICE, name=name, args=args or {},
                          deadline=datetime.now(UTC) + timedelta(seconds=deadline_s),
                          **({"id": command_id} if command_id else {}))
        self.commands.handle_message(topic(DEVICE, Channel.CMD), encode(command))
        return command

    def sent(self) -> list[Message]:
        return [decode(m.topic, m.payload).message for m in self.outbox.pending_messages()]

    def acks(self, command: Command | str) -> list[tuple[str, str | None]]:
        command_id = command if isinstance(command, str) else command.id
        return [(m.state, m.detail) for m in self.sent() if isinstance(m, CommandAck) and m.command_id == command_id]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    try:
        yield rig
    finally:
        rig.outbox.close()


def test_test_scan_queues_a_batch_and_answers_in_progress(rig: Rig) -> None:
    command = rig.send("test_scan", {"source": "folder", "max_pages": 2})
    assert rig.scans.requests == [(ScanRequest(max_pages=2), "folder", command.id)]
    assert rig.acks(command) == [("in_progress", None)]
    job = ScanJob("folder", ScanRequest(max_pages=2), command.id, outcome="complete", pages=2)
    rig.commands.scan_done(job)
    assert rig.acks(command)[-1] == ("succeeded", "complete: 2 page(s)")


def test_a_refused_scan_is_rejected_with_the_reason(rig: Rig) -> None:
    rig.scans.refuse = "busy"
    command = rig.send("test_scan")
    assert rig.acks(command) == [("rejected", "busy")]


def test_bad_arguments_are_rejected_with_their_fields(rig: Rig) -> None:
    """Bad input: an unknown argument and a value out of range."""
    reboot = rig.send("reboot", {"forse": True})
    scan = rig.send("test_scan", {"max_pages": 0})
    assert rig.acks(reboot) == [("rejected", "invalid args ['forse']")]
    assert rig.acks(scan) == [("rejected", "invalid args ['max_pages']")]
    assert rig.commands.rejected["cmd:invalid_args"] == 2 and rig.scans.requests == []


def test_a_redelivered_command_is_acted_on_once(rig: Rig) -> None:
    first = rig.send("test_scan", command_id="cmd-00000001")
    rig.send("test_scan", command_id="cmd-00000001")
    assert len(rig.scans.requests) == 1 and rig.commands.duplicates == 1
    assert rig.acks(first) == [("in_progress", None)]


def test_an_expired_command_is_rejected(rig: Rig) -> None:
    command = rig.send("test_scan", deadline_s=-1)
    assert rig.acks(command) == [("rejected", "deadline passed")] and rig.scans.requests == []
    assert rig.commands.rejected["cmd:expired"] == 1


def test_restart_needs_a_service_and_respects_an_open_dossier(rig: Rig) -> None:
    assert rig.acks(rig.send("restart_agent"))[0][0] == "rejected"  # embedded: nothing can restart it
    restarts: list[bool] = []
    rig.commands.restart_hook = lambda: restarts.append(True)
    rig.counter.state = "open"
    assert rig.acks(rig.send("restart_agent")) == [("rejected", "a dossier is open at the counter")]
    assert rig.acks(rig.send("restart_agent", {"force": True})) == [("succeeded", "restarting")]
    assert restarts == [True]


def test_reboot_runs_the_configured_program(tmp_path: Path) -> None:
    ok = Rig(tmp_path / "ok", commands={"reboot_command": [sys.executable, "-c", "pass"]})
    failing = Rig(tmp_path / "bad", commands={"reboot_command": [sys.executable, "-c", "raise SystemExit(3)"]})
    try:
        good = ok.send("reboot")
        bad = failing.send("reboot")
        assert ok.acks(good) == [("in_progress", None), ("succeeded", "reboot requested")]
        assert failing.acks(bad)[-1][0] == "failed" and "exited 3" in str(failing.acks(bad)[-1][1])
        failing.counter.state = "review"
        assert failing.acks(failing.send("reboot")) == [("rejected", "a dossier is open at the counter")]
    finally:
        ok.outbox.close()
        failing.outbox.close()


def test_collect_logs_stores_an_archive_with_its_ack(rig: Rig) -> None:
    assert rig.acks(rig.send("collect_logs"))[0][0] == "rejected"  # no way to upload it
    rig.uploads = True
    command = rig.send("collect_logs")
    files = rig.outbox.pending_files()
    assert len(files) == 1 and files[0].content_type == "application/gzip"
    assert rig.acks(command) == [("in_progress", None), ("succeeded", f"logs sha256={files[0].sha256} "
                                                                     f"size={files[0].size}")]


def test_collected_logs_carry_no_dossier_code_or_id_number(rig: Rig) -> None:
    """Bad input: log lines naming a dossier code in the national form, a walk-in code the
    session handled (also as a PDF's file name and in a traceback) and a citizen ID number. The
    archive ``collect_logs`` ships holds the lines, scrubbed."""
    logger = logging.getLogger("device.test_scrub")
    logging.getLogger().addHandler(rig.commands.log_ring)
    try:
        rig.commands.log_ring.scrub.remember("WALKIN-20261207-0042")
        logger.warning("dossier 000.00.12.H10-261102-0001 closed; result 000.00.12.H10-261102-0001-KQ2")
        logger.warning("cannot write WALKIN-20261207-0042.3.pdf for card 001203004567")
        try:
            raise OSError("no space for walkin-20261207-0042.1.pdf")
        except OSError:
            logger.exception("holding failed")
    finally:
        logging.getLogger().removeHandler(rig.commands.log_ring)
    rig.uploads = True
    rig.send("collect_logs")
    [pending] = rig.outbox.pending_files()
    with tarfile.open(fileobj=io.BytesIO(rig.outbox.file_path(pending.sha256).read_bytes()), mode="r:gz") as tar:
        member = tar.extractfile("logs/agent.log")
        assert member is not None
        shipped = member.read().decode()
    assert "holding failed" in shipped and "[code].3.pdf" in shipped and "[number]" in shipped
    for secret in ("261102-0001", "WALKIN-20261207", "walkin-20261207", "001203004567"):
        assert secret not in shipped


def test_rotate_certificate_without_an_identity_is_rejected(rig: Rig) -> None:
    command = rig.send("rotate_certificate")
    assert rig.acks(command) == [("rejected", "not enrolled")]
    assert rig.commands.rejected["cmd:not_enrolled"] == 1


def test_update_without_an_updater_is_rejected(rig: Rig) -> None:
    command = rig.send("update", {"rollout_id": "r1", "url": "https://fleet.example/b", "version": "0.2.0"})
    assert rig.acks(command) == [("rejected", "updates are not configured on this device")]


def test_undecodable_commands_are_refused_and_answered_when_their_id_is_readable(rig: Rig) -> None:
    """Bad input: a command with an unknown name, and bytes that are not JSON."""
    cmd_topic = topic(DEVICE, Channel.CMD)
    rig.commands.handle_message(cmd_topic, b'{"schema_version": 1, "id": "cmd-00000009", "name": "selfdestruct"}')
    rig.commands.handle_message(cmd_topic, b"\xff\xfe not json")
    assert rig.acks("cmd-00000009") == [("rejected", "invalid")]
    assert rig.commands.rejected["cmd:invalid"] == 1 and rig.commands.rejected["cmd:malformed_json"] == 1


def test_desired_settings_are_handed_over_and_reported(rig: Rig) -> None:
    desired_topic = topic(DEVICE, Channel.CONFIG_DESIRED)
    for version, settings in ((1, {"kiosk_language": "en"}), (2, {"scan": {"dpi": 1}})):
        rig.commands.handle_message(desired_topic, encode(ConfigDesired(device_id=DEVICE, version=version,
                                                                        settings=settings)))
    reports = [m for m in rig.sent() if isinstance(m, ConfigReported)]
    assert [(r.version, r.applied) for r in reports] == [(1, True), (2, False)]
    assert rig.commands.rejected["config/desired:invalid"] == 1
