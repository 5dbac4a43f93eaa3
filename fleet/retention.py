"""Retention: thin old telemetry to one report per device and hour, drop the oldest; delete the
files of dossier documents the one-stop system holds.

Every kiosk reports its health every minute by default: 10,000 kiosks add 14 million telemetry rows
a day, and nothing used to remove any. The fleet needs them at full detail only for a few days
(alerts look back half an hour; the device page shows the latest); the periodic report counts a
device's *hours* with at least one report (its availability). So a pass, every
``retention.interval_s``:

- keeps every report of the last ``retention.telemetry_full_days``;
- before that, keeps the earliest report of each device and hour and deletes the others, which
  leaves every availability figure exactly as it was (shown in the tests);
- deletes reports older than ``retention.telemetry_keep_days`` (unset: none).

It works device by device (the ``(device_id, ts)`` index serves every statement) in short
transactions, so the ingest is never held up for long, and remembers in ``maintenance_marks`` up
to where it has thinned, so a pass reads only what aged since the last one. A pass cut short
(a crash, a stop) is simply done again: each step is idempotent.

Documents (Decree 13/2023: keep personal data no longer than needed): once every delivery
target acknowledged a document and ``retention.document_files_keep_days`` passed since the last
acknowledgement, :func:`delete_delivered_files` deletes its files from the store (the device's
PDF, the signed copy, the page images) and marks the document ``files_deleted_at``. The dossier
registry keeps every row: names, hashes, page counts. A file another document still needs (the
same page in two documents, a document not yet acknowledged everywhere) is kept. A document no
configured target takes, or one a target has not acknowledged, keeps its files.

>>> from fleet.config import RetentionConfig
>>> config = RetentionConfig()
>>> config.telemetry_full_days, config.telemetry_keep_days, config.document_files_keep_days
(7, 400, 90)
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import RetentionConfig
from fleet.db import hour_bucket
from fleet.delivery.config import DeliveryConfig
from fleet.delivery.models import Delivery
from fleet.dossiers.models import DossierDocument
from fleet.leases import Lease, next_turn
from fleet.models import Device, MaintenanceMark, Page, StoredFile, TelemetrySample
from fleet.storage import FileStorage

log = logging.getLogger(__name__)

THINNED_MARK = "telemetry_thinned_until"
DEVICES_PER_TRANSACTION = 50


@dataclass(frozen=True)
class RetentionPass:
    """What one pass removed."""

    thinned: int
    """Reports deleted because an earlier one of the same device and hour is kept."""
    dropped: int
    """Reports deleted for their age."""
    devices: int
    thinned_until: datetime | None
    """Every device's reports before this time are one per hour (None: nothing thinned yet)."""
    seconds: float


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def run_retention(sessions: sessionmaker[Session], config: RetentionConfig, now: datetime) -> RetentionPass:
    """One pass (see the module's docstring)."""
    began = time.monotonic()
    # A whole hour: an hour is thinned only once all of it is older than the full-detail window.
    cut = _floor_hour(now - timedelta(days=config.telemetry_full_days))
    drop_before = now - timedelta(days=config.telemetry_keep_days) if config.telemetry_keep_days else None
    with sessions() as session:
        mark = session.get(MaintenanceMark, THINNED_MARK)
        start = mark.at if mark is not None else None
        devices = list(session.scalars(select(Device.id).order_by(Device.id)))
    thin = start is None or start < cut
    thinned = dropped = 0
    for first in range(0, len(devices), DEVICES_PER_TRANSACTION):
        with sessions.begin() as session:
            hour = hour_bucket(TelemetrySample.ts, session.get_bind().dialect.name)
            for device_id in devices[first:first + DEVICES_PER_TRANSACTION]:
                mine = TelemetrySample.device_id == device_id
                if drop_before is not None:
                    dropped += _rowcount(session.execute(
                        delete(TelemetrySample).where(mine, TelemetrySample.ts < drop_before)
                        .execution_options(synchronize_session=False)))
                if thin:
                    window = [mine, TelemetrySample.ts < cut]
                    if start is not None:
                        window.append(TelemetrySample.ts >= start)
                    # Ids are time-ordered (UUIDv7): the smallest is the hour's earliest report.
                    keep = select(func.min(TelemetrySample.id)).where(*window).group_by(hour)
                    thinned += _rowcount(session.execute(
                        delete(TelemetrySample).where(*window, TelemetrySample.id.not_in(keep))
                        .execution_options(synchronize_session=False)))
    if thin:
        with sessions.begin() as session:
            row = session.get(MaintenanceMark, THINNED_MARK)
            if row is None:
                session.add(MaintenanceMark(name=THINNED_MARK, at=cut))
            elif row.at < cut:
                row.at = cut
    return RetentionPass(thinned, dropped, len(devices), cut if thin else start, time.monotonic() - began)


DOCUMENTS_PER_TRANSACTION = 200


@dataclass(frozen=True)
class FilesPass:
    """What one pass over delivered documents deleted."""

    documents: int
    """Documents whose files are gone now (their registry rows stay)."""
    files: int
    """Files deleted from the store."""
    kept_shared: int
    """Files kept because a document still held needs them."""


