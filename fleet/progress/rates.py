"""Digitization rates: dossiers digitized ÷ dossiers received, per unit and rolled up the tree,
per month or over a range of months.

Two bases, chosen per unit for the range:

- ``dossiers``: the unit's received dossiers were imported one per row (:mod:`fleet.dossiers`).
  A dossier counts in the unit and month it was *received*, as digitized when at least one of
  its components was (an accepted page or a component document, at any time), and for results
  when a result document was; matched by code, so a typo or a dossier never received counts
  apart (``unmatched``) and never lifts the rate.
- ``counts``: only monthly totals were imported for the unit. Received is that total, and a
  dossier counts as digitized once, in the month (Vietnam's time) and the unit of its first
  accepted page: a page with a dossier code that was not dropped and whose quality verdict is
  not a rejection (a page never checked counts). The unit is the page's: its device's unit when
  the page came in, else, for a page that came in before its device had a unit, the device's
  unit now. Nothing matches codes here, so a rate is capped at 100%.

Each month's figures roll up the tree valid in that month (communes under their district until
30/6/2025, under their province from 1/7/2025). Each unit is compared with its target (its own,
else its tier's, from the latest ``period_from`` not after the range's last month, else the
directive's default).

>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.progress.units import import_units, sample_csv
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     _ = import_units(session, sample_csv())
...     report = progress(session, "2026-01", "2026-03", root="99")
>>> report.units["99"].tier, report.units["99"].target
('province', 0.5)
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from fleet.display import DEFAULT_ZONE
from fleet.errors import NotFound
from fleet.models import Device, Page
from fleet.progress import periods
from fleet.progress.models import TIERS, DigitizedDossier, Received, Target, Unit

DEFAULT_TARGETS: dict[str, float] = {"province": 0.50, "agency": 0.50, "district": 0.40, "commune": 0.35}
"""The directive's minimum rates, used when no target row applies."""

Status = Literal["met", "behind", "no_data"]
Basis = Literal["dossiers", "counts"]


@dataclass(slots=True)
class Figures:
    """``results`` and ``unmatched`` exist on the ``dossiers`` basis only (zero otherwise)."""

    received: int = 0
    digitized: int = 0
    results: int = 0
    unmatched: int = 0

    @property
    def rate(self) -> float | None:
        """None when nothing was received (a rate over zero means nothing); never above 1."""
        return min(self.digitized, self.received) / self.received if self.received else None

    @property
    def result_rate(self) -> float | None:
        return min(self.results, self.received) / self.received if self.received else None

    def add(self, other: "Figures") -> None:
        self.received += other.received
        self.digitized += other.digitized
        self.results += other.results
        self.unmatched += other.unmatched


@dataclass
class UnitProgress:
    """One unit over the range: its own figures, its subtree's, target and status, and the
    subtree's figures month by month (the trend)."""

    code: str
    name: str
    tier: str
    parent_code: str | None
    depth: int
    own: Figures
    total: Figures
    target: float
    basis: Basis = "counts"
    children: list[str] = field(default_factory=list)
    trend: dict[str, Figures] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        rate = self.own.rate
        if rate is None:
            return "no_data"
        return "met" if rate + 1e-12 >= self.target else "behind"


@dataclass
class TierTotal:
    tier: str
    units: int
    figures: Figures
    target: float
    met: int
    behind: int


@dataclass
class Progress:
    """The picture for months ``start``..``end`` under ``root`` (every province when None).
    ``units`` are in tree order (parent before children, by code); ``unattributed`` counts the
    digitized dossiers whose device has no unit, or a unit not in the tree for the range."""

    start: str
    end: str
    root: str | None
    units: dict[str, UnitProgress]
    tiers: list[TierTotal]
    total: Figures
    unattributed: int
    months: list[str]


def accepted_page() -> ColumnElement[bool]:
    """A page that makes its dossier digitized."""
    verdict = Page.__table__.c.quality["ok"].as_boolean()
    return and_(Page.dossier_code.is_not(None), Page.dropped.is_(False),
                or_(Page.__table__.c.quality.is_(None), verdict.is_(None), verdict.is_(True)))


