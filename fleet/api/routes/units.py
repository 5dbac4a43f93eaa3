"""``/api/v1/units``: the unit tree (every record with its history, or those valid on a day) and
its CSV import (the province admin's, all or nothing)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from fleet.api.deps import SessionDep, StateDep, import_body
from fleet.auth.deps import CurrentUser, ProvinceAdmin
from fleet.progress.csvio import ImportRejected
from fleet.progress.models import Unit
from fleet.progress.schemas import CSV_BODY, ImportOut, UnitOut, import_rejected
from fleet.progress.units import import_units

router = APIRouter(prefix="/units", tags=["progress"])





@router.get("")
def list_units(session: SessionDep, _: CurrentUser,
               on: Annotated[date | None, Query(description="Only units valid on this day")] = None,
               tier: Annotated[str | None, Query(description="Only this tier")] = None) -> list[UnitOut]:
    """Every unit record (with its history), or those valid on a day."""
    query = select(Unit).order_by(Unit.code, Unit.valid_from)
    if on is not None:
        query = query.where(Unit.valid_from <= on, Unit.valid_to.is_(None) | (Unit.valid_to >= on))
    if tier is not None:
        query = query.where(Unit.tier == tier)
    return [UnitOut.of(u) for u in session.scalars(query)]


@router.post("/import", openapi_extra=CSV_BODY,
          responses={422: {"description": "Bad rows, line by line; nothing imported"},
                     413: {"description": "Larger than http.max_import_bytes"}})
async def import_units_csv(request: Request, state: StateDep, _: ProvinceAdmin) -> ImportOut:
    """The unit tree as CSV (code,name,tier,parent_code,valid_from,valid_to): all or nothing."""
    data = await import_body(request, state)
    with state.sessions() as session:
        try:
            result = import_units(session, data)
        except ImportRejected as exc:
            raise import_rejected(exc) from exc
    return ImportOut(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged)