def delete_delivered_files(sessions: sessionmaker[Session], store: FileStorage, keep_days: int,
                           delivery: DeliveryConfig, now: datetime) -> FilesPass:
    """Delete the files of documents every accepting target acknowledged more than ``keep_days``
    ago (see the module's docstring). Idempotent: a pass cut short is simply done again."""
    cut = now - timedelta(days=keep_days)
    not_done = exists().where(Delivery.document_id == DossierDocument.id, Delivery.state != "acknowledged")
    last_ack = (select(func.max(Delivery.acknowledged_at)).where(Delivery.document_id == DossierDocument.id)
                .scalar_subquery())
    documents = files = kept = 0
    after = 0
    while True:
        with sessions.begin() as session:
            batch = list(session.execute(
                select(DossierDocument.id, DossierDocument.unit_code, DossierDocument.kind, DossierDocument.sha256,
                       DossierDocument.signed_sha256, DossierDocument.page_ids)
                .where(DossierDocument.files_deleted_at.is_(None), DossierDocument.id > after, ~not_done,
                       last_ack.is_not(None), last_ack < cut)
                .order_by(DossierDocument.id).limit(DOCUMENTS_PER_TRANSACTION)))
            if not batch:
                break
            after = batch[-1].id
            ids = [row.id for row in batch]
            acked: dict[int, set[str]] = {}
            for doc_id, target in session.execute(select(Delivery.document_id, Delivery.target)
                                                  .where(Delivery.document_id.in_(ids))):
                acked.setdefault(doc_id, set()).add(target)
            # Every configured target that takes the document must hold it (one added since has not).
            due = [row for row in batch
                   if all(t.name in acked.get(row.id, set()) for t in delivery.targets
                          if t.accepts(row.unit_code, row.kind))]
            if not due:
                continue
            due_ids = {row.id for row in due}
            page_ids = {str(p) for row in due for p in (row.page_ids or [])}
            page_hashes = {page_id: sha for page_id, sha in session.execute(
                select(Page.page_id, Page.sha256).where(Page.page_id.in_(sorted(page_ids))))} if page_ids else {}
            hashes = ({row.sha256 for row in due} | {row.signed_sha256 for row in due if row.signed_sha256}
                      | set(page_hashes.values()))
            needed: set[str] = set()
            for column in (DossierDocument.sha256, DossierDocument.signed_sha256):
                needed.update(session.scalars(select(column).where(
                    column.in_(sorted(hashes)), DossierDocument.files_deleted_at.is_(None),
                    DossierDocument.id.not_in(sorted(due_ids)))))
            needed.update(session.scalars(select(Page.sha256).where(
                Page.sha256.in_(sorted(hashes)), Page.page_id.not_in(sorted(page_ids)))))
            gone = hashes - needed
            kept += len(hashes & needed)
            for sha in sorted(gone):
                if store.has(sha):
                    store.delete(sha)
                    files += 1
            if gone:
                session.execute(delete(StoredFile).where(StoredFile.sha256.in_(sorted(gone)))
                                .execution_options(synchronize_session=False))
            session.execute(update(DossierDocument).where(DossierDocument.id.in_(sorted(due_ids)))
                            .values(files_deleted_at=now).execution_options(synchronize_session=False))
            documents += len(due)
    return FilesPass(documents, files, kept)


class RetentionRunner:
    """Runs :func:`run_retention` every ``interval_s`` from its own thread, or on demand
    (``run_once``). ``clock`` is the fleet's.

    >>> from fleet.db import make_engine, migrate, session_factory
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> done = RetentionRunner(RetentionConfig(), session_factory(engine)).run_once()
    >>> done.thinned, done.dropped, done.devices
    (0, 0, 0)
    """

    def __init__(self, config: RetentionConfig, sessions: sessionmaker[Session], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), store: FileStorage | None = None,
                 delivery: DeliveryConfig | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.clock = clock
        self.store = store
        self.delivery = delivery or DeliveryConfig()
        self.last: RetentionPass | None = None
        self.last_files: FilesPass | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None
        """With several fleet nodes: the thread runs passes only while this node holds it."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while next_turn(self.lease, self._stop, self.config.interval_s):
            try:
                self.run_once()
            except Exception:  # a database hiccup: the next pass does it all again, say so loudly
                log.exception("telemetry retention pass failed")

    def run_once(self) -> RetentionPass:
        with self._lock:
            done = run_retention(self.sessions, self.config, self.clock())
        self.last = done
        log.info("telemetry retention: %d reports thinned, %d dropped for age, %d devices, %.1f s",
                 done.thinned, done.dropped, done.devices, done.seconds)
        self.run_files_once()
        return done

    def run_files_once(self) -> FilesPass | None:
        """The pass over delivered documents' files (None: no store, or keeping them is configured)."""
        if self.store is None or self.config.document_files_keep_days is None:
            return None
        with self._lock:
            files = delete_delivered_files(self.sessions, self.store, self.config.document_files_keep_days,
                                           self.delivery, self.clock())
        self.last_files = files
        if files.documents:
            log.info("document retention: files of %d delivered documents deleted (%d files, %d kept for "
                     "documents still held)", files.documents, files.files, files.kept_shared)
        return files

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
