"""What the devices did, as series for the dashboard's charts: pages captured per day (and how
many the quality check rejected), and the rejected pages by reason. Days are Vietnam's; a page
counts for its unit (:func:`fleet.progress.rates.page_unit`), so a moved device's history stays.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     days = pages_per_day(session, "2026-02", "2026-02")
...     rejects = rejects_by_reason(session, "2026-02", "2026-02")
>>> len(days), days[0], rejects.rejected
(28, DayPages(day=datetime.date(2026, 2, 1), pages=0, rejected=0), 0)
"""

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from fleet.display import DEFAULT_ZONE
from fleet.models import Page
from fleet.progress import periods
from fleet.progress.rates import page_in_units

REASONS: dict[str, tuple[str, str]] = {
    "blurry": ("Ảnh mờ", "Blurred"),
    "too_dark": ("Quá tối", "Too dark"),
    "too_bright": ("Quá sáng", "Too bright"),
    "glare": ("Lóa sáng", "Glare"),
    "skewed": ("Đặt lệch", "Crooked"),
    "cut_off": ("Thiếu góc, cạnh", "Cut off"),
    "too_small": ("Giấy quá nhỏ", "Too small"),
    "low_resolution": ("Độ phân giải thấp", "Low resolution"),
    "blank": ("Trang trắng", "Blank page"),
    "unspecified": ("Không ghi lý do", "No reason given"),
}
"""Short names of the quality check's issue codes (the device's own messages are sentences for
the person at the kiosk). A code not listed here is shown as it is."""


@dataclass(frozen=True)
class DayPages:
    day: date
    pages: int
    rejected: int


@dataclass
class Rejects:
    """Pages captured and rejected in the range, and rejected pages per reason (a page with two
    issues counts under both; one with none under ``unspecified``)."""

    pages: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _rejected() -> Any:
    return Page.__table__.c.quality["ok"].as_boolean().is_(False)


_Q = TypeVar("_Q", bound=Select[*tuple[Any, ...]])


def _scoped(query: _Q, start: str, end: str, units: Collection[str] | None, zone_name: str) -> _Q:
    lo, hi = periods.utc_bounds(start, end, zone_name)
    query = query.where(Page.captured_at >= lo, Page.captured_at < hi)
    if units is not None:
        query = query.where(page_in_units(units))
    return query


@dataclass(frozen=True)
class Activity:
    """Both series of a range, from one pass over its pages."""

    days: list[DayPages]
    rejects: Rejects


def activity(session: Session, start: str, end: str, units: Collection[str] | None = None,
             until: date | None = None, zone_name: str = DEFAULT_ZONE) -> Activity:
    """Every day (in the zone ``zone_name``) of the months ``start``..``end`` (up to ``until``,
    today there, when given)
    with the pages captured for ``units`` (every unit, and none, when None) and how many were
    rejected; and the rejected pages by reason. One pass, grouped by day and by the list of
    issues (a handful of distinct lists), split here: reading the quality verdict's JSON is most
    of the cost, and the JSON array functions differ between SQLite and PostgreSQL while the
    grouping does not."""
    day = periods.sql_day(Page.captured_at, session.get_bind().dialect.name, zone_name).label("day")
    issues = Page.__table__.c.quality["issues"]
    bad = func.sum(case((_rejected(), 1), else_=0))
    query = _scoped(select(day, issues, func.count(), bad), start, end, units, zone_name).group_by(day, issues)
    per_day: dict[str, tuple[int, int]] = {}
    rejects = Rejects()
    for d, listed, n, rejected in session.execute(query):
        pages, before = per_day.get(str(d), (0, 0))
        per_day[str(d)] = (pages + int(n), before + int(rejected or 0))
        rejects.pages += int(n)
        if not rejected:
            continue
        rejects.rejected += int(rejected)
        if isinstance(listed, str):
            listed = json.loads(listed)
        codes = [str(c) for c in listed] if isinstance(listed, list) and listed else ["unspecified"]
        for code in dict.fromkeys(codes):
            rejects.reasons[code] = rejects.reasons.get(code, 0) + int(rejected)
    rejects.reasons = dict(sorted(rejects.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    last = periods.last_day(end) if until is None else min(periods.last_day(end), until)
    days: list[DayPages] = []
    current = periods.first_day(start)
    while current <= last:
        pages, rejected = per_day.get(current.isoformat(), (0, 0))
        days.append(DayPages(current, pages, rejected))
        current += timedelta(days=1)
    return Activity(days, rejects)


def pages_per_day(session: Session, start: str, end: str, units: Collection[str] | None = None,
                  until: date | None = None, zone_name: str = DEFAULT_ZONE) -> list[DayPages]:
    """The days of :func:`activity`."""
    return activity(session, start, end, units, until, zone_name).days


def rejects_by_reason(session: Session, start: str, end: str, units: Collection[str] | None = None,
                      zone_name: str = DEFAULT_ZONE) -> Rejects:
    """The rejects of :func:`activity` (every day of the range)."""
    return activity(session, start, end, units, zone_name=zone_name).rejects
