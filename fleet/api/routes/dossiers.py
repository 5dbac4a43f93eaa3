"""``/api/v1/dossiers``: the dossier registry (received and digitized, matched by code), the
received list's import, the chase list, naming a walk-in dossier and its named PDFs.

Scope: a dossier belongs to the unit that received it and to the unit whose device digitized
it; a user with a unit sees the dossiers of their subtree, and one outside it is answered 404
exactly like a missing one (audited)."""

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fleet.api.deps import Offset, SessionDep, StateDep, import_body
from fleet.api.schemas.media import PDF, XLSX, file_answer
from fleet.auth.deps import AdminUser, CurrentUser, ProvinceAdmin
from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope, require_unit_filter, subtree, visible_units
from fleet.db import run_again
from fleet.dossiers import codes, pdf, reconcile, registry
from fleet.dossiers.models import OPERATOR_KINDS, Dossier, DossierDocument
from fleet.dossiers.received import ReceivedRow, import_received, parse_csv
from fleet.dossiers.recount import recount
from fleet.dossiers.schemas import (
    STATE_HELP,
    ChaseOut,
    DocumentOut,
    DossierDetailOut,
    DossierOut,
    DossierPageOut,
    NameIn,
    PendingOut,
    ReceivedDossierIn,
    ReceivedImportOut,
    State,
    SummaryOut,
    UnitSummaryOut,
)
from fleet.errors import NotFound
from fleet.models import Page, StoredFile
from fleet.progress import periods
from fleet.progress.csvio import ImportRejected
from fleet.progress.models import Unit
from fleet.progress.units import units_in

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dossiers", tags=["dossiers"])

