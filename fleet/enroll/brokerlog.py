"""The broker's ACL refusals in the fleet's audit log.

mosquitto logs every denied PUBLISH and every SUBSCRIBE (it grants a subscription outside the
client's ACL, then delivers nothing: the log line is the only trace);
:func:`provisioning.broker.scan_log` picks out a device's attempts outside its own
``sohoa/v1/<id>/``. With ``pki.broker_log_file`` set, the fleet reads what the broker appended
since its last look, every ``pki.broker_log_scan_s``, and records each attempt as
``broker.publish_denied`` / ``broker.subscribe_denied`` (actor: the device, target: the topic,
unit: the device's), so an admin finds it in ``GET /api/v1/audit``. It starts at the end of the
file: attempts from before the fleet started are in the broker's log only. A log rotated (shorter
than where it was read to) is read from its start.

>>> import tempfile, pathlib
>>> log = pathlib.Path(tempfile.mkdtemp()) / "mosquitto.log"
>>> _ = log.write_text("1: old line\\n")
>>> watch = BrokerLogWatch(log)
>>> denied = "2: Denied PUBLISH from kiosk-a (d0, q1, r0, m1, 'sohoa/v1/kiosk-b/event', ... (3 bytes))"
>>> _ = log.open("a").write(denied + "\\n2: half")
>>> [(v.client, v.action, v.topic) for v in watch.new_violations()]
[('kiosk-a', 'publish', 'sohoa/v1/kiosk-b/event')]
>>> watch.new_violations()
[]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fleet.auth.models import AuditEntry
from fleet.leases import Lease
from fleet.models import Device
from provisioning.broker import AclViolation, scan_log

log = logging.getLogger(__name__)

_MAX_READ = 4 * 1024 * 1024  # one look reads at most this much (a flood of lines waits for the next)


class BrokerLogWatch:
    """New lines of the broker's log since the last call, as ACL violations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_violations(self) -> list[AclViolation]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # rotated or truncated
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read(min(size - self.offset, _MAX_READ))
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # no complete line yet
        self.offset += end + 1
        return scan_log(chunk[: end + 1].decode("utf-8", errors="replace").splitlines())


def record_violations(sessions: sessionmaker[Session], clock: Callable[[], datetime],
                      violations: list[AclViolation]) -> None:
    """One audit entry per attempt."""
    if not violations:
        return
    with sessions.begin() as session:
        for v in violations:
            device = session.get(Device, v.client)
            session.add(AuditEntry(at=clock(), actor=v.client[:128], actor_kind="device",
                                   action=f"broker.{v.action}_denied", target=v.topic[:500],
                                   unit_code=device.unit_code if device is not None else None,
                                   outcome="refused", detail="outside its own topics (broker ACL)"))
    log.warning("broker refused %d attempt(s) outside a device's own topics: %s", len(violations),
                ", ".join(sorted({f"{v.client} {v.action}" for v in violations})))


class BrokerLogAudit:
    """Looks at the broker's log every ``interval_s`` (an asyncio task of the app's event loop)
    and records what it finds with :func:`record_violations`. ``start`` inside a running loop,
    ``stop`` when done; the fleet's services do both.

    >>> import asyncio, tempfile, pathlib
    >>> from fleet.db import make_engine, migrate, session_factory
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> audit = BrokerLogAudit(pathlib.Path(tempfile.mkdtemp()) / "none.log", session_factory(engine), 60)
    >>> async def run() -> bool:
    ...     audit.start()
    ...     running = audit.running
    ...     await audit.stop()
    ...     return running and not audit.running
    >>> asyncio.run(run())
    True
    """

    def __init__(self, path: Path, sessions: sessionmaker[Session], interval_s: float, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.watch = BrokerLogWatch(path)
        self.sessions = sessions
        self.interval_s = interval_s
        self.clock = clock or _utcnow
        self._task: asyncio.Task[None] | None = None
        self.lease: Lease | None = None
        """With several fleet nodes reading one broker log: only the holder records what it reads."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="broker-log-audit")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        pending: list[AclViolation] = []  # read from the log but not yet in the audit log
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                pending += await run_in_threadpool(self.watch.new_violations)
                if self.lease is not None and not self.lease.held():
                    pending = []  # the node holding the lease records them
                    continue
                await run_in_threadpool(record_violations, self.sessions, self.clock, pending)
                pending = []
            except Exception:  # an unreadable log or a database hiccup: the next look tries again, loudly
                log.exception("could not read the broker's log for ACL refusals (%d kept for the next look)",
                              len(pending))


def _utcnow() -> datetime:
    return datetime.now(UTC)
