"""Digitization progress: ``/api/v1/progress`` (targets, dossiers received, rates, the series
the charts draw, the periodic report as XLSX/PDF). The dashboard page at ``/progress`` is in
:mod:`fleet.api.routes.web`, the unit tree in :mod:`fleet.api.routes.units`.

Scope: a user with a unit (unit admin, or a viewer limited to one) sees that unit's subtree: a
request without ``unit=`` is rooted at their unit, one naming a unit outside it is refused (403);
they may set their subtree's units' own targets and dossiers received. The unit tree and the
tiers' targets are the province admin's."""

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep, import_body
from fleet.api.schemas.media import PDF, XLSX, file_answer
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import require_unit_filter, subtree, visible_units
from fleet.errors import NotFound
from fleet.progress import periods
from fleet.progress.activity import REASONS, DayPages, Rejects, activity, pages_per_day, rejects_by_reason
from fleet.progress.csvio import ImportRejected
from fleet.progress.models import Target, Unit
from fleet.progress.rates import Progress, progress
from fleet.progress.received import ReceivedRow, import_received, parse_csv
from fleet.progress.report import AdminHeader, build_report, to_pdf, to_xlsx
from fleet.progress.schemas import (
    CSV_BODY,
    ActivityOut,
    DayPagesOut,
    ImportOut,
    PagesPerDayOut,
    ProgressOut,
    ReceivedIn,
    RejectReasonOut,
    RejectsOut,
    TargetIn,
    TargetOut,
    import_rejected,
)

router = APIRouter(prefix="/progress")

FromQ = Annotated[str | None, Query(alias="from", description="First month, YYYY-MM (default: this month)")]
ToQ = Annotated[str | None, Query(alias="to", description="Last month, YYYY-MM (default: the first month)")]
UnitQ = Annotated[str | None, Query(description="Root of the subtree (default: every province)")]




def _root(session: Session, user: Principal, unit: str | None) -> str | None:
    """The subtree a request is about: ``unit``, else the user's own unit (None: every
    province, for those who may see everything). 403 for a unit outside the user's."""
    visible = require_unit_filter(session, user, unit)
    if unit is not None or visible is None:
        return unit
    if user.unit_code is None:
        raise HTTPException(403, "your account has no unit")
    return user.unit_code


def _range(state: StateDep, start: str | None, end: str | None) -> tuple[str, str]:
    start = start or periods.of(state.now(), state.config.time_zone)
    end = end or start
    try:
        periods.months(start, end)
    except periods.BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc
    return start, end


@router.get("/targets")
def list_targets(session: SessionDep, user: CurrentUser) -> list[TargetOut]:
    """Targets per tier and per unit (the units you may see), with the month each starts."""
    visible = visible_units(session, user)
    query = select(Target).order_by(Target.tier, Target.unit_code, Target.period_from)
    return [TargetOut.of(t) for t in session.scalars(query)
            if visible is None or t.unit_code is None or t.unit_code in visible]


@router.put("/targets")
def set_target(target: TargetIn, session: SessionDep, user: AdminUser) -> TargetOut:
    """Set a tier's target (province admin), or one unit's own (its admins too), from a month on
    (replaces the same scope+month)."""
    if (target.tier is None) == (target.unit_code is None):
        raise HTTPException(422, "give either tier or unit_code")
    if target.tier is not None and not user.is_province_admin:
        raise HTTPException(403, "a tier's target is the province admin's")
    require_unit_filter(session, user, target.unit_code)
    try:
        periods.check(target.period_from)
    except periods.BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc
    if target.unit_code is not None and session.scalar(select(Unit).where(Unit.code == target.unit_code)) is None:
        raise HTTPException(422, f"unknown unit code {target.unit_code!r}")
    row = session.scalar(select(Target).where(
        Target.tier.is_(None) if target.tier is None else Target.tier == target.tier,
        Target.unit_code.is_(None) if target.unit_code is None else Target.unit_code == target.unit_code,
        Target.period_from == target.period_from))
    if row is None:
        row = Target(tier=target.tier, unit_code=target.unit_code, period_from=target.period_from, rate=target.rate)
        session.add(row)
    else:
        row.rate = target.rate
    session.commit()
    return TargetOut.of(row)


