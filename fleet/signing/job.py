"""The signing job: every closed document whose file the fleet holds and that is not signed yet
gets signed, its signed copy stored (by its own sha256) and the document's row updated. A
document is ready for delivery exactly when ``signed_sha256`` is set.

One document at a time, each in its own short transaction, in id order:

A walk-in's documents wait for its code: a document is signed with the name the fleet keeps for
it (:class:`fleet.signing.signer.FleetName`), and a walk-in has none until an admin names it
(naming it unsigns a copy signed before; see :func:`fleet.dossiers.registry.name_walk_in`).

1. read the device's file from the store (not there yet: skipped, the upload comes later);
2. sign it (:class:`fleet.signing.signer.Signer`);
3. record the signed copy in the store's table (``files``, uploaded by :data:`SIGNER`) before it
   is written, so that a kill cannot leave a file nobody knows of;
4. store the signed copy (fsynced, atomic: :mod:`fleet.storage`);
5. record it on the document's row, only if the row is still unsigned (``signed_sha256 IS NULL``).

A kill between 3 and 5 leaves a recorded signed copy (perhaps not written) that no document names
and an unsigned row, which the next pass signs again; the job forgets such copies (file and row)
once they are :data:`SWEEP_AFTER` old, at its first pass and hourly. A kill after 5 re-signs
nothing. A document that fails (not a PDF, no key for
its unit) keeps the reason in ``signing_error`` and the pass goes on with the next; a failure of
the key source itself (token missing, wrong PIN, time-stamp authority down) ends the pass, since
every other document would fail the same way, and the next pass tries again. A document that
cannot be signed as it is (not a PDF, no key for its unit) is not tried again by this process:
a restart with a new config tries it again.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.signing.config import SigningConfig
>>> import tempfile
>>> from pathlib import Path
>>> from fleet.storage import FileStore
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> job = SigningJob(Signer(SigningConfig()), session_factory(engine), FileStore(Path(tempfile.mkdtemp())))
>>> job.run_once()
SigningPass(signed=0, failed=0, waiting=0, stopped=None)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet.db import insert_ignore
from fleet.dossiers import codes
from fleet.dossiers.models import DossierDocument
from fleet.leases import Lease
from fleet.models import StoredFile
from fleet.signing.signer import (
    FleetName,
    NoKeyForUnit,
    NotAPdf,
    SecretMissing,
    Signer,
    SigningError,
    SigningNotConfigured,
    TimestampFailed,
    TokenFailed,
    TokenMissing,
    WrongPin,
)
from fleet.storage import FileStorage

log = logging.getLogger(__name__)

BATCH = 200
"""Unsigned document ids read at once."""

SOURCE_FAILURES = (SigningNotConfigured, SecretMissing, TokenMissing, WrongPin, TokenFailed, TimestampFailed)
"""Failures of the key source, not of one document: the pass stops at the first."""

MAX_ERROR = 500

SIGNER = "fleet.signing"
"""``files.uploaded_by`` of the signed copies the job stores."""

SWEEP_AFTER = timedelta(minutes=10)
"""A signed copy no document names is forgotten once this old (a pass in progress on a node that
just lost its lease may still be about to name its copy)."""

SWEEP_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class SigningPass:
    """What one pass did."""

    signed: int
    failed: int
    waiting: int
    """Unsigned documents whose file is not in the store yet."""
    stopped: str | None
    """Why the pass ended early (a key-source failure), or None."""


def to_sign() -> ColumnElement[bool]:
    """A document the job signs: not signed yet, and named (not a walk-in waiting for its code)."""
    return and_(DossierDocument.signed_sha256.is_(None),
                ~DossierDocument.dossier_code.startswith(codes.WALK_IN_PREFIX, autoescape=True))


def unsigned_backlog(sessions: sessionmaker[Session]) -> int:
    """Documents not signed yet that the job will sign (what delivery waits for)."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(DossierDocument).where(to_sign())) or 0)


