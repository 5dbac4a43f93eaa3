"""Keeping the registry as the ingest stores pages and ``dossier_closed`` events, and naming a
walk-in dossier (a full recount from the stored pages and documents is :mod:`fleet.dossiers.recount`).

Delivery is at least once and in any order (devices store and forward): every write here is an
upsert whose times only move earlier (the first component, the first result), and a document is
its (sha256, name), so a message delivered twice changes nothing.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from datetime import UTC, datetime
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> page = {"page_id": "p1", "device_id": "kiosk-1", "unit_code": "99001", "dossier_code": "h99-1",
...         "dropped": False, "quality": None, "captured_at": datetime(2026, 1, 5, 3, tzinfo=UTC)}
>>> with engine.begin() as connection:
...     record_pages(connection, [page, {**page, "page_id": "p2", "dossier_code": "H99-1-KQ1"}])
1
>>> with session_factory(engine)() as session:
...     found = session.get(Dossier, "H99-1")
...     found.component_at == found.result_at == page["captured_at"], found.digitized_unit
(True, '99001')
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from fleet.db import bulk_insert
from fleet.dossiers import codes
from fleet.dossiers.models import Dossier, DossierDocument
from fleet.errors import FleetError, NotFound
from fleet.models import Page
from fleet.progress import digitized
from protocol.messages import DossierClosed

log = logging.getLogger(__name__)


class NotAWalkIn(FleetError, ValueError):
    """Only a walk-in dossier not yet named can be given a code."""


def _earlier() -> str:
    """The upsert's conflict clause: times only move earlier; the digitizing unit, device and
    operator are those of the earliest component (else of the first news of the dossier)."""
    t = Dossier.__tablename__
    earlier_component = (f'(excluded.component_at IS NOT NULL AND ("{t}".component_at IS NULL '
                         f'OR excluded.component_at < "{t}".component_at))')
    first_news = f'"{t}".component_at IS NULL AND "{t}".result_at IS NULL'

    def earliest(column: str) -> str:
        return (f'{column} = CASE WHEN "{t}".{column} IS NULL OR excluded.{column} < "{t}".{column} '
                f'THEN excluded.{column} ELSE "{t}".{column} END')

    def of_earliest(column: str) -> str:
        return (f'{column} = CASE WHEN {earlier_component} OR {first_news} '
                f'THEN COALESCE(excluded.{column}, "{t}".{column}) ELSE "{t}".{column} END')

    def operator(column: str) -> str:  # a page or a document that names one fills it in
        return (f'{column} = CASE WHEN {earlier_component} OR {first_news} OR "{t}".operator_kind IS NULL '
                f'THEN COALESCE(excluded.{column}, "{t}".{column}) ELSE "{t}".{column} END')

    sets = [earliest("component_at"), earliest("result_at")]
    sets += [of_earliest(c) for c in ("digitized_unit", "device_id")]
    sets += [operator(c) for c in ("operator_kind", "operator_id")]
    sets.append('updated_at = excluded.updated_at')
    return '("code") DO UPDATE SET ' + ", ".join(sets)


_EARLIER = _earlier()


@dataclass
class _News:
    """What one batch says about one dossier."""

    code: str
    walk_in: bool = False
    component_at: datetime | None = None
    result_at: datetime | None = None
    digitized_unit: str | None = None
    device_id: str | None = None
    operator_kind: str | None = None
    operator_id: str | None = None
    operator_at: datetime | None = None

    def saw(self, kind: codes.Kind, at: datetime, unit: str | None, device: str | None,
            operator: tuple[str | None, str | None] = (None, None)) -> None:
        if kind == "result":
            if self.result_at is None or at < self.result_at:
                self.result_at = at
            if self.component_at is None and self.digitized_unit is None:
                self.digitized_unit, self.device_id = unit, device
        elif self.component_at is None or at < self.component_at:
            self.component_at = at
            self.digitized_unit, self.device_id = unit, device
        # The operator is that of the earliest page or document naming one (a page from an agent
        # that does not say leaves it to the others).
        if operator[0] is not None and (self.operator_at is None or at < self.operator_at):
            self.operator_kind, self.operator_id = operator
            self.operator_at = at

    def row(self, now: datetime) -> dict[str, Any]:
        return {"code": self.code, "walk_in": self.walk_in, "component_at": self.component_at,
                "result_at": self.result_at, "digitized_unit": self.digitized_unit, "device_id": self.device_id,
                "operator_kind": self.operator_kind, "operator_id": self.operator_id, "updated_at": now}


def _upsert(connection: Connection, news: dict[str, _News]) -> int:
    if not news:
        return 0
    now = datetime.now(UTC)
    bulk_insert(connection, Dossier.__table__, [news[c].row(now) for c in sorted(news)], on_conflict=_EARLIER)
    return len(news)


def record_pages(connection: Connection, pages: Iterable[dict[str, Any]]) -> int:
    """Fold page rows (as the ingest stores them) into the registry: an accepted page
    (:func:`fleet.progress.digitized.accepted`) digitizes its dossier's component, or its
    result when its code ends in ``-KQ<n>``. Returns how many dossiers were touched."""
    news: dict[str, _News] = {}
    for page in pages:
        if not digitized.accepted(page):
            continue
        named = codes.page_code(page["dossier_code"])
        item = news.setdefault(named.code, _News(named.code))
        item.saw(named.kind, page["captured_at"], page.get("unit_code"), page["device_id"],
                 (page.get("operator_kind"), page.get("operator_id")))
    return _upsert(connection, news)


def _document_code(event: DossierClosed, doc: Any) -> str:
    if event.dossier_code is not None:
        return codes.page_code(event.dossier_code).code
    return codes.document(doc.name).code


class _Numbers:
    """The document numbers each (dossier, kind) holds, read once for a batch and kept as the
    batch's documents are placed: a device numbers offline, the fleet decides."""

    def __init__(self, connection: Connection, dossier_codes: set[str]) -> None:
        self.held: dict[tuple[str, str], dict[int, tuple[str, str]]] = {}
        self.stored: set[tuple[str, str, str]] = set()
        ordered = sorted(dossier_codes)
        t = DossierDocument
        for start in range(0, len(ordered), 500):
            for code, kind, sequence, sha256, session_id in connection.execute(
                    select(t.dossier_code, t.kind, t.sequence, t.sha256, t.session_id)
                    .where(t.dossier_code.in_(ordered[start:start + 500]))):
                self._hold(code, kind, sequence, sha256, session_id)

    def _hold(self, code: str, kind: str, sequence: int | None, sha256: str, session_id: str) -> None:
        self.stored.add((code, sha256, session_id))
        if sequence is not None:
            self.held.setdefault((code, kind), {})[sequence] = (sha256, session_id)

    def place(self, named: codes.Named, sha256: str, session_id: str) -> int | None:
        """The number the document is stored under: its own, or the dossier's next free one
        when another document holds it; None when this document is stored already."""
        if (named.code, sha256, session_id) in self.stored:
            return None
        held = self.held.get((named.code, named.kind), {})
        sequence = named.sequence
        if sequence is not None and held.get(sequence, (sha256, session_id)) != (sha256, session_id):
            wanted, sequence = sequence, max(held) + 1
            log.warning("document %s: %s number %d already held for its dossier; stored as number %d",
                        sha256[:12], named.kind, wanted, sequence)
        self._hold(named.code, named.kind, sequence, sha256, session_id)
        return sequence