def _store_received(session: Session, state: StateDep, user: Principal, rows: list[ReceivedRow]) -> ImportOut:
    visible = visible_units(session, user)
    outside = sorted({r.unit_code for r in rows if visible is not None and r.unit_code not in visible})
    if outside:
        raise HTTPException(403, f"units outside your units: {', '.join(outside[:10])}; nothing stored")
    try:
        result = import_received(session, rows, now=state.now)
    except ImportRejected as exc:
        raise import_rejected(exc) from exc
    return ImportOut(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged)


@router.post("/received",
          responses={422: {"description": "Bad items (line = item number + 1); nothing stored"}})
def post_received(items: Annotated[list[ReceivedIn], Body()], session: SessionDep,
                  state: StateDep, user: AdminUser) -> ImportOut:
    """Dossiers received per unit per month from the one-stop system; re-sending replaces."""
    rows = [ReceivedRow(i + 2, it.unit_code, it.period, it.received) for i, it in enumerate(items)]
    return _store_received(session, state, user, rows)


@router.post("/received/import", openapi_extra=CSV_BODY,
          responses={422: {"description": "Bad rows, line by line; nothing imported"},
                     413: {"description": "Larger than http.max_import_bytes"}})
async def import_received_csv(request: Request, state: StateDep, user: AdminUser) -> ImportOut:
    """The same as CSV (unit_code,period,received)."""
    data = await import_body(request, state)
    with state.sessions() as session:
        try:
            rows = parse_csv(data)
        except ImportRejected as exc:
            raise import_rejected(exc) from exc
        return _store_received(session, state, user, rows)


@router.get("", response_model=ProgressOut)
def get_progress(state: StateDep, session: SessionDep, user: CurrentUser, start: FromQ = None, end: ToQ = None,
                 unit: UnitQ = None) -> Response:
    """Received, digitized, rate, target and status for every unit of the subtree, rolled up,
    with the trend month by month."""
    first, last = _range(state, start, end)
    root = _root(session, user, unit)
    try:
        found = progress(session, first, last, root, state.config.time_zone)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    _hide_unattributed(session, user, found)
    # Serialized here from plain dicts (the model is the documented schema; a test holds them equal).
    return Response(ProgressOut.json_of(found), media_type="application/json")


def _hide_unattributed(session: Session, user: Principal, found: Progress) -> None:
    """``unattributed`` counts dossiers outside the subtree too: a province-wide figure, not one
    of a scoped user's units (neither on the dashboard nor in the report)."""
    if visible_units(session, user) is not None:
        found.unattributed = 0


def _units_under(session: Session, root: str | None) -> frozenset[str] | None:
    """The codes counted for ``root`` (None: every unit, and pages with none)."""
    if root is None:
        return None
    if session.scalar(select(Unit.code).where(Unit.code == root).limit(1)) is None:
        raise HTTPException(404, f"no unit {root}")
    return subtree(session, root)


def _days(found: list[DayPages]) -> list[DayPagesOut]:
    return [DayPagesOut(day=d.day, pages=d.pages, rejected=d.rejected) for d in found]


def _rejects(first: str, last: str, root: str | None, found: Rejects) -> RejectsOut:
    reasons = [RejectReasonOut(reason=code, label_vi=REASONS.get(code, (code, code))[0],
                               label_en=REASONS.get(code, (code, code))[1], pages=n)
               for code, n in found.reasons.items()]
    return RejectsOut(start=first, end=last, root=root, pages=found.pages, rejected=found.rejected, reasons=reasons)


@router.get("/pages-per-day")
def get_pages_per_day(state: StateDep, session: SessionDep, user: CurrentUser, start: FromQ = None,
                      end: ToQ = None, unit: UnitQ = None) -> PagesPerDayOut:
    """Pages captured per day (the province's days, up to today) and how many were rejected, for the
    subtree: the dashboard's pages-per-day chart."""
    first, last = _range(state, start, end)
    unit = _root(session, user, unit)
    days = pages_per_day(session, first, last, _units_under(session, unit), until=_today(state),
                         zone_name=state.config.time_zone)
    return PagesPerDayOut(start=first, end=last, root=unit, days=_days(days))


@router.get("/rejects")
def get_rejects(state: StateDep, session: SessionDep, user: CurrentUser, start: FromQ = None, end: ToQ = None,
                unit: UnitQ = None) -> RejectsOut:
    """Pages the quality check rejected over the range, by reason, for the subtree: the
    dashboard's rejects chart."""
    first, last = _range(state, start, end)
    unit = _root(session, user, unit)
    found = rejects_by_reason(session, first, last, _units_under(session, unit), state.config.time_zone)
    return _rejects(first, last, unit, found)