def page_unit() -> ColumnElement[str | None]:
    """The unit a page counts for: its own, else (a page from before its device had a unit) its
    device's now. The device is looked up only for such pages (COALESCE stops at the first
    value), so counting does not join every page with its device."""
    device_unit = select(Device.unit_code).where(Device.id == Page.device_id).scalar_subquery()
    return func.coalesce(Page.unit_code, device_unit)


def page_in_units(units: Collection[str]) -> ColumnElement[bool]:
    """Pages counting for one of ``units`` (see :func:`page_unit`), written so that the index
    on (unit_code, captured_at) serves it: 250 ms -> 4 ms for a province's three months."""
    codes = sorted(units)
    device_unit = select(Device.unit_code).where(Device.id == Page.device_id).scalar_subquery()
    return or_(Page.unit_code.in_(codes), and_(Page.unit_code.is_(None), device_unit.in_(codes)))


def first_accepted_pages(dialect: str, *, with_page: bool = False) -> Any:
    """One row per digitized dossier from the pages themselves: ``dossier``, ``at`` (its first
    accepted page's capture time) and ``unit`` (that page's unit); with ``with_page`` also
    ``page_id``, ``device_id`` and ``own_unit`` (the page's recorded unit, maybe null). Per
    dialect, the cheapest exact form: SQLite takes the bare columns of a MIN() aggregate from the
    row holding the minimum; PostgreSQL has DISTINCT ON. (A window ``row_number()`` over every
    page cost three times as much on SQLite.) :func:`digitized_counts` reads the table the ingest
    keeps instead; this is for rebuilding it."""
    columns: list[Any] = [page_unit().label("unit")]
    if with_page:
        columns += [Page.page_id.label("page_id"), Page.device_id.label("device_id"),
                    Page.unit_code.label("own_unit")]
    if dialect == "sqlite":
        query = (select(Page.dossier_code.label("dossier"), func.min(Page.captured_at).label("at"), *columns)
                 .where(accepted_page()).group_by(Page.dossier_code))
    else:
        query = (select(Page.dossier_code.label("dossier"), Page.captured_at.label("at"), *columns)
                 .where(accepted_page()).ext(distinct_on(Page.dossier_code))
                 .order_by(Page.dossier_code, Page.captured_at, Page.page_id))
    return query.subquery()


def digitized_counts_query(dialect: str, start: str, end: str, zone_name: str = DEFAULT_ZONE,
                           skip: Any = None) -> Any:
    """(unit, month, digitized): what :func:`digitized_counts` reads, for composing. With
    ``skip`` (a selectable of unit codes), the dossiers of those units are left out before
    their month is computed and they are grouped."""
    lo, hi = periods.utc_bounds(start, end, zone_name)
    table = DigitizedDossier.__table__.c
    device_unit = select(Device.unit_code).where(Device.id == table.device_id).scalar_subquery()
    unit = func.coalesce(table.unit_code, device_unit)
    month = periods.sql_month(table.first_at, dialect, zone_name)
    query = select(unit.label("unit"), month.label("month"), func.count().label("digitized")) \
        .where(table.first_at >= lo, table.first_at < hi)
    if skip is not None:
        query = query.where(or_(unit.is_(None), unit.not_in(skip)))
    return query.group_by(unit, month)


def digitized_counts(session: Session, start: str, end: str,
                     zone_name: str = DEFAULT_ZONE) -> dict[tuple[str | None, str], int]:
    """{(unit code, month in the zone ``zone_name``): dossiers whose first accepted page is in
    that month and unit}, from the table the ingest keeps (:mod:`fleet.progress.digitized`)."""
    query = digitized_counts_query(session.get_bind().dialect.name, start, end, zone_name)
    return {(u, str(m)): int(n) for u, m, n in session.connection().execute(query)}


