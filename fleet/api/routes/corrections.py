"""``/api/v1/corrections``: the pages clerks and citizens re-typed, and their export as a
training set (``export.zip``: the page files and ``labels.csv``)."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep
from fleet.api.state import FleetState
from fleet.auth.deps import CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import in_scope, require_unit_filter
from fleet.corrections.store import Correction, export_zip, latest_corrections

router = APIRouter(prefix="/corrections", tags=["corrections"])

ClassId = Annotated[
    str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Only pages corrected to this class")
]


class CorrectionOut(BaseModel):
    """The latest correction of one page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    page_id: str
    sha256: str = Field(description="The page file's sha256 (``/api/v1/files/{sha256}``)")
    doctype: str = Field(description="The class the page was corrected to")
    previous: str | None = Field(description="The class it had before (the model's, or an earlier correction's)")
    by: str = Field(description="Who corrected it: clerk, citizen or admin (a role, never a person)")
    device_id: str
    unit: str | None
    corrected_at: datetime
    corrections: int = Field(description="How many times the page was corrected; the latest wins")
    file_available: bool = Field(description="The page's file has been uploaded (only those are exported)")
    file_name: str = Field(description="The file's path inside export.zip")


def _out(c: Correction) -> CorrectionOut:
    return CorrectionOut(page_id=c.page_id, sha256=c.sha256, doctype=c.doctype, previous=c.previous, by=c.by,
                         device_id=c.device_id, unit=c.unit, corrected_at=c.corrected_at, corrections=c.corrections,
                         file_available=c.file_available, file_name=c.file_name)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


Device = Annotated[str | None, Query(description="Only corrections made on this device")]
Unit = Annotated[str | None, Query(description="Only devices of this unit (403 outside your units)")]
Since = Annotated[datetime | None, Query(description="Latest correction at or after this time")]
Until = Annotated[datetime | None, Query(description="Latest correction before this time")]


def _visible(state: FleetState, session: Session, user: Principal, device_id: str | None, unit: str | None,
             doctype: str | None, since: datetime | None, until: datetime | None) -> list[Correction]:
    """The latest correction of each page matching the filters, within the user's units (403 for
    a ``unit`` outside them), oldest first."""
    visible = require_unit_filter(session, user, unit)
    return [c for c in latest_corrections(session, device_id=device_id, unit=unit, doctype=doctype,
                                          since=_aware(since), until=_aware(until), store=state.store)
            if in_scope(visible, c.unit)]


@router.get("")
def list_corrections(
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    device_id: Device = None,
    unit: Unit = None,
    doctype: ClassId = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="At most this many, most recent first")] = 1000,
) -> list[CorrectionOut]:
    """Corrected pages (latest correction of each) of your units' devices, most recent first."""
    found = _visible(state, session, user, device_id, unit, doctype, since, until)
    return [_out(c) for c in reversed(found[-limit:])]


@router.get("/export.zip", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "The training set"}})
def export_corrections(
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    device_id: Device = None,
    unit: Unit = None,
    doctype: ClassId = None,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """The corrected pages whose file is held, under ``pages/<doctype>/<sha256>.<ext>``, and
    ``labels.csv`` (sha256, file, doctype, previous, device, unit, corrected_at), streamed.
    Read back by ``python -m training.train --corrections <unzipped dir>``."""
    found = _visible(state, session, user, device_id, unit, doctype, since, until)
    stamp = state.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(export_zip(found, state.store), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="corrections-{stamp}.zip"'})