@router.get("/activity")
def get_activity(state: StateDep, session: SessionDep, user: CurrentUser, start: FromQ = None, end: ToQ = None,
                 unit: UnitQ = None) -> ActivityOut:
    """Both chart series at once (pages per day up to today, and rejects by reason over the
    range) from one pass over the pages: what the dashboard asks for."""
    first, last = _range(state, start, end)
    unit = _root(session, user, unit)
    found = activity(session, first, last, _units_under(session, unit), until=_today(state),
                     zone_name=state.config.time_zone)
    pages = PagesPerDayOut(start=first, end=last, root=unit, days=_days(found.days))
    return ActivityOut(pages_per_day=pages, rejects=_rejects(first, last, unit, found.rejects))


def _today(state: StateDep) -> date:
    return periods.today(state.now(), state.config.time_zone)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def report_header(
    agency: Annotated[str, Query(max_length=200, description="Issuing agency (default: the root unit's name)")] = "",
    parent_agency: Annotated[str, Query(max_length=200, description="Its superior agency, above it")] = "",
    number: Annotated[str, Query(max_length=60, description="The report's number, e.g. 12/BC-UBND")] = "",
    place: Annotated[str, Query(max_length=100, description="Place before the date, e.g. Sơn Thủy")] = "",
    recipient: Annotated[list[str] | None, Query(max_length=20, description="Recipients, one per line")] = None,
    signer_title: Annotated[str, Query(max_length=100, description="Signer's title")] = "THỦ TRƯỞNG CƠ QUAN",
    signer: Annotated[str, Query(max_length=100, description="Signer's name")] = "",
) -> AdminHeader:
    """The administrative header and signature block of an exported report (blanks by default).
    A control character in any of them is a 422 naming the parameter (a spreadsheet cell cannot
    hold one)."""
    fields = {"agency": [agency], "parent_agency": [parent_agency], "number": [number], "place": [place],
              "recipient": recipient or [], "signer_title": [signer_title], "signer": [signer]}
    bad = [name for name, values in fields.items() if any(_CONTROL.search(v) for v in values)]
    if bad:
        raise RequestValidationError([{"loc": ("query", name), "msg": "control characters are not allowed",
                                       "type": "value_error"} for name in bad])
    recipients = tuple(r.strip()[:200] for r in recipient or () if r.strip()) or AdminHeader().recipients
    return AdminHeader(agency=agency.strip(), parent_agency=parent_agency.strip(), number=number.strip(),
                       place=place.strip(), recipients=recipients, signer_title=signer_title.strip(),
                       signer=signer.strip())


HeaderDep = Annotated[AdminHeader, Depends(report_header)]


def _report(state: StateDep, session: Session, user: Principal, start: str | None, end: str | None,
            unit: str | None, kind: str, header: AdminHeader) -> Response:
    first, last = _range(state, start, end)
    unit = _root(session, user, unit)
    try:
        report = build_report(session, first, last, unit, now=state.now(),
                              heartbeat_timeout_s=state.config.ingest.heartbeat_timeout_s,
                              time_zone=state.config.time_zone, header=header)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    _hide_unattributed(session, user, report.progress)
    name = f"bao-cao-dinh-ky_{unit or 'all'}_{first}_{last}.{kind}"
    if kind == "xlsx":
        body, media = to_xlsx(report), XLSX
    else:
        body, media = to_pdf(report), PDF
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/report.xlsx", response_class=Response, responses={200: file_answer("The workbook", XLSX)})
def report_xlsx(state: StateDep, session: SessionDep, user: CurrentUser, header: HeaderDep, start: FromQ = None,
                end: ToQ = None, unit: UnitQ = None) -> Response:
    """The periodic report ("Báo cáo định kỳ") as an Excel workbook."""
    return _report(state, session, user, start, end, unit, "xlsx", header)


@router.get("/report.pdf", response_class=Response, responses={200: file_answer("The report", PDF)})
def report_pdf(state: StateDep, session: SessionDep, user: CurrentUser, header: HeaderDep, start: FromQ = None,
               end: ToQ = None, unit: UnitQ = None) -> Response:
    """The periodic report as PDF."""
    return _report(state, session, user, start, end, unit, "pdf", header)