def _named_walk_ins(connection: Connection, walk_ins: set[str]) -> dict[str, str]:
    """The code each of ``walk_ins`` was given, for those an admin has named."""
    if not walk_ins:
        return {}
    rows = connection.execute(select(Dossier.code, Dossier.named_code)
                              .where(Dossier.code.in_(sorted(walk_ins)), Dossier.named_code.is_not(None)))
    return {code: named for code, named in rows if named is not None}


def record_closed(connection: Connection, closed: Iterable[tuple[DossierClosed, str | None]]) -> int:
    """Fold ``dossier_closed`` events (each with its device's unit) into the registry: each
    document becomes a row (once), and its dossier's component or result is digitized at the
    event's time. A walk-in (no code) is keyed by its documents' name (``WALKIN-…``).

    Devices number a dossier's documents offline (a number book per device): when a document's
    number is already held by another document of the dossier (two devices, or a reopened
    dossier on a device that lost its book), it is stored under the dossier's next free number
    and keeps its device's name in ``device_name``. Returns how many documents were new."""
    closed = list(closed)
    news: dict[str, _News] = {}
    documents: list[dict[str, Any]] = []
    dossier_codes = {_document_code(event, doc) for event, _ in closed for doc in event.documents}
    named_since = _named_walk_ins(connection, {c for c in dossier_codes if codes.is_walk_in(c)})
    numbers = _Numbers(connection, {named_since.get(c, c) for c in dossier_codes})
    for event, unit in closed:
        if not event.documents and event.dossier_code is None:
            continue
        walk_in = event.dossier_code is None
        operator = (event.operator.kind, event.operator.id) if event.operator else (None, None)
        for doc in event.documents:
            named = codes.document(doc.name)
            if event.dossier_code is not None and named.code != codes.page_code(event.dossier_code).code:
                log.warning("document %s of dossier_closed %s does not name its dossier; kept under the dossier",
                            doc.sha256[:12], event.id)
                named = codes.Named(codes.page_code(event.dossier_code).code, named.kind, named.sequence)
            moved = named.code in named_since  # a walk-in an admin has named: its documents are the code's
            if moved:
                named = codes.Named(named_since[named.code], named.kind, named.sequence)
            item = news.setdefault(named.code, _News(named.code, walk_in=walk_in and not moved))
            item.saw(named.kind, event.ts, unit, event.device_id, operator)
            placed = numbers.place(named, doc.sha256, event.session_id)
            if placed is None:
                continue  # stored already, under the fleet's name
            name, device_name = (doc.name, None) if placed == named.sequence and not moved else (
                codes.document_name(named.code, named.kind, placed), doc.name)
            documents.append({
                "dossier_code": named.code, "name": name, "device_name": device_name, "kind": named.kind,
                "sequence": placed,
                "doctype": doc.doctype, "pages": doc.pages, "size": doc.size, "sha256": doc.sha256,
                "text_layer": None, "device_id": event.device_id, "unit_code": unit, "event_id": event.id,
                "session_id": event.session_id, "page_ids": list(event.page_ids), "closed_at": event.ts,
                "operator_kind": operator[0], "operator_id": operator[1]})
    _upsert(connection, news)
    if not documents:
        return 0
    return bulk_insert(connection, DossierDocument.__table__, documents, on_conflict='("sha256", "name") DO NOTHING')