CSV_BODY = {"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}}
NOT_FOUND = "no such dossier"
MonthQ = Annotated[str | None, Query(description="A month, YYYY-MM")]
UnitQ = Annotated[str | None, Query(description="Root of the subtree (default: your units)")]


def _level(value: str | None) -> Literal["B-B", "B-T"] | None:
    return "B-B" if value == "B-B" else "B-T" if value == "B-T" else None


def _month(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return periods.check(value)
    except periods.BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc


def _in_units(units: frozenset[str]) -> ColumnElement[bool]:
    """The dossiers of ``units``: received by one, or digitized by one's device."""
    codes_ = sorted(units)
    return or_(Dossier.received_unit.in_(codes_), Dossier.digitized_unit.in_(codes_))


def _units(session: Session, user: Principal, unit: str | None) -> frozenset[str] | None:
    """The units a request covers: ``unit``'s subtree (403 outside the user's), else the user's."""
    visible = require_unit_filter(session, user, unit)
    if unit is None:
        return visible
    if session.scalar(select(Unit.code).where(Unit.code == unit).limit(1)) is None:
        raise HTTPException(404, f"no unit {unit}")
    return subtree(session, unit)


def _state(state: State) -> ColumnElement[bool]:
    if state == "walk_in":
        return and_(Dossier.walk_in.is_(True), Dossier.named_code.is_(None))
    if state == "named":
        return and_(Dossier.walk_in.is_(True), Dossier.named_code.is_not(None))
    not_walk_in = Dossier.walk_in.is_(False)
    if state == "unmatched":
        return and_(not_walk_in, Dossier.received_on.is_(None))
    if state == "received":
        return and_(not_walk_in, Dossier.received_on.is_not(None), Dossier.component_at.is_(None))
    return and_(not_walk_in, Dossier.received_on.is_not(None), Dossier.component_at.is_not(None))


@router.get("")
def list_dossiers(
    fleet: StateDep,
    session: SessionDep,
    user: CurrentUser,
    code: Annotated[str | None, Query(description="A code, or its beginning (case does not matter)")] = None,
    unit: UnitQ = None,
    state: Annotated[State | None, Query(description=STATE_HELP)] = None,
    received_from: MonthQ = None,
    received_to: MonthQ = None,
    digitized_from: MonthQ = None,
    digitized_to: MonthQ = None,
    operator_kind: Annotated[str | None, Query(description="unit_staff, postal_staff or citizen")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[DossierOut]:
    """Dossiers you may see, by code."""
    query = select(Dossier)
    units = _units(session, user, unit)
    if units is not None:
        query = query.where(_in_units(units))
    if code:
        wanted = codes.normalize(code)
        query = query.where(or_(Dossier.code == wanted, Dossier.code.startswith(wanted, autoescape=True)))
    if state is not None:
        query = query.where(_state(state))
    if received_from := _month(received_from):
        query = query.where(Dossier.received_period >= received_from)
    if received_to := _month(received_to):
        query = query.where(Dossier.received_period <= received_to)
    digitized_from, digitized_to = _month(digitized_from), _month(digitized_to)
    if digitized_from or digitized_to:
        lo, hi = periods.utc_bounds(digitized_from or "1970-01", digitized_to or "9998-12",
                                    fleet.config.time_zone)
        query = query.where(Dossier.component_at >= lo, Dossier.component_at < hi)
    if operator_kind is not None:
        if operator_kind not in OPERATOR_KINDS:
            raise HTTPException(422, f"operator_kind is one of {', '.join(OPERATOR_KINDS)}")
        query = query.where(Dossier.operator_kind == operator_kind)
    query = query.order_by(Dossier.code).limit(limit).offset(offset)
    return [DossierOut.of(row) for row in session.scalars(query)]


FromQ = Annotated[str | None, Query(alias="from", description="First month (default: this month)")]
ToQ = Annotated[str | None, Query(alias="to", description="Last month (default: the first)")]


def _months(state: StateDep, start: str | None, end: str | None) -> tuple[str, str]:
    first = _month(start) or periods.of(state.now(), state.config.time_zone)
    last = _month(end) or first
    try:
        periods.months(first, last)
    except periods.BadPeriod as exc:
        raise HTTPException(422, str(exc)) from exc
    return first, last


@router.get("/summary")
def get_summary(state: StateDep, session: SessionDep, user: CurrentUser, unit: UnitQ = None, start: FromQ = None,
                end: ToQ = None) -> SummaryOut:
    """Per unit of the subtree: the dossiers it received in the months and how many of them are
    digitized (matched by code, whenever digitized) or have their result digitized; and the
    dossiers its devices digitized in the months that match nothing received (never in a rate)."""
    first, last = _months(state, start, end)
    units = _units(session, user, unit)
    counts: dict[str, list[int]] = {}
    for (code, _), cell in reconcile.cells(session, first, last).items():
        if units is None or code in units:
            row = counts.setdefault(code, [0, 0, 0, 0])
            row[0] += cell.received
            row[1] += cell.digitized
            row[2] += cell.results
    for (digitizer, _), n in reconcile.unmatched(session, first, last, state.config.time_zone).items():
        if digitizer is not None and (units is None or digitizer in units):
            counts.setdefault(digitizer, [0, 0, 0, 0])[3] += n
    names = {code: u.name for code, u in units_in(session, periods.first_day(first), periods.last_day(last)).items()}

    def out(code: str, name: str | None, figures: list[int]) -> UnitSummaryOut:
        received, digitized, results, unmatched = figures
        return UnitSummaryOut(code=code, name=name, received=received, digitized=digitized, results=results,
                              rate=min(digitized, received) / received if received else None, unmatched=unmatched)

    rows = [out(code, names.get(code), counts[code]) for code in sorted(counts)]
    total = [sum(counts[c][i] for c in counts) for i in range(4)]
    return SummaryOut(start=first, end=last, root=unit, units=rows,
                      total=out(unit or "", names.get(unit) if unit else None, total))


def _chase(state: StateDep, session: Session, user: Principal, unit: str | None, start: str | None,
           end: str | None, limit: int | None, offset: int) -> tuple[str, str, list[reconcile.Pending]]:
    first, last = _months(state, start, end)
    units = _units(session, user, unit)
    return first, last, reconcile.chase(session, units, first, last, limit=limit, offset=offset)


@router.get("/chase")
def get_chase(
    state: StateDep, session: SessionDep, user: CurrentUser, unit: UnitQ = None,
    start: Annotated[str | None, Query(alias="from", description="First month received (default: this month)")] = None,
    end: Annotated[str | None, Query(alias="to", description="Last month received (default: the first)")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000, offset: Offset = 0,
) -> ChaseOut:
    """The chase list: dossiers received by the subtree's units in the months, nothing digitized
    yet, oldest first."""
    first, last, rows = _chase(state, session, user, unit, start, end, limit, offset)
    return ChaseOut(start=first, end=last, root=unit, dossiers=[PendingOut.of(r) for r in rows])


@router.get("/chase.xlsx", response_class=Response, responses={200: file_answer("The workbook", XLSX)})
def get_chase_xlsx(
    state: StateDep, session: SessionDep, user: CurrentUser, unit: UnitQ = None,
    start: Annotated[str | None, Query(alias="from", description="First month received (default: this month)")] = None,
    end: Annotated[str | None, Query(alias="to", description="Last month received (default: the first)")] = None,
) -> Response:
    """The chase list as an Excel workbook (every row)."""
    first, last, rows = _chase(state, session, user, unit, start, end, None, 0)
    title = f"Hồ sơ đã tiếp nhận chưa số hóa, {first}..{last}" + (f", đơn vị {unit}" if unit else "")
    name = f"ho-so-chua-so-hoa_{unit or 'all'}_{first}_{last}.xlsx"
    return Response(reconcile.chase_xlsx(rows, title=title),
                    media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


IMPORT_ATTEMPTS = 5
"""How many times a received import the database undid to break a deadlock is run."""


def _store_received(session: Session, state: StateDep, user: Principal, rows: list[ReceivedRow]) -> ReceivedImportOut:
    visible = visible_units(session, user)
    outside = sorted({r.unit_code.strip() for r in rows if visible is not None and r.unit_code.strip() not in visible})
    if outside:
        raise HTTPException(403, f"units outside your units: {', '.join(outside[:10])}; nothing stored")
    for attempt in range(1, IMPORT_ATTEMPTS + 1):
        try:
            result = import_received(session, rows, now=state.now())
            break
        except ImportRejected as exc:
            problems = [{"line": p.line, "message": p.message} for p in exc.problems]
            raise HTTPException(422, {"message": "nothing imported", "problems": problems}) from exc
        except DBAPIError as exc:
            # Another node's ingest writing the same dossiers' counts in the other order: the
            # database undid this import to break the deadlock; nothing of it is stored.
            session.rollback()
            if not run_again(exc) or attempt == IMPORT_ATTEMPTS:
                raise
            log.info("received import undone by the database (%s), attempt %d: run again",
                     getattr(exc.orig, "sqlstate", "?"), attempt)
    return ReceivedImportOut(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged,
                             repeated=result.repeated)


@router.post("/received", responses={422: {"description": "Bad items (line = item number + 1); nothing stored"}})
def post_received(items: Annotated[list[ReceivedDossierIn], Body()], session: SessionDep, state: StateDep,
                  user: AdminUser) -> ReceivedImportOut:
    """Dossiers received, one per item, from the one-stop system; re-sending changes nothing,
    a corrected item updates its dossier."""
    rows = [ReceivedRow(i + 2, it.code, it.procedure_code, it.unit_code, it.received_date, it.due_date,
                        it.result_date) for i, it in enumerate(items)]
    return _store_received(session, state, user, rows)


@router.post("/received/import", openapi_extra=CSV_BODY,
             responses={422: {"description": "Bad rows, line by line; nothing imported"},
                        413: {"description": "Larger than http.max_import_bytes"}})
async def import_received_csv(request: Request, state: StateDep, user: AdminUser) -> ReceivedImportOut:
    """The same as CSV (code,procedure_code,unit_code,received_date,due_date[,result_date])."""
    data = await import_body(request, state)
    with state.sessions() as session:
        try:
            rows = parse_csv(data)
        except ImportRejected as exc:
            problems = [{"line": p.line, "message": p.message} for p in exc.problems]
            raise HTTPException(422, {"message": "nothing imported", "problems": problems}) from exc
        return _store_received(session, state, user, rows)


@router.post("/recount")
def post_recount(session: SessionDep, state: StateDep, _: ProvinceAdmin) -> dict[str, int]:
    """Recompute every dossier's digitized times from the stored pages and documents."""
    recount(session.connection(), now=state.now())
    session.commit()
    return {"dossiers": session.query(Dossier).count()}


def _visible_dossier(session: Session, user: Principal, code: str) -> Dossier:
    row = session.get(Dossier, codes.normalize(code))
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    visible = visible_units(session, user)
    if visible is not None and row.received_unit not in visible and row.digitized_unit not in visible:
        raise OutOfScope(NOT_FOUND, unit_code=row.received_unit or row.digitized_unit)
    return row


@router.get("/{code}")
def get_dossier(code: str, state: StateDep, session: SessionDep, user: CurrentUser) -> DossierDetailOut:
    """One dossier with its documents and pages (and their quality verdicts)."""
    row = _visible_dossier(session, user, code)
    documents = list(session.scalars(select(DossierDocument).where(DossierDocument.dossier_code == row.code)
                                     .order_by(DossierDocument.kind, DossierDocument.sequence, DossierDocument.id)))
    page_ids = sorted({str(p) for d in documents for p in d.page_ids})
    pages = list(session.scalars(select(Page).where(or_(  # codes as typed: in upper or lower case
        Page.dossier_code.in_([row.code, row.code.lower()]),
        Page.dossier_code.startswith(row.code + "-KQ", autoescape=True),
        Page.page_id.in_(page_ids))).order_by(Page.captured_at, Page.sequence, Page.page_id)))
    held = set(session.scalars(select(StoredFile.sha256).where(
        StoredFile.sha256.in_({d.sha256 for d in documents}))))
    dpi = {p.page_id: p.dpi for p in pages}
    out: list[DocumentOut] = []
    for doc in documents:
        if doc.text_layer is None and doc.sha256 in held:
            path = state.store.path(doc.sha256)
            if path.is_file():
                doc.text_layer = pdf.has_text_layer(path.read_bytes())
        known = [d for p in doc.page_ids if (d := dpi.get(str(p))) is not None]
        out.append(DocumentOut(
            name=doc.name, device_name=doc.device_name, kind="result" if doc.kind == "result" else "component",
            sequence=doc.sequence,
            doctype=doc.doctype, pages=doc.pages, dpi=min(known) if known else None, text_layer=doc.text_layer,
            sha256=doc.sha256, size=doc.size, device_id=doc.device_id, closed_at=doc.closed_at,
            operator_kind=doc.operator_kind, operator_id=doc.operator_id, file_held=doc.sha256 in held,
            download_url=f"/api/v1/dossiers/{row.code}/documents/{doc.name}", signed_sha256=doc.signed_sha256,
            signed_at=doc.signed_at, signing_level=_level(doc.signing_level), signing_error=doc.signing_error))
    session.commit()  # the text layers found
    page_out = [DossierPageOut(
        page_id=p.page_id, device_id=p.device_id, batch_id=p.batch_id, sequence=p.sequence, side=p.side,
        dossier_code=p.dossier_code, doctype=p.doctype, dpi=p.dpi, dropped=p.dropped,
        quality_ok=p.quality.get("ok") if isinstance(p.quality, dict) else None,
        quality_issues=list(p.quality.get("issues", [])) if isinstance(p.quality, dict) else [],
        captured_at=p.captured_at, operator_kind=p.operator_kind, operator_id=p.operator_id,
        file_url=f"/api/v1/pages/{p.page_id}/file") for p in pages]
    base = DossierOut.of(row)
    return DossierDetailOut(**base.model_dump(), documents=out, pages=page_out)


@router.get("/{code}/documents/{name}", response_class=FileResponse,
            responses={200: file_answer("The document", PDF),
                       404: {"description": "No such document, or its file is not held yet"}})
def get_document(code: str, name: str, state: StateDep, session: SessionDep, user: CurrentUser) -> FileResponse:
    """A document's PDF under its name (each download is audited)."""
    row = _visible_dossier(session, user, code)
    doc = session.scalar(select(DossierDocument).where(DossierDocument.dossier_code == row.code,
                                                      DossierDocument.name == name).order_by(DossierDocument.id))
    if doc is None:
        raise HTTPException(404, "no such document")
    path = state.store.path(doc.sha256)
    if session.get(StoredFile, doc.sha256) is None or not path.is_file():
        raise HTTPException(404, "the document's file has not been uploaded yet")
    return FileResponse(path, media_type=PDF, filename=doc.name, headers={"ETag": f'"{doc.sha256}"'})


@router.post("/{walk_in}/name", responses={404: {"description": NOT_FOUND}, 409: {"description": "Not a walk-in"}})
def name_walk_in(walk_in: str, body: NameIn, session: SessionDep, user: AdminUser) -> DossierOut:
    """Give a walk-in dossier (``WALKIN-…``) its code: its documents and pages move to that code
    and count from now on (audited)."""
    _visible_dossier(session, user, walk_in)
    code = codes.normalize(body.code)
    if any(c.isspace() for c in code) or "/" in code:
        raise HTTPException(422, f"{body.code!r} is not a dossier code")
    try:
        named = registry.name_walk_in(session, walk_in, code)
    except NotFound as exc:
        raise HTTPException(404, NOT_FOUND) from exc
    except registry.NotAWalkIn as exc:
        raise HTTPException(409, str(exc)) from exc
    return DossierOut.of(named)
