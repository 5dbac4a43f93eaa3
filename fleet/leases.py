"""Jobs that must run on one fleet node at a time, whichever nodes share the database.

Several ``sohoa-fleet serve`` processes on one database serve the same API and share the ingest
(MQTT shared subscription), but a background job (alert evaluation, telemetry retention, the CRL
timer, the operations driver, the broker-log audit, and any job added later) must run on exactly
one of them: two alert evaluators would race to open the same alert, two drivers would publish
every command twice. Each such job holds a *lease*: a row of ``job_leases`` naming the node that
holds it and until when, by the database's clock (nodes' clocks may differ; the database has one).

One :class:`LeaseKeeper` per node renews what it holds every ``ttl_s / 3`` and takes any lease
whose holder let it expire (a node killed, hung or cut off from the database): a dead node's jobs
move to a live one within ``ttl_s + ttl_s / 3`` (40 s with the default 30 s). A node that cannot
renew stops believing it holds a lease ``ttl_s`` after its last renewal, before anyone else may
take it. A clean stop releases at once, so the other node takes over on its next round.

A job asks its :class:`Lease` before each pass (:meth:`Lease.held`) or waits for its turn
(:meth:`Lease.wait_turn`: the interval has passed and it holds the lease, or it has just gained
it, so a job taken over mid-pass is redone at once, not an interval later). A pass is short next
to ``ttl_s``; passes must be safe to repeat (a node that stalls for longer than ``ttl_s`` in the
middle of one may overlap with its successor once).

Works on SQLite as on PostgreSQL (a single SQLite node simply always holds every lease).

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> keeper = LeaseKeeper(session_factory(engine), node="node-a", ttl_s=30)
>>> alerts = keeper.lease("alerts")
>>> keeper.renew_all(); alerts.held()
True
>>> other = LeaseKeeper(session_factory(engine), node="node-b", ttl_s=30)
>>> theirs = other.lease("alerts"); other.renew_all(); theirs.held()
False
>>> keeper.release_all(); other.renew_all(); theirs.held()
True
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Float, String, case, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from fleet.db import bulk_insert
from fleet.models import Base

log = logging.getLogger(__name__)


class JobLease(Base):
    """Who runs a singleton job now, and until when (seconds since the epoch, database clock)."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)
    acquired_at: Mapped[float] = mapped_column(Float)


_DB_NOW = {
    "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
}


def default_node_id() -> str:
    """``host-pid-random``: unique per process, readable in ``job_leases``."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def database_now(session: Session) -> float:
    """Seconds since the epoch by the database's clock."""
    return float(session.execute(text(_DB_NOW[session.get_bind().dialect.name])).scalar_one())


def try_take(session: Session, name: str, node: str, ttl_s: float) -> bool:
    """Take or renew lease ``name`` for ``node`` in the caller's transaction: True when ``node``
    holds it until ``now + ttl_s`` (it held it, or its holder let it expire, or nobody had it)."""
    now = database_now(session)
    renewed = session.execute(
        update(JobLease)
        .where(JobLease.name == name, (JobLease.holder == node) | (JobLease.expires_at < now))
        .values(holder=node, expires_at=now + ttl_s,
                acquired_at=case((JobLease.holder == node, JobLease.acquired_at), else_=now))
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount:  # type: ignore[attr-defined]
        return True
    row = {"name": name, "holder": node, "expires_at": now + ttl_s, "acquired_at": now}
    return bulk_insert(session.connection(), JobLease.__table__, [row]) == 1


def release(session: Session, name: str, node: str) -> None:
    """Give lease ``name`` up if ``node`` holds it (a clean stop: the next node need not wait)."""
    session.execute(update(JobLease).where(JobLease.name == name, JobLease.holder == node)
                    .values(expires_at=0.0).execution_options(synchronize_session=False))


def holders(session: Session) -> dict[str, tuple[str, float]]:
    """Every lease: name -> (holder, expires_at)."""
    return {row.name: (row.holder, row.expires_at) for row in session.scalars(select(JobLease))}


class Lease:
    """One job's lease on this node; made by :meth:`LeaseKeeper.lease`."""

    def __init__(self, name: str, ttl_s: float) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self._until = 0.0  # monotonic: believed held until then
        self._gained = False
        self._changed = threading.Condition()

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, held={self.held()})"

    def held(self) -> bool:
        """This node holds the lease now (renewed within ``ttl_s``)."""
        return time.monotonic() < self._until

    def _renewed(self, held: bool, at: float, *, announce: bool = True) -> bool:
        """Record a renewal round's outcome; True when the lease was just gained (and, with
        ``announce``, the job's next :meth:`wait_turn` or :meth:`take_gain` says so)."""
        with self._changed:
            was = self.held()
            self._until = at + self.ttl_s if held else 0.0
            gained = held and not was
            if gained and announce:
                self._gained = True
                self._changed.notify_all()
            return gained

    def take_gain(self) -> bool:
        """True once after this node gained the lease from another (or from nobody, after start):
        the job should run a pass now rather than at its next interval."""
        with self._changed:
            gained, self._gained = self._gained, False
            return gained

    def wait_turn(self, stop: threading.Event, interval_s: float) -> bool:
        """Wait for this job's next pass on this node: ``interval_s`` has passed and the lease is
        held, or the lease has just been gained (the pass starts at once). False once ``stop`` is set.

        >>> lease = Lease("x", ttl_s=30); lease._renewed(True, time.monotonic())
        True
        >>> lease.wait_turn(threading.Event(), 3600)  # just gained: no waiting
        True
        """
        deadline = time.monotonic() + interval_s
        with self._changed:
            while not stop.is_set():
                if self._gained:
                    self._gained = False
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    if self.held():
                        return True
                    deadline = time.monotonic() + interval_s  # not ours: wait for a gain or the next turn
                    continue
                self._changed.wait(min(left, 0.5))  # short, so that ``stop`` is seen promptly
        return False


