"""The delivery outbox's statements: enqueue what is ready, claim what is due, record how an
attempt went, retry or cancel by hand, count the backlog. The states and their diagram are in
:mod:`fleet.delivery.models`; the worker (:mod:`fleet.delivery.worker`) drives these.

A document is ready exactly when it has a signed copy (``signed_sha256``) and its files are
still held. Each statement is short and idempotent: a crash between two of them loses nothing
(a claimed row comes back when its lease runs out) and a repeat doubles nothing (one row per
document and target, the receiver deduplicates by idempotency key).

>>> import random
>>> cfg = DeliveryConfig(backoff_s=10, backoff_max_s=60)
>>> [round(backoff_s(n, cfg, random.Random(1)), 1) for n in (1, 2, 3, 4, 9)]
[5.7, 11.3, 22.7, 34.0, 34.0]
"""

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from fleet.db import bulk_insert
from fleet.delivery.config import DeliveryConfig, FolderTarget, HttpTarget
from fleet.delivery.contract import document_key
from fleet.delivery.models import STATES, WAITING, Delivery
from fleet.dossiers import codes
from fleet.dossiers.models import Dossier, DossierDocument
from fleet.errors import FleetError, NotFound
from fleet.models import MaintenanceMark

ERROR_CHARS = 300


class DeliveryConflict(FleetError, ValueError):
    """A delivery cannot change that way (e.g. retrying one already acknowledged)."""


