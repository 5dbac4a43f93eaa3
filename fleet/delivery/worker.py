"""The delivery worker: enqueues ready documents for each target, claims what is due, sends it,
records how it went. It runs in ``serve`` (:class:`fleet.api.services.FleetServices`) or alone
(``sohoa-fleet deliver``); several may run against one PostgreSQL database.

One pass (:meth:`DeliveryWorker.run_once`):

1. enqueue (one short transaction): a queued row per ready document and accepting target;
2. claim (one short transaction, committed before anything is sent): due rows pushed one lease
   ahead;
3. per (target, dossier): send each claimed file, record each result (its own transaction), then
   send the dossier's manifest naming every document the target holds and record the
   acknowledgements.

Killed anywhere (``kill -9``), it loses nothing: a claimed row not yet recorded is due again when
its lease runs out and is sent with the same idempotency key, which the receiver deduplicates.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from fleet.delivery import outbox
from fleet.delivery.config import DeliveryConfig
from fleet.delivery.contract import Manifest, ManifestDocument, file_name
from fleet.delivery.models import STATES
from fleet.delivery.outbox import Claimed
from fleet.delivery.targets import Sender, TargetError, sender_for
from fleet.metrics import FleetMetrics
from fleet.storage import FileStorage

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What one pass did."""

    enqueued: int = 0
    claimed: int = 0
    delivered: int = 0
    acknowledged: int = 0
    failed_attempts: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """The last error per target in this pass (for the log; reasons are in the table)."""


def build_manifest(rows: list[Claimed]) -> Manifest:
    """The manifest of one dossier for one target, from the documents it holds."""
    first = rows[0]
    return Manifest(
        dossier_code=first.dossier_code, procedure_code=first.procedure_code,
        unit_code=first.received_unit or first.unit_code,
        documents=[ManifestDocument(name=r.name, file=file_name(r.name), kind=r.kind,
                                    sha256=r.signed_sha256, size=r.signed_size, pages=r.pages,
                                    idempotency_key=r.idempotency_key, operator_kind=r.operator_kind,
                                    signing_level=r.signing_level, signing_certificate=r.signing_certificate)
                   for r in rows])


