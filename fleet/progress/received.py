"""Dossiers received per unit per month, as the one-stop information system counts them.

CSV columns: ``unit_code,period,received`` (period ``YYYY-MM``). The same figures come through
the API as JSON. A (unit, month) pair holds one count: importing it again replaces it (so a
re-import is harmless and a corrected export fixes the figure). Every row is checked first —
the unit must exist and be valid in that month, the count a whole number not below zero —
and any bad row rejects the whole import, each reported with its line.
"""

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.progress import periods
from fleet.progress.csvio import ImportRejected, LineProblem, read_rows
from fleet.progress.models import Received, Unit

log = logging.getLogger(__name__)

COLUMNS = ("unit_code", "period", "received")


@dataclass(frozen=True)
class ReceivedRow:
    """One count to store; ``line`` is where it came from (CSV line, or item number + 1)."""

    line: int
    unit_code: str
    period: str
    received: str | int


@dataclass(frozen=True)
class ReceivedImport:
    inserted: int
    updated: int
    unchanged: int


def parse_csv(data: str | bytes) -> list[ReceivedRow]:
    return [ReceivedRow(line, r["unit_code"], r["period"], r["received"]) for line, r in read_rows(data, COLUMNS)]


def import_received(session: Session, rows: Sequence[ReceivedRow],
                    now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ReceivedImport:
    """Validate every row, then store them all and commit; or raise :class:`ImportRejected`."""
    problems: list[LineProblem] = []
    versions: dict[str, list[Unit]] = {}
    for unit in session.scalars(select(Unit)):
        versions.setdefault(unit.code, []).append(unit)
    good: dict[tuple[str, str], tuple[int, int]] = {}
    for row in rows:
        errors: list[str] = []
        count: int | None = None
        if isinstance(row.received, int) and not isinstance(row.received, bool):
            count = row.received
        elif isinstance(row.received, str) and re.fullmatch(r"-?[0-9]+", row.received.strip()):
            count = int(row.received.strip())
        if count is None:
            errors.append(f"received {row.received!r} is not a whole number")
        elif count < 0:
            errors.append(f"received {count} is negative")
        try:
            start, end = periods.first_day(row.period), periods.last_day(row.period)
        except periods.BadPeriod as exc:
            errors.append(str(exc))
        else:
            found = versions.get(row.unit_code)
            if not found:
                errors.append(f"unknown unit code {row.unit_code!r}")
            elif not any(u.valid_from <= end and (u.valid_to is None or u.valid_to >= start) for u in found):
                errors.append(f"unit {row.unit_code} is not valid in {row.period}")
        key = (row.unit_code, row.period)
        if not errors and key in good:
            errors.append(f"unit {row.unit_code} in {row.period} already given on line {good[key][0]}")
        if errors:
            problems.extend(LineProblem(row.line, e) for e in errors)
            continue
        assert count is not None
        good[key] = (row.line, count)
    if problems:
        raise ImportRejected(problems)

    existing = {(r.unit_code, r.period): r for r in session.scalars(
        select(Received).where(Received.unit_code.in_({k[0] for k in good}))) if (r.unit_code, r.period) in good}
    inserted = updated = unchanged = 0
    stamp = now()
    for (code, period), (_, count) in good.items():
        old = existing.get((code, period))
        if old is None:
            session.add(Received(unit_code=code, period=period, count=count, updated_at=stamp))
            inserted += 1
        elif old.count == count:
            unchanged += 1
        else:
            old.count, old.updated_at = count, stamp
            updated += 1
    session.commit()
    log.info("dossiers received imported: %s new, %s updated, %s unchanged", inserted, updated, unchanged)
    return ReceivedImport(inserted, updated, unchanged)