def name_walk_in(session: Session, walk_in: str, code: str) -> Dossier:
    """Give a walk-in dossier its real code: its documents and its pages move to ``code``, whose
    row takes their earliest times (so it counts from now on), and the walk-in row keeps
    ``named_code``. Each document is renamed ``<code>.<n>.pdf`` (its own number, or the code's
    next free one when the dossier holds it already), keeps the walk-in's name in
    ``device_name``, and is signed (again) under its new name before it can be delivered.
    Commits. Raises :class:`NotFound` or :class:`NotAWalkIn`."""
    walk_in, code = codes.normalize(walk_in), codes.normalize(code)
    row = session.get(Dossier, walk_in, with_for_update=True)
    if row is None:
        raise NotFound(f"no dossier {walk_in}")
    if not row.walk_in:
        raise NotAWalkIn(f"{walk_in} is not a walk-in dossier")
    if row.named_code is not None:
        raise NotAWalkIn(f"{walk_in} was already named {row.named_code}")
    target = codes.page_code(code)
    if target.kind == "result" or not code or code == walk_in:
        raise NotAWalkIn(f"{code!r} is not a dossier code")
    existing = session.get(Dossier, code)
    if existing is not None and existing.walk_in:
        raise NotAWalkIn(f"{code} is a walk-in dossier itself")
    documents = list(session.scalars(select(DossierDocument).where(DossierDocument.dossier_code == walk_in)
                                     .order_by(DossierDocument.kind, DossierDocument.sequence, DossierDocument.id)))
    page_ids = sorted({str(p) for d in documents for p in d.page_ids})
    connection = session.connection()
    numbers = _Numbers(connection, {code})
    for doc in documents:
        kind: codes.Kind = "result" if doc.kind == "result" else "component"
        # Named as the code's documents are: its own number when the dossier has none such yet,
        # else the next free one (the citizen may have brought a slip on another visit).
        placed = numbers.place(codes.Named(code, kind, doc.sequence), doc.sha256, doc.session_id)
        sequence = doc.sequence if placed is None else placed
        renamed = codes.document_name(code, kind, sequence) if sequence is not None else doc.name
        # A copy signed under the walk-in's name is signed again under the code's.
        connection.execute(update(DossierDocument).where(DossierDocument.id == doc.id).values(
            dossier_code=code, name=renamed, sequence=sequence, device_name=doc.device_name or doc.name,
            signed_sha256=None, signed_size=None, signed_at=None, signing_level=None, signing_certificate=None,
            signing_error=None))
    if page_ids:
        connection.execute(update(Page).where(Page.page_id.in_(page_ids), Page.dossier_code.is_(None))
                           .values(dossier_code=code))
        pages = [dict(r._mapping) for r in connection.execute(select(Page.__table__).where(
            Page.page_id.in_(page_ids)))]
        digitized.record(connection, pages)
        record_pages(connection, pages)
    moved = _News(code, component_at=row.component_at, result_at=row.result_at, digitized_unit=row.digitized_unit,
                  device_id=row.device_id, operator_kind=row.operator_kind, operator_id=row.operator_id)
    _upsert(connection, {code: moved})
    row.named_code = code
    row.updated_at = datetime.now(UTC)
    session.commit()
    named = session.get(Dossier, code, populate_existing=True)  # written by SQL above, not through the ORM
    assert named is not None
    log.info("walk-in dossier named (%d document(s), %d page(s))", len(documents), len(page_ids))
    return named
