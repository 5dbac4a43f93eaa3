"""Received dossiers matched with digitized ones, by code: the figures per unit and month of
receipt, the digitized dossiers that match nothing received, and the chase list.

A received dossier is digitized when at least one component was (an accepted page or a
component document), and has its result digitized when a result (``<code>-KQ<n>``) was; both
whenever that happened (a dossier received in January and digitized in March counts for
January). A digitized dossier with no received row (a typo, a dossier of a unit that sends only
monthly counts, a code not imported yet) is counted apart by the unit and month of its first
component and never lifts a rate, so no rate passes 100%.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.progress.units import import_units, sample_csv
>>> from fleet.dossiers.received import import_received, parse_csv
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> csv = "code,procedure_code,unit_code,received_date,due_date\\nH99-1,1.001,99001,2026-01-05,2026-01-20\\n"
>>> with session_factory(engine)() as session:
...     _ = import_units(session, sample_csv()); _ = import_received(session, parse_csv(csv))
...     cells(session, "2026-01", "2026-01"), [d.code for d in chase(session, {"99001"}, "2026-01", "2026-01")]
({('99001', '2026-01'): Cell(received=1, digitized=0, results=0)}, ['H99-1'])
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from fleet.display import DEFAULT_ZONE
from fleet.dossiers.models import Dossier, DossierCount
from fleet.progress import periods
from fleet.spreadsheet import values_only_bytes


@dataclass(frozen=True)
class Cell:
    """One unit's dossiers received in one month: how many, how many digitized, how many with
    their result digitized."""

    received: int
    digitized: int
    results: int


def cells_query(start: str, end: str) -> Any:
    """(unit, month, received, digitized, results) per receiving unit and month received, for
    months ``start``..``end``: what :func:`cells` reads, for composing with other queries.

    Read from the counts the database keeps as dossiers are written
    (:class:`fleet.dossiers.models.DossierCount`): one row per unit and month, where counting
    the dossiers themselves read a year of a province's million rows on every request (1.2 s).
    A row of zeros (its dossiers moved to another unit or month) is no cell."""
    c = DossierCount.__table__.c
    return (select(c.unit_code.label("unit"), c.period.label("month"), c.received, c.digitized, c.results)
            .where(c.period >= start, c.period <= end, c.received > 0))


def cells(session: Session, start: str, end: str) -> dict[tuple[str, str], Cell]:
    """{(receiving unit, month received): Cell} for months ``start``..``end``."""
    return {(unit, month): Cell(int(n), int(d), int(r))
            for unit, month, n, d, r in session.connection().execute(cells_query(start, end)).all()}


def unmatched_query(dialect: str, start: str, end: str, zone_name: str = DEFAULT_ZONE) -> Any:
    """(unit, month, unmatched): what :func:`unmatched` reads, for composing with other queries."""
    lo, hi = periods.utc_bounds(start, end, zone_name)
    t = Dossier.__table__.c
    month = periods.sql_month(t.component_at, dialect, zone_name)
    return (select(t.digitized_unit.label("unit"), month.label("month"), func.count().label("unmatched"))
            .where(t.component_at >= lo, t.component_at < hi, t.received_on.is_(None), t.walk_in.is_(False))
            .group_by(t.digitized_unit, month))


def unmatched(session: Session, start: str, end: str,
              zone_name: str = DEFAULT_ZONE) -> dict[tuple[str | None, str], int]:
    """{(digitizing unit, month of its first component in the zone ``zone_name``): dossiers
    digitized with no received row} (walk-ins not yet named are not among them: they have no
    code to match)."""
    query = unmatched_query(session.get_bind().dialect.name, start, end, zone_name)
    return {(unit, str(m)): int(n) for unit, m, n in session.connection().execute(query).all()}


def _received_in(start: str, end: str, units: Collection[str] | None) -> list[ColumnElement[bool]]:
    t = Dossier.__table__.c
    where = [t.received_period >= start, t.received_period <= end]
    if units is not None:
        where.append(t.received_unit.in_(sorted(units)))
    return where


def by_operator(session: Session, units: Collection[str] | None, start: str, end: str) -> dict[str | None, int]:
    """{operator kind (None: not said): received dossiers of ``units`` (None: every unit) in the
    months that are digitized}, by who digitized the first component."""
    t = Dossier.__table__.c
    query = (select(t.operator_kind, func.count()).where(*_received_in(start, end, units), t.component_at.is_not(None))
             .group_by(t.operator_kind))
    return {kind: int(n) for kind, n in session.connection().execute(query).all()}


def by_operator_id(session: Session, units: Collection[str] | None, start: str, end: str
                   ) -> list[tuple[str, str, int]]:
    """[(operator id, kind, dossiers)]: the received dossiers of ``units`` in the months each
    counter operator digitized (the staff's opaque ids, never a name), most first. Who digitized
    what, for the audit the postal service's staff assignment asks for."""
    t = Dossier.__table__.c
    n = func.count().label("n")
    query = (select(t.operator_id, t.operator_kind, n)
             .where(*_received_in(start, end, units), t.component_at.is_not(None), t.operator_id.is_not(None))
             .group_by(t.operator_id, t.operator_kind).order_by(n.desc(), t.operator_id))
    return [(str(i), str(k), int(c)) for i, k, c in session.connection().execute(query).all()]


@dataclass(frozen=True)
class Procedure:
    """One procedure's received dossiers and how many of them are digitized."""

    code: str | None
    received: int
    digitized: int


def top_procedures(session: Session, units: Collection[str] | None, start: str, end: str, *,
                   limit: int = 10) -> list[Procedure]:
    """The procedures with the most dossiers received by ``units`` in the months, most first
    (then by code)."""
    t = Dossier.__table__.c
    received = func.count()
    query = (select(t.procedure_code, received, func.count(t.component_at)).where(*_received_in(start, end, units))
             .group_by(t.procedure_code).order_by(received.desc(), t.procedure_code).limit(limit))
    return [Procedure(code or None, int(n), int(d)) for code, n, d in session.connection().execute(query).all()]


@dataclass(frozen=True)
class Pending:
    """A received dossier with nothing digitized yet."""

    code: str
    unit_code: str
    procedure_code: str | None
    received_on: date
    due_on: date | None
    result_at: datetime | None


def chase(session: Session, units: Collection[str] | None, start: str, end: str, *,
          limit: int | None = None, offset: int = 0) -> list[Pending]:
    """Dossiers received by ``units`` (None: every unit) in months ``start``..``end`` with no
    component digitized, oldest first (then by code)."""
    t = Dossier.__table__.c
    where = [t.received_on >= periods.first_day(start), t.received_on <= periods.last_day(end),
             t.component_at.is_(None)]
    if units is not None:
        where.append(t.received_unit.in_(sorted(units)))
    query = (select(t.code, t.received_unit, t.procedure_code, t.received_on, t.due_on, t.result_at)
             .where(and_(*where)).order_by(t.received_on, t.code).offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return [Pending(*row) for row in session.connection().execute(query)]


def chase_xlsx(rows: list[Pending], *, title: str) -> bytes:
    """The chase list as an Excel workbook (one sheet, Vietnamese headers, dates as dates)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Hồ sơ chưa số hóa"
    sheet.append([title])
    sheet.append(["Mã hồ sơ", "Đơn vị tiếp nhận", "Mã thủ tục", "Ngày tiếp nhận", "Hạn trả kết quả"])
    for row in rows:
        sheet.append([row.code, row.unit_code, row.procedure_code, row.received_on, row.due_on])
    for column, width in zip("ABCDE", (34, 18, 16, 16, 16), strict=True):
        sheet.column_dimensions[column].width = width
    for cells_ in sheet.iter_rows(min_row=3, min_col=4, max_col=5):
        for cell in cells_:
            cell.number_format = "DD/MM/YYYY"
    # Codes come from an imported CSV: one written as "=..." must stay text, never a formula.
    return values_only_bytes(book)
