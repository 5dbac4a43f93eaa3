"""Months as periods (``YYYY-MM``), in Vietnam's time (UTC+7 all year, no daylight saving).

>>> months("2025-11", "2026-02")
['2025-11', '2025-12', '2026-01', '2026-02']
>>> first_day("2026-02"), last_day("2026-02")
(datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))
"""

import calendar
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func

from fleet.errors import FleetError

LOCAL = timezone(timedelta(hours=7), "ICT")
"""Vietnam's time: a page captured at 20:00 UTC on 31 March counts in April."""

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class BadPeriod(FleetError, ValueError):
    """Not a ``YYYY-MM`` month, or a range that ends before it starts."""


def check(period: str) -> str:
    if not _PERIOD.match(period):
        raise BadPeriod(f"period {period!r} is not a month written YYYY-MM")
    return period


def first_day(period: str) -> date:
    check(period)
    return date(int(period[:4]), int(period[5:]), 1)


def last_day(period: str) -> date:
    start = first_day(period)
    return start.replace(day=calendar.monthrange(start.year, start.month)[1])


def of(moment: datetime) -> str:
    """The month a moment falls in, in Vietnam's time."""
    return moment.astimezone(LOCAL).strftime("%Y-%m")


def sql_month(column: Any, dialect: str) -> Any:
    """:func:`of` in SQL, for a stored UTC time."""
    if dialect == "sqlite":  # stored as naive UTC text; Vietnam has no daylight saving
        return func.strftime("%Y-%m", column, "+7 hours")
    return func.to_char(func.timezone("Asia/Ho_Chi_Minh", column), "YYYY-MM")


def months(start: str, end: str) -> list[str]:
    """Every month from ``start`` to ``end`` inclusive."""
    year, month = first_day(start).year, first_day(start).month
    if first_day(end) < first_day(start):
        raise BadPeriod(f"period range {start}..{end} ends before it starts")
    out: list[str] = []
    while (year, month) <= (first_day(end).year, first_day(end).month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def utc_bounds(start: str, end: str) -> tuple[datetime, datetime]:
    """[from, to) in UTC covering the months ``start``..``end`` in Vietnam's time."""
    lo = datetime.combine(first_day(start), datetime.min.time(), LOCAL)
    hi = datetime.combine(last_day(end) + timedelta(days=1), datetime.min.time(), LOCAL)
    return lo.astimezone(UTC), hi.astimezone(UTC)