class DeliveryWorker:
    """Runs delivery passes from its own thread (``start``) or on demand (``run_once``,
    ``drain``). ``senders`` replaces the configured targets' (tests); ``clock`` is the fleet's.

    >>> from fleet.db import make_engine, migrate, session_factory
    >>> import tempfile; from pathlib import Path
    >>> from fleet.storage import FileStore
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> store = FileStore(Path(tempfile.mkdtemp()))
    >>> with DeliveryWorker(DeliveryConfig(), session_factory(engine), store) as worker:
    ...     worker.run_once().claimed
    0
    """

    def __init__(self, config: DeliveryConfig, sessions: sessionmaker[Session], store: FileStorage, *,
                 metrics: FleetMetrics | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 senders: Mapping[str, Sender] | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.senders: dict[str, Sender] = (dict(senders) if senders is not None
                                           else {t.name: sender_for(t) for t in config.targets})
        self.passes = 0
        self._lock = threading.Lock()
        self._counting = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self._thread.start()
        log.info("delivery worker for %d target(s): %s", len(self.senders), ", ".join(self.senders) or "-")

    def wake(self) -> None:
        """Run a pass now rather than at the next interval (new signed documents, an admin's retry)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                done = self.run_once()
                busy = done.claimed > 0 or done.enqueued > 0
            except Exception:  # a database hiccup: the next pass does it again, say so loudly
                log.exception("delivery pass failed")
            if not busy:
                self._wake.wait(self.config.interval_s)
                self._wake.clear()

    def run_once(self) -> PassResult:
        """One pass (see the module's docstring)."""
        with self._lock:
            result = PassResult()
            now = self.clock()
            targets = [t for t in self.config.targets if t.name in self.senders]
            with self.sessions.begin() as session:
                result.enqueued = outbox.enqueue(session, targets, now, self.config.batch_size)
            with self.sessions.begin() as session:
                claimed = outbox.claim(session, self.config, now, self.senders)
            result.claimed = len(claimed)
            groups: dict[tuple[str, str], list[Claimed]] = {}
            for item in claimed:
                groups.setdefault((item.target, item.dossier_code), []).append(item)
            if self.config.concurrency == 1 or len(groups) == 1:
                for (target, code), items in groups.items():
                    self._deliver_dossier(self.senders[target], code, items, result)
            else:
                # Dossiers in parallel (the receiver's latency, not our CPU, is what a send waits
                # on); within a dossier, files then manifest, in order.
                with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="delivery-send") as pool:
                    for done in [pool.submit(self._deliver_dossier, self.senders[target], code, items, result)
                                 for (target, code), items in groups.items()]:
                        done.result()
            self.passes += 1
            self._update_gauges()
        if result.claimed:
            log.info("delivery pass: %d claimed, %d files delivered, %d acknowledged, %d attempts failed "
                     "(%d failed for good)", result.claimed, result.delivered, result.acknowledged,
                     result.failed_attempts, result.failed)
        return result

    def _fail(self, item: Claimed, exc: TargetError, result: PassResult, *, resend_file: bool = False) -> None:
        with self.sessions.begin() as session:
            state = outbox.mark_failed_attempt(session, item, str(exc), retryable=exc.retryable, config=self.config,
                                               now=self.clock(), rng=self.rng, resend_file=resend_file)
        with self._counting:
            result.failed_attempts += 1
            result.failed += state == "failed"
            result.errors[item.target] = str(exc)
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(target=item.target, outcome="failed").inc()
        log.warning("delivery %d to %s: attempt %d failed (%s)%s", item.id, item.target, item.attempts, exc,
                    ", given up" if state == "failed" else "")

    def _deliver_dossier(self, sender: Sender, code: str, items: list[Claimed], result: PassResult) -> None:
        owed_manifest = [i for i in items if i.state == "delivered"]
        for item in items:
            if item.state != "sending":
                continue
            try:
                receipt = sender.send_document(code, item.name, item.idempotency_key, item.signed_sha256,
                                               self.store.path(item.signed_sha256))
            except TargetError as exc:
                self._fail(item, exc, result)
                continue
            with self.sessions.begin() as session:
                if outbox.mark_delivered(session, item, receipt.receipt, self.clock()):
                    owed_manifest.append(item)
                    with self._counting:
                        result.delivered += 1
            if self.metrics is not None:
                self.metrics.delivery_attempts.labels(target=sender.name, outcome="delivered").inc()
        if not owed_manifest:
            return
        with self.sessions() as session:
            held = outbox.manifest_rows(session, code, sender.name)
        if not held:  # every one of them cancelled meanwhile
            return
        try:
            answer = sender.send_manifest(build_manifest(held))
        except TargetError as exc:
            for item in owed_manifest:
                self._fail(_as_delivered(item), exc, result)
            return
        acks = {a.idempotency_key: a.receipt for a in answer.acknowledged}
        with self.sessions.begin() as session:
            acknowledged = outbox.mark_acknowledged(session, sender.name, acks, self.clock())
        with self._counting:
            result.acknowledged += acknowledged
        missing = set(answer.missing)
        for item in owed_manifest:
            if item.idempotency_key in acks:
                continue
            reason = ("receiver has not got the file" if item.name in missing
                      else "manifest not acknowledged for this document")
            self._fail(_as_delivered(item), TargetError(reason, retryable=True), result, resend_file=True)

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        with self.sessions() as session:
            counts = outbox.backlog(session, self.senders)
        for target, backlog in counts.items():
            for state in STATES:
                self.metrics.deliveries.labels(target=target, state=state).set(backlog.by_state.get(state, 0))

    def drain(self, timeout_s: float, *, idle_passes: int = 1) -> bool:
        """Run passes until nothing is due or under way (True), or ``timeout_s`` passed (False).
        Rows waiting for their backoff count as under way: this waits for them too."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = self.run_once()
            if done.claimed == 0 and done.enqueued == 0:
                with self.sessions() as session:
                    counts = outbox.backlog(session, self.senders)
                if all(b.backlog == 0 for b in counts.values()):
                    return True
                self._wake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        for sender in self.senders.values():
            sender.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _as_delivered(item: Claimed) -> Claimed:
    """The claimed row as it stands once its file reached the target (only the manifest owed)."""
    if item.state == "delivered":
        return item
    from dataclasses import replace

    return replace(item, state="delivered")
