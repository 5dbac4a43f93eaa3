"""What the progress API takes and returns."""

from datetime import date
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from fleet.progress.csvio import ImportRejected, LineProblem
from fleet.progress.models import Target, Unit
from fleet.progress.rates import Figures, Progress, TierTotal, UnitProgress


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnitOut(BaseModel):
    code: str = Field(description="Official code (province 2 digits, district 3, commune 5)")
    name: str
    tier: str = Field(description="province, district or commune")
    parent_code: str | None
    valid_from: date
    valid_to: date | None = Field(description="Last day the record is valid; null while in force")

    @classmethod
    def of(cls, unit: Unit) -> "UnitOut":
        return cls(code=unit.code, name=unit.name, tier=unit.tier, parent_code=unit.parent_code,
                   valid_from=unit.valid_from, valid_to=unit.valid_to)


class ProblemOut(BaseModel):
    line: int = Field(description="CSV line (1 is the header), or JSON item number + 1")
    message: str

    @classmethod
    def of(cls, problem: LineProblem) -> "ProblemOut":
        return cls(line=problem.line, message=problem.message)


class ImportOut(BaseModel):
    inserted: int
    updated: int
    unchanged: int


class ReceivedIn(_In):
    unit_code: str = Field(max_length=64, description="Unit code valid in the period")
    period: str = Field(description="Month, YYYY-MM")
    received: int = Field(description="Dossiers received by the unit that month (not below zero)")


class TargetIn(_In):
    tier: Literal["province", "agency", "district", "commune"] | None = Field(
        default=None, description="A whole tier's target")
    unit_code: str | None = Field(default=None, max_length=64, description="One unit's own target, over its tier's")
    period_from: str = Field(description="First month it applies to, YYYY-MM")
    rate: float = Field(ge=0, le=1, description="Minimum share of received dossiers digitized, 0..1")


class TargetOut(BaseModel):
    id: int
    tier: str | None
    unit_code: str | None
    period_from: str
    rate: float

    @classmethod
    def of(cls, target: Target) -> "TargetOut":
        return cls(id=target.id, tier=target.tier, unit_code=target.unit_code, period_from=target.period_from,
                   rate=target.rate)


class FiguresOut(BaseModel):
    received: int
    digitized: int
    rate: float | None = Field(description="digitized / received, at most 1; null when nothing was received")
    results: int = Field(description="Received dossiers whose result was digitized (dossiers basis only)")
    result_rate: float | None
    unmatched: int = Field(description="Dossiers digitized that match no received dossier (dossiers basis only); "
                                       "not in any rate")

    @classmethod
    def of(cls, figures: Figures) -> "FiguresOut":
        return cls(received=figures.received, digitized=figures.digitized, rate=figures.rate,
                   results=figures.results, result_rate=figures.result_rate, unmatched=figures.unmatched)


class UnitProgressOut(BaseModel):
    code: str
    name: str
    tier: str
    parent_code: str | None
    depth: int
    own: FiguresOut = Field(description="The unit's own dossiers")
    total: FiguresOut = Field(description="The unit and every unit under it")
    target: float
    status: Literal["met", "behind", "no_data"] = Field(description="Own rate against the target")
    basis: Literal["dossiers", "counts"] = Field(
        description="dossiers: received dossiers imported one per row, matched by code; counts: only monthly "
                    "totals were imported, digitized counted by the month of the first accepted page")
    children: list[str]
    trend: list[FiguresOut] = Field(description="The subtree's figures per month of the range, in order")

    @classmethod
    def of(cls, u: UnitProgress) -> "UnitProgressOut":
        return cls(code=u.code, name=u.name, tier=u.tier, parent_code=u.parent_code, depth=u.depth,
                   own=FiguresOut.of(u.own), total=FiguresOut.of(u.total), target=u.target, status=u.status,
                   basis=u.basis, children=u.children, trend=[FiguresOut.of(f) for f in u.trend.values()])


class TierOut(BaseModel):
    tier: str
    units: int
    figures: FiguresOut
    target: float
    met: int
    behind: int

    @classmethod
    def of(cls, t: TierTotal) -> "TierOut":
        return cls(tier=t.tier, units=t.units, figures=FiguresOut.of(t.figures), target=t.target, met=t.met,
                   behind=t.behind)


class ProgressOut(BaseModel):
    start: str
    end: str
    root: str | None
    months: list[str]
    total: FiguresOut
    unattributed: int = Field(description="Digitized dossiers of devices with no unit, or a unit not in the tree")
    tiers: list[TierOut]
    units: list[UnitProgressOut] = Field(description="Tree order: parent before its children")

    @classmethod
    def of(cls, p: Progress) -> "ProgressOut":
        return cls(start=p.start, end=p.end, root=p.root, months=p.months, total=FiguresOut.of(p.total),
                   unattributed=p.unattributed, tiers=[TierOut.of(t) for t in p.tiers],
                   units=[UnitProgressOut.of(u) for u in p.units.values()])

    @staticmethod
    def json_of(p: Progress) -> bytes:
        """``ProgressOut.of(p).model_dump_json()``, the same bytes, from plain dicts: building
        and checking 3,000 units x 12 months of models cost seconds for a province's year."""
        def figures(f: Figures) -> dict[str, Any]:
            return {"received": f.received, "digitized": f.digitized, "rate": f.rate, "results": f.results,
                    "result_rate": f.result_rate, "unmatched": f.unmatched}

        return to_json({
            "start": p.start, "end": p.end, "root": p.root, "months": p.months, "total": figures(p.total),
            "unattributed": p.unattributed,
            "tiers": [{"tier": t.tier, "units": t.units, "figures": figures(t.figures), "target": t.target,
                       "met": t.met, "behind": t.behind} for t in p.tiers],
            "units": [{"code": u.code, "name": u.name, "tier": u.tier, "parent_code": u.parent_code, "depth": u.depth,
                       "own": figures(u.own), "total": figures(u.total), "target": u.target, "status": u.status,
                       "basis": u.basis, "children": u.children, "trend": [figures(f) for f in u.trend.values()]}
                      for u in p.units.values()]})


class DayPagesOut(BaseModel):
    day: date = Field(description="A day in Vietnam's time")
    pages: int = Field(description="Pages captured that day")
    rejected: int = Field(description="Of those, pages the quality check rejected")


class PagesPerDayOut(BaseModel):
    start: str
    end: str
    root: str | None = Field(description="Root of the subtree counted (null: every unit)")
    days: list[DayPagesOut] = Field(description="Every day of the range up to today, in order")


class RejectReasonOut(BaseModel):
    reason: str = Field(description="The quality check's issue code, or unspecified")
    label_vi: str
    label_en: str
    pages: int = Field(description="Rejected pages with this issue (a page with two issues counts under both)")


class RejectsOut(BaseModel):
    start: str
    end: str
    root: str | None = Field(description="Root of the subtree counted (null: every unit)")
    pages: int = Field(description="Pages captured in the range")
    rejected: int = Field(description="Pages the quality check rejected")
    reasons: list[RejectReasonOut] = Field(description="Most frequent first")


class ActivityOut(BaseModel):
    pages_per_day: PagesPerDayOut
    rejects: RejectsOut


CSV_BODY = {"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}}
"""The OpenAPI request body of the CSV imports."""


def import_rejected(exc: ImportRejected) -> HTTPException:
    """A refused CSV import as 422 with ``detail = {"message", "problems": [{"line", "message"}...]}``."""
    problems = [ProblemOut.of(p).model_dump() for p in exc.problems]
    return HTTPException(422, {"message": "nothing imported", "problems": problems})