def next_turn(lease: Lease | None, stop: threading.Event, interval_s: float) -> bool:
    """A job thread's wait before its next pass: ``interval_s``, and with a lease also holding it
    (or no wait at all right after gaining it). False once ``stop`` is set.

    >>> next_turn(None, threading.Event(), 0.01)
    True
    """
    if lease is None:
        return not stop.wait(interval_s)
    return lease.wait_turn(stop, interval_s)


class LeaseKeeper:
    """Renews this node's leases from one thread; see the module docstring.

    ``start()`` runs one round before returning, so a single node holds its leases when its jobs
    start; ``stop()`` releases them.
    """

    def __init__(self, sessions: sessionmaker[Session], *, node: str | None = None, ttl_s: float = 30.0,
                 on_change: Callable[[str, bool], None] | None = None) -> None:
        self.sessions = sessions
        self.node = node or default_node_id()
        self.ttl_s = ttl_s
        self.on_change = on_change
        self._leases: dict[str, Lease] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def lease(self, name: str) -> Lease:
        """The lease of job ``name`` on this node (made on first use, renewed from then on)."""
        with self._lock:
            if name not in self._leases:
                self._leases[name] = Lease(name, self.ttl_s)
            return self._leases[name]

    def renew_all(self, *, first: bool = False) -> None:
        """One round: renew or take every lease (tests call it directly). ``first``: the round at
        start, whose gains are not announced (the jobs start on their own schedule anyway)."""
        with self._lock:
            leases = list(self._leases.values())
        started = time.monotonic()
        try:
            with self.sessions.begin() as session:
                outcome = {lease.name: try_take(session, lease.name, self.node, self.ttl_s) for lease in leases}
        except DBAPIError as exc:
            log.warning("cannot renew job leases (%s): this node's jobs pause when they expire", type(exc).__name__)
            return
        for lease in leases:
            was = lease.held()
            gained = lease._renewed(outcome[lease.name], started, announce=not first)
            if gained:
                log.info("node %s now runs %s", self.node, lease.name)
            elif was and not outcome[lease.name]:
                log.warning("node %s lost the lease of %s to another node", self.node, lease.name)
            if self.on_change is not None and was != lease.held():
                self.on_change(lease.name, lease.held())

    def release_all(self) -> None:
        with self._lock:
            leases = list(self._leases.values())
        try:
            with self.sessions.begin() as session:
                for lease in leases:
                    if lease.held():
                        release(session, lease.name, self.node)
        except DBAPIError as exc:
            log.warning("cannot release job leases (%s): they expire in %.0f s", type(exc).__name__, self.ttl_s)
        for lease in leases:
            lease._renewed(False, time.monotonic())

    def start(self) -> None:
        self.renew_all(first=True)
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew_all()
            except Exception:  # keep renewing: a bug here would silently stop every job
                log.exception("lease renewal failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.release_all()
