"""``/api/v1/pages``: captured pages, filtered, and their files."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.deps import Offset, SessionDep, StateDep
from fleet.api.schemas import PageOut
from fleet.api.schemas.media import HELD_FILE_TYPES, file_answer
from fleet.auth.deps import CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import page_unit, require_unit, visible_units
from fleet.models import Page, StoredFile
from fleet.progress.rates import page_in_units
from fleet.storage import SUFFIXES, served_type

router = APIRouter(prefix="/pages", tags=["pages"])


def _out(page: Page, held: bool) -> PageOut:
    out = PageOut.model_validate(page)
    return out.model_copy(update={"file_available": held, "file_url": f"/api/v1/pages/{page.page_id}/file"})


@router.get("")
def list_pages(
    session: SessionDep,
    user: CurrentUser,
    device_id: Annotated[str | None, Query(description="Only pages from this device")] = None,
    dossier_code: Annotated[str | None, Query(description="Only pages of this dossier")] = None,
    batch_id: Annotated[str | None, Query(description="Only pages of this scan batch")] = None,
    since: Annotated[datetime | None, Query(description="Captured at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="Captured before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first")] = 100,
    offset: Offset = 0,
) -> list[PageOut]:
    """Pages you may see (a unit's users: pages that came in under their units), newest capture
    first (within a batch, by sequence)."""
    query = select(Page, StoredFile.sha256).outerjoin(StoredFile, StoredFile.sha256 == Page.sha256)
    visible = visible_units(session, user)
    if visible is not None:
        query = query.where(page_in_units(visible))
    if device_id is not None:
        query = query.where(Page.device_id == device_id)
    if dossier_code is not None:
        query = query.where(Page.dossier_code == dossier_code)
    if batch_id is not None:
        query = query.where(Page.batch_id == batch_id)
    if since is not None:
        query = query.where(Page.captured_at >= _aware(since))
    if until is not None:
        query = query.where(Page.captured_at < _aware(until))
    query = query.order_by(Page.captured_at.desc(), Page.sequence.desc(), Page.page_id).limit(limit).offset(offset)
    return [_out(page, held is not None) for page, held in session.execute(query)]


def visible_page(session: Session, user: Principal, page_id: str) -> Page:
    """The page, or 404 when there is none or it is outside the user's units (audited)."""
    page = session.get(Page, page_id)
    if page is None:
        raise HTTPException(404, "no such page")
    require_unit(session, user, page_unit(session, page), detail="no such page")
    return page


@router.get("/{page_id}")
def get_page(page_id: str, session: SessionDep, user: CurrentUser) -> PageOut:
    page = visible_page(session, user, page_id)
    return _out(page, session.get(StoredFile, page.sha256) is not None)


@router.get("/{page_id}/file", response_class=FileResponse,
            responses={200: file_answer("The page's file", *HELD_FILE_TYPES), 404: {"description": "not (yet) held"}})
def get_page_file(page_id: str, state: StateDep, session: SessionDep, user: CurrentUser) -> FileResponse:
    """The page's file, byte for byte as the device captured it (each download is audited)."""
    page = visible_page(session, user, page_id)
    path = state.store.path(page.sha256)
    held = session.get(StoredFile, page.sha256)
    if held is None or not path.is_file():
        raise HTTPException(404, "the page's file has not been uploaded yet")
    media = served_type(held.content_type)  # the content's type, not what the page event claimed
    name = f"{page.dossier_code or page.batch_id}.{page.sequence}{SUFFIXES.get(media, '')}"
    return FileResponse(path, media_type=media, filename=name,
                        headers={"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{page.sha256}"'})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