def received_counts_query(start: str, end: str) -> Any:
    """(unit, month, received) from the monthly counts imported per unit."""
    table = Received.__table__.c
    return (select(table.unit_code.label("unit"), table.period.label("month"), table.count.label("received"))
            .where(table.period >= start, table.period <= end))


def received_counts(session: Session, start: str, end: str) -> dict[tuple[str, str], int]:
    # Plain rows through the connection: the ORM's per-row work cost more than the query here.
    return {(unit, month): int(n) for unit, month, n in session.connection().execute(received_counts_query(start, end))}


class Targets:
    """Target lookup: a unit's own, else its tier's, else the directive's default."""

    def __init__(self, rows: Iterable[Target]) -> None:
        self._by_tier: dict[str, list[tuple[str, float]]] = {}
        self._by_unit: dict[str, list[tuple[str, float]]] = {}
        for row in rows:
            if row.unit_code:
                into = self._by_unit.setdefault(row.unit_code, [])
            else:
                into = self._by_tier.setdefault(row.tier or "", [])
            into.append((row.period_from, row.rate))
        for table in (self._by_tier, self._by_unit):
            for entries in table.values():
                entries.sort()

    @staticmethod
    def _latest(entries: list[tuple[str, float]] | None, period: str) -> float | None:
        found = None
        for start, rate in entries or ():
            if start <= period:
                found = rate
        return found

    def for_unit(self, code: str, tier: str, period: str) -> float:
        own = self._latest(self._by_unit.get(code), period)
        if own is not None:
            return own
        return self.for_tier(tier, period)

    def for_tier(self, tier: str, period: str) -> float:
        rate = self._latest(self._by_tier.get(tier), period)
        return rate if rate is not None else DEFAULT_TARGETS[tier]


def load_targets(session: Session) -> Targets:
    return Targets(session.scalars(select(Target)))


DEPTH = len(TIERS) + 1
"""How far up a figure climbs: deeper than any tree, so a cycle in bad data stops there."""