class SigningJob:
    """Signs the backlog every ``interval_s`` from its own thread, or on demand (``run_once``).

    ``on_pass`` is called after each pass with the pass and the backlog left (the ``/metrics``
    gauge)."""

    def __init__(self, signer: Signer, sessions: sessionmaker[Session], store: FileStorage, *,
                 interval_s: float = 30.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_pass: Callable[[SigningPass, int], None] | None = None) -> None:
        self.signer = signer
        self.sessions = sessions
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self.on_pass = on_pass
        self.last: SigningPass | None = None
        self.passes = 0
        self._passed = threading.Condition()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._given_up: set[int] = set()
        self._swept_at: datetime | None = None
        self.lease: Lease | None = None
        """With several fleet nodes: passes run only on the node holding it."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="signing", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a pass now rather than at the end of the interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.lease is None or self.lease.held():
                try:
                    self.run_once()
                except Exception:  # a database hiccup: the next pass does it all again, say so loudly
                    log.exception("signing pass failed")
            self._wait()

    def _wait(self) -> None:
        """Until the interval is over, a wake, or (with several fleet nodes) this node just took
        the lease over from one that stopped."""
        deadline = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, 1.0)):
                break
            if self.lease is not None and self.lease.take_gain():
                break
        self._wake.clear()

    def run_once(self) -> SigningPass:
        with self._lock:
            done = self._pass()
        self.last = done
        if done.signed or done.failed or done.stopped:
            log.info("signing: %d signed, %d failed, %d waiting for their file%s", done.signed, done.failed,
                     done.waiting, f"; stopped: {done.stopped}" if done.stopped else "")
        if self.on_pass is not None:
            self.on_pass(done, unsigned_backlog(self.sessions))
        with self._passed:
            self.passes += 1
            self._passed.notify_all()
        return done

    def wait_passes(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` passes have ended since this job was made; False on timeout."""
        with self._passed:
            return self._passed.wait_for(lambda: self.passes >= count, timeout)

    def sweep(self) -> int:
        """Forget the signed copies (row and file) that no document names and that are older
        than :data:`SWEEP_AFTER`: what a kill between storing a copy and naming it left. Returns
        how many."""
        now = self.clock()
        named = exists().where(DossierDocument.signed_sha256 == StoredFile.sha256)
        with self.sessions.begin() as session:
            stale = list(session.scalars(select(StoredFile.sha256).where(
                StoredFile.uploaded_by == SIGNER, StoredFile.stored_at < now - SWEEP_AFTER, ~named)))
            for sha256 in stale:
                self.store.delete(sha256)
            if stale:
                session.execute(delete(StoredFile).where(StoredFile.sha256.in_(stale))
                                .execution_options(synchronize_session=False))
        self._swept_at = now
        if stale:
            log.info("signing: %d signed copy(ies) left unnamed by an interrupted pass forgotten", len(stale))
        return len(stale)

    def _pass(self) -> SigningPass:
        if self._swept_at is None or self.clock() - self._swept_at >= SWEEP_EVERY:
            self.sweep()
        signed = failed = waiting = 0
        after = 0
        while not self._stop.is_set():
            with self.sessions() as session:
                batch = list(session.execute(
                    select(DossierDocument.id, DossierDocument.sha256, DossierDocument.unit_code,
                           DossierDocument.dossier_code, DossierDocument.kind, DossierDocument.sequence,
                           DossierDocument.doctype)
                    .where(to_sign(), DossierDocument.id > after)
                    .order_by(DossierDocument.id).limit(BATCH)))
            if not batch:
                break
            for doc_id, sha256, unit_code, code, kind, sequence, doctype in batch:
                after = doc_id
                if self._stop.is_set():
                    break
                if doc_id in self._given_up:
                    continue
                if not self.store.has(sha256):
                    waiting += 1
                    continue
                try:
                    self._sign_one(doc_id, sha256, unit_code, FleetName.of(code, kind, sequence, doctype))
                    signed += 1
                except SOURCE_FAILURES as exc:
                    self._failed(doc_id, exc)
                    return SigningPass(signed, failed + 1, waiting, str(exc))
                except (NoKeyForUnit, NotAPdf) as exc:
                    self._failed(doc_id, exc)
                    self._given_up.add(doc_id)
                    failed += 1
                except (SigningError, OSError) as exc:
                    self._failed(doc_id, exc)
                    failed += 1
                except (SQLAlchemyError, MemoryError):
                    raise  # the database or the process: the pass ends, the next one starts over
                except Exception as exc:  # a fault this document brings out: it must not hold up the others
                    log.exception("document %d: unexpected failure while signing", doc_id)
                    self._failed(doc_id, exc)
                    self._given_up.add(doc_id)
                    failed += 1
        return SigningPass(signed, failed, waiting, None)

    def _sign_one(self, doc_id: int, sha256: str, unit_code: str | None, name: FleetName) -> None:
        data = self.store.path(sha256).read_bytes()
        result = self.signer.sign(data, unit_code, name)
        now = self.clock()
        with self.sessions.begin() as session:
            session.execute(insert_ignore(session.get_bind().dialect.name, StoredFile.__table__), [
                {"sha256": result.sha256, "size": len(result.data), "content_type": "application/pdf",
                 "stored_at": now, "uploaded_by": SIGNER}])
        self.store.put_bytes(result.sha256, result.data)
        with self.sessions.begin() as session:
            update_result = session.execute(
                update(DossierDocument)
                .where(DossierDocument.id == doc_id, DossierDocument.signed_sha256.is_(None))
                .values(signed_sha256=result.sha256, signed_size=len(result.data), signed_at=now,
                        signing_level=result.level, signing_certificate=result.certificate_pem, signing_error=None)
                .execution_options(synchronize_session=False))
        if not getattr(update_result, "rowcount", 1):  # signed meanwhile by another pass: this copy is nobody's
            with self.sessions.begin() as session:
                session.execute(delete(StoredFile).where(StoredFile.sha256 == result.sha256,
                                                         StoredFile.uploaded_by == SIGNER)
                                .execution_options(synchronize_session=False))
            self.store.delete(result.sha256)

    def _failed(self, doc_id: int, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, SigningError) else f"{type(exc).__name__}: {exc}"
        # No dossier code or file name in the log: the id is enough for the admin to find it.
        level = logging.INFO if isinstance(exc, NoKeyForUnit | NotAPdf) else logging.WARNING
        log.log(level, "document %d not signed: %s", doc_id, reason)
        with self.sessions.begin() as session:
            session.execute(update(DossierDocument)
                            .where(DossierDocument.id == doc_id, DossierDocument.signed_sha256.is_(None))
                            .values(signing_error=reason[:MAX_ERROR])
                            .execution_options(synchronize_session=False))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        self.signer.close()


