"""A full recount of the registry's digitized side from the stored pages and documents, done by
the database, set by set (after a bulk load that bypassed the ingest, or a change of the counting
rule). The received side is left as imported.

The rules are the ingest's (:func:`fleet.dossiers.registry.record_pages` and
``record_closed``): a dossier's component time is its earliest accepted page
(:func:`fleet.progress.rates.accepted_page`) or component document, a page before a document at
the same moment; its result time is its earliest result (a page coded ``<code>-KQ<n>``, a result
document); its digitizing unit and device are those of its earliest component, else of its
earliest result. Its operator is that of its earliest document naming one (components before
results); a dossier no document names an operator for keeps the one it had.

How: the first page or document per dossier and kind goes into a temporary table (``DISTINCT ON``
on PostgreSQL, a window on SQLite), then one UPDATE of the dossiers whose figures changed, one
UPDATE clearing those nothing digitizes any more and one INSERT of the dossiers only pages or
documents know; then the counts per unit and month received are rebuilt from the dossiers
(:func:`fleet.dossiers.counts.rebuild`). A page's code is read as
:func:`fleet.dossiers.codes.page_code` reads it: in
SQL on PostgreSQL (the same regular expression), through that very function on SQLite.

>>> from fleet.db import make_engine, migrate
>>> from fleet.models import Device, Page
>>> from sqlalchemy import insert, select
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> when = datetime(2026, 1, 5, 3, tzinfo=UTC)
>>> page = {"page_id": "p1", "device_id": "kiosk-1", "event_id": "e", "batch_id": "b", "sequence": 1,
...         "side": "front", "dossier_code": " h99-1-kq(2) ", "sha256": "0" * 64, "size": 1,
...         "content_type": "image/png", "width": 1, "height": 1, "source": "scanner", "dropped": False,
...         "captured_at": when, "received_at": when}
>>> with engine.begin() as connection:
...     _ = connection.execute(insert(Device), [{"id": "kiosk-1", "first_seen": when, "last_seen": when}])
...     _ = connection.execute(insert(Page), [page])
...     recount(connection, now=datetime(2026, 2, 1, tzinfo=UTC))
...     connection.execute(select(Dossier.code, Dossier.component_at, Dossier.result_at.is_not(None))).all()
[('H99-1', None, True)]
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import distinct_on

from fleet.dossiers import codes, counts
from fleet.dossiers.models import Dossier, DossierDocument
from fleet.models import Page, UTCDateTime
from fleet.progress.rates import accepted_page

_WHITESPACE = " \t\n\r\x0b\x0c"
"""What :func:`fleet.dossiers.codes.normalize` trims (Python's ``strip()``, for the characters
a code can carry)."""

_news = Table(
    "dossier_recount", MetaData(),
    Column("code", String(64), primary_key=True),
    Column("component_at", UTCDateTime),
    Column("result_at", UTCDateTime),
    Column("digitized_unit", String(64)),
    Column("device_id", String(64)),
    Column("operator_kind", String(16)),
    Column("operator_id", String(64)),
    prefixes=["TEMPORARY"],
)


def _page_named(column: Any, dialect: str) -> tuple[Any, Any]:
    """(dossier, kind) of a page's code, as :func:`fleet.dossiers.codes.page_code` says."""
    if dialect == "sqlite":
        return func.sohoa_dossier(column), func.sohoa_kind(column)
    normalized = func.upper(func.btrim(column, cast(literal(_WHITESPACE), Text)))
    stem = func.substring(normalized, cast(literal(codes.RESULT_PATTERN), Text))
    return func.coalesce(stem, normalized), case((stem.is_(None), "component"), else_="result")


def _sqlite_functions(connection: Connection) -> None:
    def dossier(code: str | None) -> str | None:
        return None if code is None else codes.page_code(code).code

    def kind(code: str | None) -> str | None:
        return None if code is None else codes.page_code(code).kind

    raw: Any = connection.connection.driver_connection
    raw.create_function("sohoa_dossier", 1, dossier, deterministic=True)
    raw.create_function("sohoa_kind", 1, kind, deterministic=True)