def _union(parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else union_all(*parts)


def rollup_query(dialect: str, start: str, end: str, root: str | None = None, zone_name: str = DEFAULT_ZONE) -> Any:
    """One grouped query: per unit and month, the unit's own figures and its subtree's, each
    month rolled up the tree valid in that month; and one row with a null unit and month
    counting the unattributed dossiers. Columns: ``unit, month, basis`` (1 when the unit's
    received dossiers were imported one per row in the range), then ``received, digitized,
    results, unmatched`` of its own and the same prefixed ``sub_`` for its subtree.

    How, all in the database: the units valid in the range (the latest record per code) and,
    for the few units whose parent changes within it, their record of each month; the own
    figures from the four sources on each unit's basis (dossiers matched by code for the units
    that have them in the range, else the monthly counts and the pages); a recursive climb
    carrying each (unit, month)'s figures to every ancestor valid that month (up to ``root``);
    one GROUP BY."""
    u = Unit.__table__.c
    first, last = periods.first_day(start), periods.last_day(end)
    in_range = and_(u.valid_from <= last, or_(u.valid_to.is_(None), u.valid_to >= first))
    latest = select(u.code, u.parent_code, func.row_number().over(partition_by=u.code, order_by=u.valid_from.desc())
                    .label("n")).where(in_range).subquery()
    tree = select(latest.c.code, latest.c.parent_code.label("parent")).where(latest.c.n == 1).cte("tree")
    moving = (select(u.code).where(in_range).group_by(u.code)
              .having(func.count(func.distinct(func.coalesce(u.parent_code, ""))) > 1))
    months = _union([select(literal(m, String(7)).label("month"), literal(periods.first_day(m), Date).label("lo"),
                            literal(periods.last_day(m), Date).label("hi")) for m in periods.months(start, end)]
                    ).cte("range_months")
    records = (select(u.code, months.c.month, u.parent_code,
                      func.row_number().over(partition_by=(u.code, months.c.month), order_by=u.valid_from.desc())
                      .label("n"))
               .select_from(Unit.__table__.join(months, and_(u.valid_from <= months.c.hi,
                                                            or_(u.valid_to.is_(None), u.valid_to >= months.c.lo))))
               .where(u.code.in_(moving)).subquery())
    moved = select(records.c.code, records.c.month, records.c.parent_code.label("parent")) \
        .where(records.c.n == 1).cte("moved")

    from fleet.dossiers.reconcile import cells_query, unmatched_query

    cells = cells_query(start, end).cte("cells")
    by_rows = select(cells.c.unit).where(cells.c.unit.is_not(None))
    unmatched = unmatched_query(dialect, start, end, zone_name).subquery()
    counted = received_counts_query(start, end).subquery()
    # The units on the per-dossier basis count their digitized dossiers from the cells: their
    # first accepted pages (most of a province's, a year of them) are left out before grouping
    # by month in the zone. Only those in the tree: the others' count as unattributed.
    in_tree_by_rows = select(cells.c.unit).where(cells.c.unit.in_(select(tree.c.code)))
    digitized = digitized_counts_query(dialect, start, end, zone_name, skip=in_tree_by_rows).cte("digitized")
    zero = literal(0, Integer)
    raw = union_all(
        select(cells.c.unit, cells.c.month, literal(1, Integer).label("basis"), cells.c.received, cells.c.digitized,
               cells.c.results, zero.label("unmatched")),
        select(unmatched.c.unit, unmatched.c.month, zero, zero, zero, zero, unmatched.c.unmatched)
        .where(unmatched.c.unit.in_(by_rows)),
        select(counted.c.unit, counted.c.month, zero, counted.c.received, zero, zero, zero)
        .where(counted.c.unit.not_in(by_rows)),
        select(digitized.c.unit, digitized.c.month, zero, zero, digitized.c.digitized, zero, zero)
        .where(digitized.c.unit.not_in(by_rows)),
    ).subquery()
    figures = ("received", "digitized", "results", "unmatched")
    # Integers, not the NUMERIC that a SUM of BIGINT counts gives: PostgreSQL adds these up
    # cheaply and in a fraction of the memory (the final grouping of a year of 3,000 units took
    # 104 MB and 0.9 s with them, 14 MB and 0.1 s without).
    own = (select(raw.c.unit, raw.c.month, func.max(raw.c.basis).label("basis"),
                  *[cast(func.sum(cast(raw.c[f], Integer)), Integer).label(f) for f in figures])
           .where(raw.c.unit.in_(select(tree.c.code))).group_by(raw.c.unit, raw.c.month).subquery())

    up = select(own.c.unit.label("node"), own.c.month, literal(0, Integer).label("depth"),
                *[own.c[f] for f in (*figures, "basis")]).cte("climb", recursive=True)
    here, above = tree.alias("here"), tree.alias("above")
    parent = case((moved.c.code.is_not(None), moved.c.parent), else_=here.c.parent)
    step = (select(parent, up.c.month, up.c.depth + 1, *[up.c[f] for f in (*figures, "basis")])
            .select_from(up.join(here, here.c.code == up.c.node)
                         .outerjoin(moved, and_(moved.c.code == up.c.node, moved.c.month == up.c.month))
                         .join(above, above.c.code == parent))
            .where(up.c.depth < DEPTH, *([up.c.node != root] if root is not None else [])))
    up = up.union_all(step)
    mine = up.c.depth == 0
    rolled = select(up.c.node.label("unit"), up.c.month, func.max(case((mine, up.c.basis), else_=0)),
                    *[cast(func.sum(case((mine, up.c[f]), else_=0)), Integer) for f in figures],
                    *[cast(func.sum(up.c[f]), Integer) for f in figures]).group_by(up.c.node, up.c.month)
    lost = or_(digitized.c.unit.is_(None), digitized.c.unit.not_in(select(tree.c.code)))
    unattributed = select(null(), null(), zero, zero, zero, zero, zero, zero,
                          cast(func.coalesce(func.sum(digitized.c.digitized), 0), Integer), zero, zero).where(lost)
    return union_all(rolled, unattributed)


def progress(session: Session, start: str, end: str, root: str | None = None,
             zone_name: str = DEFAULT_ZONE) -> Progress:
    """Figures for every unit of the tree valid in the range (as at its end), under ``root``;
    each month rolled up the tree valid in that month. Moments (pages, documents) fall in the
    months of the zone ``zone_name`` (the fleet's ``time_zone``)."""
    months = periods.months(start, end)
    # Plain rows, not 3,000 ORM objects: the units valid in the range, the latest record per code.
    u = Unit.__table__.c
    first, last = periods.first_day(start), periods.last_day(end)
    tree = {row.code: row for row in session.connection().execute(
        select(u.code, u.name, u.tier, u.parent_code)
        .where(u.valid_from <= last, or_(u.valid_to.is_(None), u.valid_to >= first)).order_by(u.valid_from))}
    if root is not None and root not in tree:
        raise NotFound(f"no unit {root} valid in {start}..{end}")
    children: dict[str | None, list[str]] = {}
    for unit in tree.values():
        children.setdefault(unit.parent_code if unit.parent_code in tree else None, []).append(unit.code)
    for kids in children.values():
        kids.sort()

    targets = load_targets(session)
    order: list[tuple[str, int]] = []
    stack = [(root, 0)] if root is not None else [(code, 0) for code in reversed(children.get(None, []))]
    while stack:
        code, depth = stack.pop()
        order.append((code, depth))
        stack.extend((kid, depth + 1) for kid in reversed(children.get(code, [])))

    # Every unit's own figures and its subtree's, per month, rolled up in the database.
    own: dict[str, list[int]] = {}
    subtree: dict[str, list[int]] = {}
    trend: dict[str, dict[str, Figures]] = {}
    by_rows: set[str] = set()
    unattributed = 0
    dialect = session.get_bind().dialect.name
    connection = session.connection()
    if dialect == "postgresql":  # a year of 3,000 units is ~70,000 rows to group: in memory, not spilled to disk
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    found = connection.execute(rollup_query(dialect, start, end, root, zone_name)).all()
    for code, month, basis, r0, d0, k0, u0, r, d, k, n in found:  # integers on both dialects
        if code is None:
            unattributed += d
            continue
        if basis:
            by_rows.add(code)
        mine, below = own.get(code), subtree.get(code)
        if mine is None or below is None:
            mine, below = own[code], subtree[code] = [0, 0, 0, 0], [0, 0, 0, 0]
            trend[code] = {}
        mine[0] += r0
        mine[1] += d0
        mine[2] += k0
        mine[3] += u0
        below[0] += r
        below[1] += d
        below[2] += k
        below[3] += n
        trend[code][month] = Figures(r, d, k, n)

    result: dict[str, UnitProgress] = {}
    none: dict[str, Figures] = {}
    for code, depth in order:
        unit = tree[code]
        months_of = trend.get(code, none)
        result[code] = UnitProgress(
            code=code, name=unit.name, tier=unit.tier,
            parent_code=unit.parent_code if unit.parent_code in tree else None, depth=depth,
            own=Figures(*own.get(code, (0, 0, 0, 0))), total=Figures(*subtree.get(code, (0, 0, 0, 0))),
            target=targets.for_unit(code, unit.tier, end), basis="dossiers" if code in by_rows else "counts",
            children=children.get(code, []), trend={m: months_of.get(m) or Figures() for m in months})

    tiers: list[TierTotal] = []
    for tier in TIERS:
        rows = [r for r in result.values() if r.tier == tier]
        if not rows:
            continue
        figures = Figures()
        for r in rows:
            figures.add(r.own)
        tiers.append(TierTotal(tier=tier, units=len(rows), figures=figures, target=targets.for_tier(tier, end),
                               met=sum(r.status == "met" for r in rows),
                               behind=sum(r.status == "behind" for r in rows)))
    total = Figures()
    for r in result.values():
        total.add(r.own)
    return Progress(start=start, end=end, root=root, units=result, tiers=tiers, total=total,
                    unattributed=unattributed, months=months)
