"""Months as periods (``YYYY-MM``) and days, in the province's zone: the fleet's ``time_zone``
(default ``Asia/Ho_Chi_Minh``, UTC+7 all year), in Python and in SQL alike.

>>> months("2025-11", "2026-02")
['2025-11', '2025-12', '2026-01', '2026-02']
>>> first_day("2026-02"), last_day("2026-02")
(datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))
>>> of(datetime(2026, 3, 31, 20, tzinfo=UTC)), of(datetime(2026, 3, 31, 20, tzinfo=UTC), "Europe/Berlin")
('2026-04', '2026-03')
>>> utc_bounds("2026-04", "2026-04", "Europe/Berlin")[0]  # summer time began on 29 March
datetime.datetime(2026, 3, 31, 22, 0, tzinfo=datetime.timezone.utc)
"""

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from sqlalchemy import func

from fleet.display import DEFAULT_ZONE, zone
from fleet.errors import FleetError

SQLITE_LOCAL_TIME = "sohoa_local_time"
"""The SQL function SQLite connections get (:func:`sqlite_local_time`) for zones with daylight
saving time (SQLite knows no zones; PostgreSQL has ``timezone()``)."""

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


def of(moment: datetime, zone_name: str = DEFAULT_ZONE) -> str:
    """The month a moment falls in, in the zone ``zone_name``."""
    return moment.astimezone(zone(zone_name)).strftime("%Y-%m")


def today(moment: datetime, zone_name: str = DEFAULT_ZONE) -> date:
    """The day a moment falls on, in the zone ``zone_name``."""
    return moment.astimezone(zone(zone_name)).date()


@cache
def _fixed_offset(zone_name: str) -> int | None:
    """The zone's offset from UTC in minutes when it is the same all year in every year from
    2000 to 2050 (Vietnam), else None (a zone with daylight saving time)."""
    where = zone(zone_name)
    offsets = {datetime(year, month, 1, 12, tzinfo=UTC).astimezone(where).utcoffset()
               for year in range(2000, 2051) for month in (1, 4, 7, 10)}
    if len(offsets) != 1:
        return None
    [offset] = offsets
    return None if offset is None else int(offset.total_seconds() // 60)


def sqlite_local_time(value: str | None, zone_name: str) -> str | None:
    """A stored UTC time (SQLite's naive text) as local ``YYYY-MM-DD HH:MM:SS`` in ``zone_name``:
    the body of :data:`SQLITE_LOCAL_TIME`.

    >>> sqlite_local_time("2026-03-31 22:30:00.000000", "Europe/Berlin")
    '2026-04-01 00:30:00'
    """
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return moment.astimezone(zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S")


def _sql_local(column: Any, dialect: str, zone_name: str, sqlite_format: str, postgres_format: str) -> Any:
    if dialect != "sqlite":
        return func.to_char(func.timezone(zone_name, column), postgres_format)
    offset = _fixed_offset(zone_name)
    if offset is not None:  # stored as naive UTC text: a fixed shift is SQLite's own arithmetic
        return func.strftime(sqlite_format, column, f"{offset:+d} minutes")
    return func.strftime(sqlite_format, getattr(func, SQLITE_LOCAL_TIME)(column, zone_name))


def sql_month(column: Any, dialect: str, zone_name: str = DEFAULT_ZONE) -> Any:
    """:func:`of` in SQL, for a stored UTC time."""
    return _sql_local(column, dialect, zone_name, "%Y-%m", "YYYY-MM")


def sql_day(column: Any, dialect: str, zone_name: str = DEFAULT_ZONE) -> Any:
    """The local day (``YYYY-MM-DD``) of a stored UTC time, in SQL."""
    return _sql_local(column, dialect, zone_name, "%Y-%m-%d", "YYYY-MM-DD")


def shift(period: str, by: int) -> str:
    """The month ``by`` months after ``period`` (before it when negative).

    >>> shift("2026-02", -3), shift("2025-12", 1)
    ('2025-11', '2026-01')
    """
    index = first_day(period).year * 12 + first_day(period).month - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def previous(start: str, end: str) -> tuple[str, str]:
    """The range as long as ``start``..``end`` just before it (a quarter's previous quarter).

    >>> previous("2026-01", "2026-03"), previous("2026-01", "2026-01")
    (('2025-10', '2025-12'), ('2025-12', '2025-12'))
    """
    length = len(months(start, end))
    return shift(start, -length), shift(start, -1)


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


def utc_bounds(start: str, end: str, zone_name: str = DEFAULT_ZONE) -> tuple[datetime, datetime]:
    """[from, to) in UTC covering the months ``start``..``end`` in the zone ``zone_name``."""
    lo = datetime.combine(first_day(start), time.min, zone(zone_name))
    hi = datetime.combine(last_day(end) + timedelta(days=1), time.min, zone(zone_name))
    return lo.astimezone(UTC), hi.astimezone(UTC)
