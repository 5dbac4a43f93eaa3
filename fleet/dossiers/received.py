"""Dossiers received, one per row, from the one-stop information system's export.

CSV columns: ``code,procedure_code,unit_code,received_date,due_date`` and, when known,
``result_date`` (dates ``YYYY-MM-DD`` or ``DD/MM/YYYY``; a time after the date is ignored). The
same rows come through the API as JSON. A code is one dossier: importing it again changes
nothing, a corrected row (another unit, procedure or date) updates it, and a dossier already
digitized keeps its digitization (the two sides meet on the code). Every row is checked first —
a code, a unit valid on the received date, dates in order — and any bad row rejects the whole
import, each reported with its line; a row repeated identically in one file is taken once, a
code given twice with different content is an error on the second line.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.progress.units import import_units, sample_csv
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> csv = "code,procedure_code,unit_code,received_date,due_date\\nH99-1,1.001,99001,2026-01-05,2026-01-20\\n"
>>> with session_factory(engine)() as session:
...     _ = import_units(session, sample_csv())
...     import_received(session, parse_csv(csv)), import_received(session, parse_csv(csv))
(ReceivedImport(inserted=1, updated=0, unchanged=0, repeated=0), \
ReceivedImport(inserted=0, updated=0, unchanged=1, repeated=0))
"""

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db import bulk_insert
from fleet.dossiers import codes
from fleet.dossiers.models import Dossier
from fleet.progress.csvio import ImportRejected, LineProblem, parse_date, read_rows
from fleet.progress.models import Unit

log = logging.getLogger(__name__)

COLUMNS = ("code", "procedure_code", "unit_code", "received_date", "due_date")
OPTIONAL = ("result_date",)
_FIELDS = ("procedure_code", "received_unit", "received_on", "received_period", "due_on", "result_on")
_CHUNK = 5000
_CODE = re.compile(r"^[^\s/]{1,64}$")


@dataclass(frozen=True)
class ReceivedRow:
    """One row as given (text), with its line (CSV line, or JSON item number + 1)."""

    line: int
    code: str
    procedure_code: str
    unit_code: str
    received_date: str
    due_date: str
    result_date: str = ""


@dataclass(frozen=True)
class ReceivedImport:
    """What an import did; ``repeated``: rows given twice identically in the input, taken once."""

    inserted: int
    updated: int
    unchanged: int
    repeated: int


def parse_csv(data: str | bytes) -> list[ReceivedRow]:
    return [ReceivedRow(line, r["code"], r["procedure_code"], r["unit_code"], r["received_date"], r["due_date"],
                        r.get("result_date", ""))
            for line, r in read_rows(data, COLUMNS, OPTIONAL)]


def _date(text: str) -> date:
    text = text.strip()
    for sep in ("T", " "):
        if sep in text:
            text = text.split(sep, 1)[0]
    return parse_date(text)


def _check(row: ReceivedRow, versions: dict[str, list[Unit]]) -> tuple[dict[str, object] | None, list[str]]:
    errors: list[str] = []
    code = codes.normalize(row.code)
    if not code:
        errors.append("code is empty")
    elif not _CODE.match(code):
        errors.append(f"code {row.code!r} is not a dossier code (at most 64 characters, no spaces or '/')")
    elif codes.page_code(code).kind == "result":
        errors.append(f"code {row.code!r} names a result (-KQ), not a dossier")
    procedure = row.procedure_code.strip()
    if len(procedure) > 64:
        errors.append("procedure_code is longer than 64 characters")
    dates: dict[str, date | None] = {}
    for name, text in (("received_date", row.received_date), ("due_date", row.due_date),
                       ("result_date", row.result_date)):
        if not text.strip():
            if name == "received_date":
                errors.append("received_date is empty")
            dates[name] = None
            continue
        try:
            dates[name] = _date(text)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
    received = dates.get("received_date")
    for name in ("due_date", "result_date"):
        other = dates.get(name)
        if received is not None and other is not None and other < received:
            errors.append(f"{name} {other} is before received_date {received}")
    unit = row.unit_code.strip()
    found = versions.get(unit)
    if not found:
        errors.append(f"unknown unit code {row.unit_code!r}")
    elif received is not None and not any(u.valid_on(received) for u in found):
        errors.append(f"unit {unit} is not valid on {received}")
    if errors or received is None:
        return None, errors
    return {"code": code, "procedure_code": procedure or None, "received_unit": unit, "received_on": received,
            "received_period": received.isoformat()[:7], "due_on": dates["due_date"],
            "result_on": dates["result_date"]}, []


def import_received(session: Session, rows: Sequence[ReceivedRow], *, now: datetime | None = None) -> ReceivedImport:
    """Validate every row, then insert or update them and commit; or raise
    :class:`ImportRejected` with every bad line and write nothing."""
    versions: dict[str, list[Unit]] = {}
    for unit in session.scalars(select(Unit)):
        versions.setdefault(unit.code, []).append(unit)
    problems: list[LineProblem] = []
    good: dict[str, tuple[int, dict[str, object]]] = {}
    repeated = 0
    for row in rows:
        parsed, errors = _check(row, versions)
        if parsed is None:
            problems.extend(LineProblem(row.line, e) for e in errors)
            continue
        code = str(parsed["code"])
        first = good.get(code)
        if first is not None:
            if first[1] == parsed:
                repeated += 1
            else:
                problems.append(LineProblem(row.line, f"dossier {code} already given on line {first[0]} "
                                                      "with other content"))
            continue
        good[code] = (row.line, parsed)
    if problems:
        raise ImportRejected(problems)

    stamp = now or datetime.now(UTC)
    inserted = updated = unchanged = 0
    connection = session.connection()
    table = Dossier.__table__
    changed: list[dict[str, object]] = []
    for chunk in _chunks(list(good), _CHUNK):
        known = {r.code: r for r in connection.execute(
            select(table.c.code, *(table.c[f] for f in _FIELDS)).where(table.c.code.in_(chunk)))}
        for code in chunk:
            parsed = good[code][1]
            old = known.get(code)
            if old is None:
                inserted += 1
            elif all(getattr(old, f) == parsed[f] for f in _FIELDS):
                unchanged += 1
                continue
            else:
                updated += 1
            changed.append({**parsed, "walk_in": False, "updated_at": stamp})
    sets = ", ".join(f'"{f}" = excluded."{f}"' for f in (*_FIELDS, "updated_at"))
    for start in range(0, len(changed), _CHUNK):
        bulk_insert(connection, table, changed[start:start + _CHUNK], on_conflict=f'("code") DO UPDATE SET {sets}')
    session.commit()
    log.info("dossiers received imported: %s new, %s updated, %s unchanged, %s repeated", inserted, updated,
             unchanged, repeated)
    return ReceivedImport(inserted, updated, unchanged, repeated)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
