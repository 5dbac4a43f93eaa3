"""Messages in: the inbox thread decodes what the fleet sends (``cmd``, ``config/desired``) and
acts on each command. Bad messages are refused and counted, never logged with their payload.

Every command is acted on once (the outbox remembers its id: delivery is at-least-once), not after
its deadline, and answered on ``cmd/ack``: ``rejected`` with the reason, or ``in_progress`` then
``succeeded`` / ``failed``. Arguments are checked against :mod:`protocol.commands`. Long work
(an update, a reboot, a certificate rotation) runs on its own thread so the inbox stays free.

>>> commands = Commands(device_id="kiosk-0001", config=lambda: config, outbox=outbox,  # doctest: +SKIP
...                     publisher=publisher, scans=scan_worker, spawn=start_thread, status=agent.status)
>>> link = MqttLink(..., on_message=commands.on_message)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import queue
import subprocess
import tarfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.durable import atomic_write
from device.enroll import CertificateRevoked, IdentityKeeper, IdentityStatus, RenewalFailed
from device.logscrub import Scrubber
from device.scanning import ScanJob, scan_request
from device.update_errors import BundleRefused
from protocol.commands import ForceArgs, NoArgs, TestScanArgs, error_fields
from protocol.errors import ProtocolError
from protocol.messages import (
    Command,
    CommandAck,
    CommandState,
    ConfigDesired,
    ConfigReported,
    OperatorList,
    UpdateProgress,
    decode,
    encode,
)
from protocol.topics import Channel, topic
from provisioning.errors import KeyFileError

if TYPE_CHECKING:
    from device.capture.base import ScanRequest
    from device.config import AgentConfig
    from device.dossier.session import DossierSession
    from device.updater import Outcome, Updater
    from protocol.settings import MaintenanceWindow
    from provisioning.identity import DeviceIdentity

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 256 * 1024


class Scans(Protocol):
    """What commands need of the scan worker (:class:`device.scanning.ScanWorker`)."""

    def request_scan(
        self, request: ScanRequest, *, kind: Literal["scanner", "folder"] = "scanner",
        command_id: str | None = None, quiet: bool = False,
    ) -> ScanJob: ...


class LogRing(logging.Handler):
    """The agent's recent log lines, for ``collect_logs``, each scrubbed of dossier codes and ID
    numbers on the way in (:mod:`device.logscrub`), tracebacks included.

    >>> ring = LogRing(2)
    >>> for text in ("one", "two", "three 000.00.12.H10-261102-0001"):
    ...     ring.emit(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))
    >>> [line.split(": ", 1)[-1] for line in ring.lines()]
    ['two', 'three [code]']
    """

    def __init__(self, size: int) -> None:
        super().__init__(logging.INFO)
        self._lines: deque[str] = deque(maxlen=size)
        self.scrub = Scrubber()
        """Tell it the dossier codes the device handles (:meth:`Scrubber.remember`)."""
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.scrub(self.format(record)))
        except Exception:  # a bad log call must not break the caller
            self.handleError(record)

    def lines(self) -> list[str]:
        return list(self._lines)


class Commands:
    """The inbox and the six command handlers; see the module docstring.

    ``on_desired`` takes the fleet's desired settings and returns what to report (the agent's
    :class:`device.remote_settings.RemoteSettingsApplier`). ``restart_hook`` is set by the
    service (:func:`device.service.run_main`): it ends the process with
    ``commands.restart_exit_code`` so systemd starts it again; None (an agent embedded in tests):
    ``restart_agent`` is rejected.
    """

    def __init__(
        self,
        *,
        device_id: str,
        config: Callable[[], AgentConfig],
        outbox: Outbox,
        publisher: Publisher,
        scans: Scans,
        spawn: Callable[[str, Callable[[], None]], None],
        status: Callable[[], dict[str, Any]],
        on_desired: Callable[[ConfigDesired], ConfigReported] | None = None,
        on_operators: Callable[[OperatorList], object] | None = None,
        session: Callable[[], DossierSession | None] = lambda: None,
        window: Callable[[], MaintenanceWindow] | None = None,
        uploads: Callable[[], bool] = lambda: False,
        identity: DeviceIdentity | None = None,
        identity_status: IdentityStatus | None = None,
        keeper: Callable[[], IdentityKeeper | None] = lambda: None,
    ) -> None:
        self.device_id = device_id
        self._config = config
        self.outbox = outbox
        self.publisher = publisher
        self.scans = scans
        self._spawn = spawn
        self._status = status
        self._on_desired = on_desired
        self._on_operators = on_operators
        self._session = session
        self._window = window
        self._uploads = uploads
        self._identity = identity
        self._identity_status = identity_status or IdentityStatus()
        self._keeper = keeper
        self.updater: Updater | None = None
        self.restart_hook: Callable[[], None] | None = None
        self.log_ring = LogRing(config().commands.log_lines)
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.last_update: UpdateProgress | None = None
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()

    # --- the inbox ------------------------------------------------------------------------------

    def on_message(self, topic_name: str, payload: bytes) -> None:
        """The link's callback, on paho's network thread: hand over and return."""
        self._inbox.put((topic_name, payload))

    def run(self) -> None:
        """The inbox thread: until :meth:`stop`."""
        while True:
            item = self._inbox.get()
            if item is None:
                return
            try:
                self.handle_message(*item)
            except Exception:  # never let one message stop command handling
                log.exception("handling a message failed")
                self.rejected["internal"] += 1

    def stop(self) -> None:
        self._inbox.put(None)

    def refuse(self, channel: str, reason: str, detail: str) -> None:
        self.rejected[f"{channel}:{reason}"] += 1
        # The payload is never logged: it may carry personal data.
        log.warning("refused a message on %s: %s (%s)", channel, reason, detail)

    def handle_message(self, topic_name: str, payload: bytes) -> None:
        """Decode and act on one incoming message; refuse and count anything invalid."""
        channel = topic_name.rsplit("/", 2)[-1] if not topic_name.endswith("config/desired") else "config/desired"
        try:
            decoded = decode(topic_name, payload)
        except ProtocolError as exc:
            self.refuse(channel, exc.reason, exc.detail)
            if channel == "cmd":
                command_id = _command_id(payload)
                if command_id is not None:
                    self.ack(command_id, "rejected", f"{exc.reason}")
            return
        message = decoded.message
        if decoded.device_id != self.device_id:
            self.refuse(channel, "device_mismatch", "not addressed to this device")
            return
        if isinstance(message, Command):
            self.handle(message)
        elif isinstance(message, ConfigDesired) and self._on_desired is not None:
            reported = self._on_desired(message)
            if reported.error is not None:
                self.refuse("config/desired", "invalid", reported.error[:200])
            self.publisher.emit(reported, Channel.CONFIG_REPORTED)
        elif isinstance(message, OperatorList) and self._on_operators is not None:
            self._on_operators(message)  # the unit's operators, hashed: the sign-in's book
        else:
            self.refuse(channel, "unexpected", f"{type(message).__name__} is not for a device")

    # --- commands -------------------------------------------------------------------------------

    def ack(self, command_id: str, state: CommandState, detail: str | None = None) -> None:
        self.publisher.emit(
            CommandAck(device_id=self.device_id, command_id=command_id, state=state, detail=detail),
            Channel.CMD_ACK,
        )

    def handle(self, command: Command) -> None:
        """Act on one command, once; answer it on ``cmd/ack``."""
        if not self.outbox.first_time_command(command.id):
            self.duplicates += 1
            log.info("command %s was already handled (redelivery)", command.id)
            return
        if command.deadline < datetime.now(UTC):
            self.refuse("cmd", "expired", "deadline passed")
            self.ack(command.id, "rejected", "deadline passed")
            return
        handler = {
            "test_scan": self._test_scan,
            "update": self._update,
            "restart_agent": self._restart_agent,
            "reboot": self._reboot,
            "collect_logs": self._collect_logs,
            "rotate_certificate": self._rotate_certificate,
        }.get(command.name)
        if handler is None:
            self.refuse("cmd", "unsupported", command.name)
            self.ack(command.id, "rejected", f"{command.name} is not supported by this agent version")
            return
        try:
            handler(command)
        except ValidationError as exc:
            fields = error_fields(exc)
            self.refuse("cmd", "invalid_args", f"fields {fields}")
            self.ack(command.id, "rejected", f"invalid args {fields}")

    def scan_done(self, job: ScanJob) -> None:
        """The scan worker finished a ``test_scan`` batch: answer its command."""
        if job.command_id is not None:
            state: CommandState = "succeeded" if job.outcome == "complete" else "failed"
            self.ack(job.command_id, state, f"{job.outcome}: {job.pages} page(s) {job.detail or ''}".strip())

    def update_locked(self) -> bool:
        """The update lock: a dossier is being worked on at the counter (not idle, not closed)."""
        session = self._session()
        return session is not None and session.snapshot().state not in ("idle", "closed")

    def _test_scan(self, command: Command) -> None:
        kind, request = scan_request(TestScanArgs.model_validate(command.args))
        job = self.scans.request_scan(request, kind=kind, command_id=command.id)
        if job.outcome == "refused":
            self.ack(command.id, "rejected", job.detail)
        else:
            self.ack(command.id, "in_progress")

    def _restart_agent(self, command: Command) -> None:
        args = ForceArgs.model_validate(command.args)
        if self.restart_hook is None:
            self.ack(command.id, "rejected", "this agent does not run as a service: it cannot restart itself")
            return
        if self.update_locked() and not args.force:
            self.ack(command.id, "rejected", "a dossier is open at the counter")
            return
        self.ack(command.id, "succeeded", "restarting")
        self.publisher.drain(self._config().broker.shutdown_flush_s)
        self.restart_hook()

    def _reboot(self, command: Command) -> None:
        args = ForceArgs.model_validate(command.args)
        if self.update_locked() and not args.force:
            self.ack(command.id, "rejected", "a dossier is open at the counter")
            return
        self.ack(command.id, "in_progress")
        config = self._config()
        cfg = config.commands

        def work() -> None:
            self.publisher.drain(config.broker.shutdown_flush_s)
            try:
                done = subprocess.run(cfg.reboot_command, capture_output=True, text=True,
                                      timeout=cfg.reboot_timeout_s, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.ack(command.id, "failed", f"reboot command: {type(exc).__name__}")
                return
            if done.returncode != 0:
                self.ack(command.id, "failed", f"reboot command exited {done.returncode}: {done.stderr[-300:]}")
            else:
                self.ack(command.id, "succeeded", "reboot requested")

        self._spawn(f"reboot-{command.id[:8]}", work)

    def _rotate_certificate(self, command: Command) -> None:
        """A new key and certificate now (signed with the current ones), then MQTT reconnects
        with them; the ack goes out over the new connection. The device then confirms the new
        certificate to the fleet, which revokes the old one (until then the fleet still takes a
        signature by it, for a renewal lost on its way back)."""
        NoArgs.model_validate(command.args)
        keeper, identity = self._keeper(), self._identity
        if keeper is None or identity is None or not identity.is_enrolled():
            self.refuse("cmd", "not_enrolled", command.name)
            self.ack(command.id, "rejected", "not enrolled")
            return
        problem = self._identity_status.problem()
        if problem is not None:
            self.refuse("cmd", "not_enrolled", f"{command.name}: certificate {problem}")
            self.ack(command.id, "rejected", f"certificate {problem}")
            return
        self.ack(command.id, "in_progress")

        def work() -> None:
            try:
                serial = keeper.rotate()
            except CertificateRevoked as exc:
                self.ack(command.id, "failed", f"the fleet refuses this certificate ({exc.reason})")
            except (RenewalFailed, KeyFileError, OSError, ValueError) as exc:
                log.warning("certificate rotation failed: %s", exc)
                self.ack(command.id, "failed", f"certificate not rotated: {str(exc)[:300]}")
            else:
                self.ack(command.id, "succeeded", f"new certificate serial={serial:x}")

        self._spawn(f"rotate-{command.id[:8]}", work)

    def _collect_logs(self, command: Command) -> None:
        NoArgs.model_validate(command.args)
        if not self._uploads():
            self.ack(command.id, "rejected", "uploads are disabled or no fleet URL: files cannot be uploaded")
            return
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for name, data in (
                ("agent.log", "\n".join(self.log_ring.lines()).encode()),
                ("status.json", self.log_ring.scrub(json.dumps(self._status(), indent=2, default=str)).encode()),
            ):
                info = tarfile.TarInfo(f"logs/{name}")
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        data = archive.getvalue()

        def make(sha256: str) -> tuple[str, bytes, str]:
            # The ack travels with the file: the fleet learns the file's hash once it is stored here.
            ack = CommandAck(device_id=self.device_id, command_id=command.id, state="succeeded",
                             detail=f"logs sha256={sha256} size={len(data)}")
            return topic(self.device_id, Channel.CMD_ACK), encode(ack), ack.id

        self.ack(command.id, "in_progress")
        self.outbox.add_page(data, "application/gzip", make)

    # --- the update command ---------------------------------------------------------------------

    def _update(self, command: Command) -> None:
        from device.updater import offer_from

        updater = self.updater
        if updater is None:
            self.refuse("cmd", "unsupported", "update")
            self.ack(command.id, "rejected", "updates are not configured on this device")
            return
        try:
            offer = offer_from(command)
        except BundleRefused as exc:
            self.refuse("cmd", "invalid_args", "update")
            self.ack(command.id, "rejected", str(exc)[:512])
            return
        if updater.busy.is_set():
            self.ack(command.id, "rejected", "another update is in progress")
            return
        self.ack(command.id, "in_progress")
        marker = self._config().state_dir / "update_command.json"
        atomic_write(marker, json.dumps({"command_id": command.id}).encode())
        session = self._session()

        def work() -> None:
            # The session is the update lock: no dossier opens from the install to the trial's end.
            outcome = updater.run(offer, window=self._window, is_locked=None if session is not None
                                  else self.update_locked, lock=session)
            marker.unlink(missing_ok=True)
            last = self.last_update
            detail = last.detail if last is not None and last.rollout_id == offer.rollout_id else None
            self.ack(command.id, "succeeded" if outcome == "succeeded" else "failed", (detail or outcome)[:512])

        self._spawn(f"update-{command.id[:8]}", work)

    def report_update(self, message: UpdateProgress) -> None:
        """The updater's ``report``: each step goes to the fleet on ``update``."""
        self.last_update = message
        self.publisher.emit(message, Channel.UPDATE)

    def resume_update(self) -> None:
        """At start: finish an update's trial (or clean an interrupted install) and answer the
        update command that caused it, whose id a real restart kept on disk."""
        assert self.updater is not None
        outcome: Outcome | None = self.updater.resume(lock=self._session())
        marker = self._config().state_dir / "update_command.json"
        if outcome is None or not marker.exists():
            return
        try:
            command_id = str(json.loads(marker.read_text())["command_id"])
        except (OSError, ValueError, KeyError):
            command_id = None
        marker.unlink(missing_ok=True)
        if command_id is not None:
            self.ack(command_id, "succeeded" if outcome == "succeeded" else "failed", outcome)

    def restart_for_update(self) -> None:
        """The updater's ``restart``: end the process (systemd starts the new slot), or go on in
        this process when the config says so or there is no service to restart."""
        config = self._config()
        if config.commands.update_restart == "in_process" or self.restart_hook is None:
            log.info("update switched slots; health check in this process")
            return
        self.publisher.drain(config.broker.shutdown_flush_s)
        self.restart_hook()
        threading.Event().wait()  # the process ends from the main thread; the trial runs after the restart


def _command_id(payload: bytes) -> str | None:
    """The id of a refused command, when one can be read safely (to answer with a rejection)."""
    try:
        raw = json.loads(payload) if len(payload) <= MAX_COMMAND_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    value = raw.get("id")
    if isinstance(value, str) and 8 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value):
        return value
    return None
