"""The administrative-unit tree: import from CSV, and the tree valid in a period.

CSV columns: ``code,name,tier,parent_code,valid_from,valid_to``. Codes are the official ones
(Decision 124/2004/QĐ-TTg: province 2 digits, district 3, commune 5; the two-tier codes of
Decision 19/2025/QĐ-TTg keep these lengths). A province-level agency (tier ``agency``: a
department, the Public Administration Service Center) sits under its province with its agency
code, such as ``000.00.12.H10`` (three digits, two, two, then the province's letter and two
digits). A record is keyed by (code, valid_from): importing
the same file again changes nothing, a corrected name updates the record, and a unit that was
merged or renamed gets a second record starting the day the change took effect.

The whole file goes in one transaction; any bad row rejects the file, every bad row reported
with its line.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     import_units(session, sample_csv()).inserted > 0
True
"""

import logging
import re
from dataclasses import dataclass
from datetime import date
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.progress.csvio import ImportRejected, LineProblem, parse_date, read_rows
from fleet.progress.models import TIERS, Unit

log = logging.getLogger(__name__)

COLUMNS = ("code", "name", "tier", "parent_code", "valid_from", "valid_to")
CODE_DIGITS = {"province": 2, "district": 3, "commune": 5}
AGENCY_CODE = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$")
PARENT_TIERS = {"province": (), "agency": ("province",), "district": ("province",),
                "commune": ("district", "province")}
TIER_ALIASES = {"tỉnh": "province", "tinh": "province", "huyện": "district", "huyen": "district",
                "xã": "commune", "xa": "commune", "sở": "agency", "so": "agency", "cơ quan": "agency"}


@dataclass(frozen=True)
class UnitImport:
    """What an import did."""

    inserted: int
    updated: int
    unchanged: int


def sample_csv() -> str:
    """The small sample tree shipped with the fleet (fictitious test codes, marked as such)."""
    return resources.files("fleet.progress").joinpath("sample_units.csv").read_text(encoding="utf-8")


def _overlaps(a_from: date, a_to: date | None, b_from: date, b_to: date | None) -> bool:
    return (b_to is None or a_from <= b_to) and (a_to is None or b_from <= a_to)


def _same(a: Unit, b: Unit) -> bool:
    return (a.name, a.tier, a.parent_code, a.valid_to) == (b.name, b.tier, b.parent_code, b.valid_to)


def import_units(session: Session, data: str | bytes) -> UnitImport:
    """Validate every row, then insert or update them all and commit; or raise
    :class:`ImportRejected` with every bad line and write nothing."""
    rows = read_rows(data, COLUMNS)
    problems: list[LineProblem] = []
    parsed: list[tuple[int, Unit]] = []
    for line, row in rows:
        errors: list[str] = []
        tier = TIER_ALIASES.get(row["tier"].lower(), row["tier"].lower())
        code = row["code"]
        if tier not in TIERS:
            errors.append(f"tier {row['tier']!r} is not one of {', '.join(TIERS)}")
        elif tier == "agency":
            if not AGENCY_CODE.match(code):
                errors.append(f"code {code!r} is not an agency code such as 000.00.12.H10")
        elif not (code.isascii() and code.isdigit() and len(code) == CODE_DIGITS[tier]):
            errors.append(f"code {code!r} is not {CODE_DIGITS[tier]} digits (a {tier} code)")
        if not row["name"]:
            errors.append("name is empty")
        valid_from: date | None = None
        valid_to: date | None = None
        try:
            valid_from = parse_date(row["valid_from"])
        except ValueError as exc:
            errors.append(f"valid_from: {exc}")
        if row["valid_to"]:
            try:
                valid_to = parse_date(row["valid_to"])
            except ValueError as exc:
                errors.append(f"valid_to: {exc}")
        if valid_from is not None and valid_to is not None and valid_to < valid_from:
            errors.append(f"valid_to {valid_to} is before valid_from {valid_from}")
        if tier == "province" and row["parent_code"]:
            errors.append("a province has no parent")
        if tier in ("agency", "district", "commune") and not row["parent_code"]:
            errors.append(f"a {tier} needs a parent_code")
        if errors:
            problems.extend(LineProblem(line, e) for e in errors)
            continue
        assert valid_from is not None
        parsed.append((line, Unit(code=code, name=row["name"], tier=tier, parent_code=row["parent_code"] or None,
                                  valid_from=valid_from, valid_to=valid_to)))

    existing = {(u.code, u.valid_from): u for u in session.scalars(select(Unit))}
    incoming = {}
    for line, unit in parsed:
        key = (unit.code, unit.valid_from)
        if key in incoming:
            problems.append(LineProblem(line, f"unit {unit.code} from {unit.valid_from} appears twice in the file"))
            continue
        incoming[key] = (line, unit)
    # The tree after the import: records in the file replace those with the same key.
    after: dict[str, list[tuple[date, date | None, str]]] = {}
    for (code, start), unit in existing.items():
        if (code, start) not in incoming:
            after.setdefault(code, []).append((start, unit.valid_to, unit.tier))
    for (code, start), (_, unit) in incoming.items():
        after.setdefault(code, []).append((start, unit.valid_to, unit.tier))

    for (code, start), (line, unit) in incoming.items():
        for other_from, other_to, _ in after[code]:
            if other_from != start and _overlaps(start, unit.valid_to, other_from, other_to):
                problems.append(LineProblem(line, f"unit {code} from {start} overlaps its record from {other_from}"))
        if unit.parent_code is None:
            continue
        parents = [(f, t, tier) for f, t, tier in after.get(unit.parent_code, [])
                   if f <= start and (t is None or start <= t)]
        if not parents:
            problems.append(LineProblem(line, f"parent {unit.parent_code} is not a unit valid on {start}"))
        elif parents[0][2] not in PARENT_TIERS[unit.tier]:
            problems.append(LineProblem(
                line, f"parent {unit.parent_code} is a {parents[0][2]}, not a valid parent of a {unit.tier}"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ImportRejected(problems)

    inserted = updated = unchanged = 0
    for key, (_, unit) in incoming.items():
        old = existing.get(key)
        if old is None:
            session.add(unit)
            inserted += 1
        elif _same(old, unit):
            unchanged += 1
        else:
            old.name, old.tier, old.parent_code, old.valid_to = unit.name, unit.tier, unit.parent_code, unit.valid_to
            updated += 1
    session.commit()
    log.info("units imported: %s new, %s updated, %s unchanged", inserted, updated, unchanged)
    return UnitImport(inserted, updated, unchanged)


def units_in(session: Session, start: date, end: date) -> dict[str, Unit]:
    """The units valid at some time between ``start`` and ``end``, one record per code: the
    latest one (a unit renamed within the period shows under its new name)."""
    query = select(Unit).where(Unit.valid_from <= end, (Unit.valid_to.is_(None)) | (Unit.valid_to >= start))
    out: dict[str, Unit] = {}
    for unit in session.scalars(query.order_by(Unit.valid_from)):
        out[unit.code] = unit
    return out


def valid_on(session: Session, day: date) -> dict[str, Unit]:
    """The units valid on ``day``."""
    return units_in(session, day, day)


def unit_parents(session: Session) -> dict[str, str | None]:
    """Every unit code (over the tree's history) with its parent's code."""
    return {code: parent for code, parent in session.execute(select(Unit.code, Unit.parent_code))}