def backoff_s(attempts: int, config: DeliveryConfig, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: doubling from ``backoff_s``, capped
    at ``backoff_max_s``, then scaled by a random factor in [0.5, 1) so that many documents that
    failed together (a receiver down) do not all come back in the same second."""
    base = min(config.backoff_max_s, config.backoff_s * 2.0 ** min(max(attempts - 1, 0), 30))
    return base * (0.5 + rng.random() / 2)


def _unit_filter(target: HttpTarget | FolderTarget) -> ColumnElement[bool] | None:
    if target.units is None:
        return None
    exact = [u for u in target.units if not u.endswith("*")]
    prefixes = [u[:-1] for u in target.units if u.endswith("*")]
    terms: list[ColumnElement[bool]] = []
    if exact:
        terms.append(DossierDocument.unit_code.in_(exact))
    terms += [DossierDocument.unit_code.startswith(p, autoescape=True) for p in prefixes]
    return or_(*terms)


def ready() -> ColumnElement[bool]:
    """A document ready for delivery: signed, its files not deleted by retention, and named (a
    walk-in's documents wait for its code: the one-stop system knows dossiers by code)."""
    return and_(DossierDocument.signed_sha256.is_not(None), DossierDocument.files_deleted_at.is_(None),
                ~DossierDocument.dossier_code.startswith(codes.WALK_IN_PREFIX, autoescape=True))


ENQUEUE_SLACK = timedelta(minutes=10)
"""How far before its last complete pass a target looks again: covers a document signed by
another fleet process whose clock is a little behind, or committed just after the pass read."""


def _mark_name(target: HttpTarget | FolderTarget) -> str:
    """The maintenance mark of a target's enqueue window. Its filter is part of the name: a
    widened filter starts a new mark, so documents it now takes are found from the beginning."""
    digest = hashlib.sha256(json.dumps([target.units, target.kinds]).encode()).hexdigest()[:12]
    return f"delivery_enqueued:{target.name}:{digest}"


def enqueue(session: Session, targets: Sequence[HttpTarget | FolderTarget], now: datetime, limit: int) -> int:
    """Add a queued delivery for each ready document a target accepts and has none for yet, at
    most ``limit`` per target. Returns how many were added (a concurrent pass adding the same row
    first is not an error: the unique (document, target) keeps one).

    Each target remembers (``maintenance_marks``) when its last complete pass (one that found
    fewer than ``limit``) began; the next looks only at documents signed since then, less
    :data:`ENQUEUE_SLACK`, so an idle pass reads the last minutes' documents, not every
    document ever signed. A target without a mark (new, or its filter changed) looks at all."""
    added = 0
    for target in targets:
        mark = session.get(MaintenanceMark, _mark_name(target))
        has_one = exists().where(Delivery.document_id == DossierDocument.id, Delivery.target == target.name)
        query = (select(DossierDocument.id, DossierDocument.dossier_code, DossierDocument.name,
                        DossierDocument.signed_sha256, DossierDocument.unit_code)
                 .where(ready(), DossierDocument.kind.in_(target.kinds), ~has_one)
                 .order_by(DossierDocument.id).limit(limit))
        if mark is not None:
            query = query.where(or_(DossierDocument.signed_at >= mark.at - ENQUEUE_SLACK,
                                    DossierDocument.signed_at.is_(None)))
        units = _unit_filter(target)
        if units is not None:
            query = query.where(units)
        rows = [{"document_id": doc_id, "target": target.name, "dossier_code": code, "unit_code": unit,
                 "idempotency_key": document_key(code, name, signed or ""), "state": "queued", "attempts": 0,
                 "next_attempt_at": now, "created_at": now, "updated_at": now}
                for doc_id, code, name, signed, unit in session.execute(query)]
        added += bulk_insert(session.connection(), Delivery.__table__, rows)
        if len(rows) < limit:  # every ready document up to now is queued: the window may move
            if mark is None:
                session.add(MaintenanceMark(name=_mark_name(target), at=now))
            elif mark.at < now:
                mark.at = now
    return added


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt, with what its target needs to send it."""

    id: int
    target: str
    state: str
    """``sending``: the file is to be sent; ``delivered``: only the manifest is still owed."""
    attempts: int
    dossier_code: str
    idempotency_key: str
    name: str
    kind: str
    pages: int
    signed_sha256: str
    signed_size: int
    operator_kind: str | None
    signing_level: str | None
    signing_certificate: str | None
    unit_code: str | None
    procedure_code: str | None
    received_unit: str | None


_CLAIM_COLUMNS = (Delivery.id, Delivery.target, Delivery.state, Delivery.attempts, Delivery.dossier_code,
                  Delivery.idempotency_key, DossierDocument.name, DossierDocument.kind, DossierDocument.pages,
                  DossierDocument.signed_sha256, DossierDocument.signed_size, DossierDocument.operator_kind,
                  DossierDocument.signing_level, DossierDocument.signing_certificate, DossierDocument.unit_code,
                  Dossier.procedure_code, Dossier.received_unit)


def _claimed(row: Any, state: str, attempts: int) -> Claimed:
    values = dict(row._mapping)
    values.update(state=state, attempts=attempts, signed_sha256=values["signed_sha256"] or "",
                  signed_size=values["signed_size"] or 0)
    return Claimed(**values)


def claim(session: Session, config: DeliveryConfig, now: datetime, targets: Iterable[str]) -> list[Claimed]:
    """Take up to ``batch_size`` due deliveries of ``targets`` for one attempt: each is pushed one
    lease ahead (so no other worker takes it meanwhile, and a worker killed here leaves it due
    again later) and its attempt counted. Whole dossiers are not guaranteed: the manifest is built
    from the table, not from the batch. Commit before sending."""
    names = list(targets)
    if not names:
        return []
    due = (select(*_CLAIM_COLUMNS)
           .join(DossierDocument, DossierDocument.id == Delivery.document_id)
           .outerjoin(Dossier, Dossier.code == Delivery.dossier_code)
           .where(Delivery.state.in_(WAITING), Delivery.next_attempt_at <= now, Delivery.target.in_(names))
           .order_by(Delivery.next_attempt_at, Delivery.id).limit(config.batch_size))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=Delivery, skip_locked=True)  # several fleet processes share the outbox
    rows = list(session.execute(due))
    lease_end = now + timedelta(seconds=config.lease_s)
    claimed: list[Claimed] = []
    for row in rows:
        # A row left 'sending' by a dead worker is sent again, file first.
        state = "delivered" if row.state == "delivered" else "sending"
        taken = session.execute(
            update(Delivery).where(Delivery.id == row.id, Delivery.state == row.state,
                                   Delivery.next_attempt_at <= now)
            .values(state=state, attempts=Delivery.attempts + 1, next_attempt_at=lease_end, updated_at=now)
            .execution_options(synchronize_session=False))
        if getattr(taken, "rowcount", 0) == 1:  # another worker took it between the read and here
            claimed.append(_claimed(row, state, row.attempts + 1))
    return claimed


def mark_delivered(session: Session, item: Claimed, receipt: str | None, now: datetime) -> bool:
    """The file reached the target; the manifest is still owed (due at once). False when the row
    changed meanwhile (cancelled by an admin)."""
    result = session.execute(
        update(Delivery).where(Delivery.id == item.id, Delivery.state == "sending")
        .values(state="delivered", receipt=receipt, delivered_at=now, next_attempt_at=now, last_error=None,
                updated_at=now).execution_options(synchronize_session=False))
    return getattr(result, "rowcount", 0) == 1


def manifest_rows(session: Session, dossier_code: str, target: str) -> list[Claimed]:
    """Every document of ``dossier_code`` whose file ``target`` holds (delivered or acknowledged):
    what the dossier's manifest names."""
    query = (select(*_CLAIM_COLUMNS)
             .join(DossierDocument, DossierDocument.id == Delivery.document_id)
             .outerjoin(Dossier, Dossier.code == Delivery.dossier_code)
             .where(Delivery.dossier_code == dossier_code, Delivery.target == target,
                    Delivery.state.in_(("delivered", "acknowledged")))
             .order_by(DossierDocument.kind, DossierDocument.name))
    return [_claimed(row, row.state, row.attempts) for row in session.execute(query)]


def mark_acknowledged(session: Session, target: str, receipts: Mapping[str, str | None], now: datetime) -> int:
    """The target acknowledged these idempotency keys (key → receipt). Only rows still
    ``delivered`` change: an acknowledgement that comes twice counts once."""
    done = 0
    for key, receipt in receipts.items():
        values: dict[str, Any] = {"state": "acknowledged", "acknowledged_at": now, "last_error": None,
                                  "updated_at": now}
        if receipt is not None:
            values["receipt"] = receipt
        result = session.execute(
            update(Delivery).where(Delivery.target == target, Delivery.idempotency_key == key,
                                   Delivery.state == "delivered")
            .values(**values).execution_options(synchronize_session=False))
        done += getattr(result, "rowcount", 0)
    return done


def mark_failed_attempt(session: Session, item: Claimed, reason: str, *, retryable: bool, config: DeliveryConfig,
                        now: datetime, rng: random.Random, resend_file: bool = False) -> str:
    """Record a failed attempt: back to where it was (``queued`` for the file, ``delivered`` for
    the manifest; ``resend_file`` when the receiver says the file is missing) after a backoff, or
    ``failed`` for good when the error is permanent or the attempts are spent. Returns the new state."""
    reason = reason[:ERROR_CHARS]
    if not retryable or item.attempts >= config.max_attempts:
        state, when = "failed", now
    else:
        state = "queued" if item.state == "sending" or resend_file else "delivered"
        when = now + timedelta(seconds=backoff_s(item.attempts, config, rng))
    session.execute(
        update(Delivery).where(Delivery.id == item.id, Delivery.state == item.state)
        .values(state=state, next_attempt_at=when, last_error=reason, updated_at=now)
        .execution_options(synchronize_session=False))
    return state


def retry(session: Session, delivery_id: int, now: datetime) -> Delivery:
    """An admin sends a failed or cancelled delivery again now, with a fresh count of attempts
    (the same idempotency key: if it did arrive after all, nothing is filed twice)."""
    row = session.get(Delivery, delivery_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    if row.state not in ("failed", "cancelled"):
        raise DeliveryConflict(f"delivery {delivery_id} is {row.state}: only a failed or cancelled one is retried")
    row.state = "delivered" if row.delivered_at is not None and row.acknowledged_at is None else "queued"
    row.attempts, row.next_attempt_at, row.updated_at = 0, now, now
    return row


def cancel(session: Session, delivery_id: int, now: datetime) -> Delivery:
    """An admin stops a delivery that has not been acknowledged (a wrong target, a document that
    must not go). A worker in the middle of sending it finds the row changed and leaves it."""
    row = session.get(Delivery, delivery_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    if row.state in ("acknowledged", "cancelled"):
        raise DeliveryConflict(f"delivery {delivery_id} is already {row.state}")
    row.state, row.updated_at = "cancelled", now
    return row


@dataclass(frozen=True)
class TargetBacklog:
    target: str
    by_state: dict[str, int]
    oldest_waiting: datetime | None
    """When the oldest delivery still under way was queued."""

    @property
    def backlog(self) -> int:
        return sum(self.by_state.get(s, 0) for s in WAITING)


def backlog(session: Session, targets: Iterable[str]) -> dict[str, TargetBacklog]:
    """Deliveries per target and state, and the age of each target's backlog (every configured
    target appears, with zeros)."""
    counts: dict[str, dict[str, int]] = {t: dict.fromkeys(STATES, 0) for t in targets}
    for target, state, n in session.execute(
            select(Delivery.target, Delivery.state, func.count()).group_by(Delivery.target, Delivery.state)):
        counts.setdefault(target, dict.fromkeys(STATES, 0))[state] = int(n)
    oldest = dict(session.execute(select(Delivery.target, func.min(Delivery.created_at))
                                  .where(Delivery.state.in_(WAITING)).group_by(Delivery.target)).all())
    return {t: TargetBacklog(t, c, oldest.get(t)) for t, c in counts.items()}