def _first(query: Any, dialect: str, partition: list[Any], order: list[Any]) -> Any:
    """The first row of ``query`` (a subquery) per ``partition`` in ``order``."""
    if dialect == "postgresql":
        return select(query).ext(distinct_on(*partition)).order_by(*partition, *order).subquery()
    rank = func.row_number().over(partition_by=partition, order_by=order).label("rank")
    ranked = select(query, rank).subquery()
    return select(*[c for c in ranked.c if c.name != "rank"]).where(ranked.c.rank == 1).subquery()


def _news_query(dialect: str) -> Any:
    """One row per digitized dossier: its times, unit, device and operator (see the module)."""
    p, d = Page.__table__.c, DossierDocument.__table__.c
    code, kind = _page_named(p.dossier_code, dialect)
    doc_kind = case((d.kind == "result", "result"), else_="component")
    seen = union_all(
        select(code.label("code"), kind.label("kind"), p.captured_at.label("at"), p.unit_code.label("unit"),
               p.device_id.label("device"), literal(0, Integer).label("source"), p.page_id.label("tie"))
        .where(accepted_page(), p.dossier_code != ""),
        select(d.dossier_code, doc_kind, d.closed_at, d.unit_code, d.device_id, literal(1, Integer),
               cast(d.id, String)),
    ).subquery()
    firsts = _first(seen, dialect, [seen.c.code, seen.c.kind], [seen.c.at, seen.c.source, seen.c.tie])
    f = firsts.c
    component = f.kind == "component"
    component_at = func.max(case((component, f.at)))
    per_code = select(
        f.code,
        component_at.label("component_at"),
        func.max(case((~component, f.at))).label("result_at"),
        case((component_at.is_not(None), func.max(case((component, f.unit)))),
             else_=func.max(case((~component, f.unit)))).label("digitized_unit"),
        case((component_at.is_not(None), func.max(case((component, f.device)))),
             else_=func.max(case((~component, f.device)))).label("device_id"),
    ).group_by(f.code).subquery()
    named = select(d.dossier_code.label("code"), d.operator_kind, d.operator_id, d.kind, d.closed_at, d.id) \
        .where(d.operator_kind.is_not(None)).subquery()
    operators = _first(named, dialect, [named.c.code],
                       [case((named.c.kind == "result", 1), else_=0), named.c.closed_at, named.c.id])
    return (select(per_code, operators.c.operator_kind, operators.c.operator_id)
            .select_from(per_code.outerjoin(operators, operators.c.code == per_code.c.code)))


def recount(connection: Connection, *, now: datetime | None = None) -> None:
    """Recompute every dossier's digitized side (see the module); the caller commits."""
    now = now or datetime.now(UTC)
    dialect = connection.dialect.name
    if dialect == "sqlite":
        _sqlite_functions(connection)
    else:  # one sort of every accepted page: in memory rather than in temporary files
        connection.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    _news.drop(connection, checkfirst=True)
    _news.create(connection)
    connection.execute(insert(_news).from_select([c.name for c in _news.c], _news_query(dialect)))
    if dialect == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {_news.name}")
    t, n = Dossier.__table__.c, _news.c
    digitized = ("component_at", "result_at", "digitized_unit", "device_id")
    connection.execute(
        update(Dossier)
        .where(or_(*[t[c].is_not(None) for c in digitized]), ~exists().where(n.code == t.code))
        .values({**{c: None for c in digitized}, "updated_at": now}))
    named = n.operator_kind.is_not(None)
    changed = or_(*[t[c].is_distinct_from(n[c]) for c in digitized],
                  and_(named, or_(t.operator_kind.is_distinct_from(n.operator_kind),
                                  t.operator_id.is_distinct_from(n.operator_id))))
    connection.execute(
        update(Dossier).where(t.code == n.code, changed)
        .values({**{c: n[c] for c in digitized}, "operator_kind": case((named, n.operator_kind),
                                                                       else_=t.operator_kind),
                 "operator_id": case((named, n.operator_id), else_=t.operator_id), "updated_at": now}))
    columns = ["code", "walk_in", *digitized, "operator_kind", "operator_id", "updated_at"]
    connection.execute(insert(Dossier).from_select(columns, select(
        n.code, n.code.startswith(codes.WALK_IN_PREFIX), *[n[c] for c in digitized], n.operator_kind,
        n.operator_id, literal(now, UTCDateTime)).where(~exists().where(t.code == n.code))))
    _news.drop(connection)  # on an error the transaction's rollback drops it
    counts.rebuild(connection)
