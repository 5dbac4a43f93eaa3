"""``/api/v1/files/{sha256}``: page files, content-addressed and idempotent.

A device ``PUT``s the raw bytes under their sha256, in a request signed with its certificate's
key (:mod:`fleet.enroll.deviceauth`; the signature covers the path's sha256, and the body must
hash to it): the uploader recorded is the certificate's name, never a header the device could
choose (401 with the reason when the signature, certificate or clock is wrong, or the device is
revoked). The body is streamed to a temporary file and hashed; 201 when stored, 200 when already
held, 400 when the content does not match the sha256 (nothing is stored), 413 over the size
limit. The device deletes its copy only after 200 or 201. ``HEAD`` (is it held?) answers a
device about the files it uploaded, or a user within their units; ``GET`` (the bytes) a user,
within their units.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import select

from fleet.api.deps import SessionDep, StateDep
from fleet.api.schemas import FileOut
from fleet.api.schemas.media import HELD_FILE_TYPES, file_answer
from fleet.api.state import FleetState
from fleet.auth.deps import CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope, page_unit, visible_units
from fleet.db import insert_ignore
from fleet.enroll.deviceauth import authenticate_device, device_or_user
from fleet.errors import ChecksumMismatch
from fleet.models import Device, Page, StoredFile
from fleet.storage import SNIFF_BYTES, SUFFIXES, TooLarge, served_type, sniff

log = logging.getLogger(__name__)

router = APIRouter(prefix="/files", tags=["files"])

Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of the content")]


def _record(state: FleetState, sha256: str, size: int, content_type: str, device: str) -> tuple[bool, StoredFile]:
    """Insert the file's row unless present; True when inserted now."""
    with state.sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        result = session.execute(
            insert_ignore(dialect, StoredFile.__table__).returning(StoredFile.__table__.c.sha256),
            [{"sha256": sha256, "size": size, "content_type": content_type, "stored_at": datetime.now(UTC),
              "uploaded_by": device}],
        )
        inserted = result.first() is not None
        row = session.scalars(select(StoredFile).where(StoredFile.sha256 == sha256)).one()
        return inserted, row


@router.put(
    "/{sha256}",
    status_code=201,
    responses={
        200: {"model": FileOut, "description": "Already held (idempotent repeat)"},
        201: {"description": "Stored"},
        400: {"description": "The content's sha256 is not the one in the path: nothing stored"},
        401: {"description": "Not a valid signed device request (detail: the reason, e.g. revoked)"},
        413: {"description": "Larger than the fleet accepts"},
        415: {"description": "Not a PNG, JPEG, TIFF, PDF or gzip file (by its content): nothing stored"},
    },
)
async def put_file(
    sha256: Sha256Path,
    request: Request,
    response: Response,
    state: StateDep,
) -> FileOut:
    """Store a page file under its sha256, uploaded by the device whose certificate signed the request."""
    peer = await run_in_threadpool(lambda: authenticate_device(request, state, body_sha256=sha256))
    device = peer.name
    limit = state.config.storage.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        state.metrics.upload_rejected.labels(reason="too_large").inc()
        raise HTTPException(413, f"larger than {limit} bytes")
    pending = await run_in_threadpool(state.store.begin, sha256, limit)
    head = b""
    media: str | None = None
    try:
        async for chunk in request.stream():
            if media is None and len(head) < SNIFF_BYTES:
                head += chunk[:SNIFF_BYTES]
                if len(head) >= SNIFF_BYTES and sniff(head) is None:
                    break
            pending.write(chunk)
        media = sniff(head)
        if media is None:
            state.metrics.upload_rejected.labels(reason="type").inc()
            log.warning("upload from %s refused: not a PNG, JPEG, TIFF, PDF or gzip file", device)
            raise HTTPException(415, "only PNG, JPEG, TIFF, PDF and gzip files are taken (by their content)")
        created = await run_in_threadpool(pending.commit)
    except TooLarge:
        state.metrics.upload_rejected.labels(reason="too_large").inc()
        raise HTTPException(413, f"larger than {limit} bytes") from None
    except ChecksumMismatch:
        state.metrics.upload_rejected.labels(reason="checksum").inc()
        log.warning("upload from %s refused: content does not match its sha256", device)
        raise HTTPException(400, "the content's sha256 differs from the one in the path; nothing stored") from None
    finally:
        pending.abort()
    # The type is the content's, whatever the uploader declared (a page never becomes HTML).
    inserted, row = await run_in_threadpool(_record, state, sha256, pending.size, media, device)
    if created or inserted:
        state.metrics.files_stored.inc()
        log.info("stored file %s from %s (%d bytes)", sha256[:12], device, pending.size)
        if media == "application/pdf":
            state.services.wake_signing()  # a closed document's file: sign it now
    else:
        response.status_code = 200
    return FileOut.model_validate(row)


def _held(state: FleetState, session: SessionDep, sha256: str) -> StoredFile:
    row = session.get(StoredFile, sha256)
    if row is None or not state.store.has(sha256):
        raise HTTPException(404, "not held")
    return row


def _require_visible(session: SessionDep, user: Principal, sha256: str) -> None:
    """OutOfScope (404) unless a page of the user's units refers to the file (by the page's own
    unit, see :func:`fleet.progress.rates.page_in_units`), or, for a file no page refers to
    (collected logs), one of their devices uploaded it."""
    visible = visible_units(session, user)
    if visible is None:
        return
    pages = list(session.scalars(select(Page).where(Page.sha256 == sha256)))
    if pages:
        units = {u for u in (page_unit(session, page) for page in pages) if u is not None}
    else:
        uploader = select(StoredFile.uploaded_by).where(StoredFile.sha256 == sha256).scalar_subquery()
        units = {u for u in session.scalars(select(Device.unit_code).where(Device.id == uploader)) if u is not None}
    if not units & visible:
        raise OutOfScope("not held", unit_code=min(units) if units else None)


@router.head("/{sha256}", response_class=Response, responses={200: file_answer("Held (no body)", *HELD_FILE_TYPES),
                                     404: {"description": "Not held, or not the caller's to know about"}})
def head_file(sha256: Sha256Path, request: Request, state: StateDep, session: SessionDep) -> Response:
    """200 when the fleet holds the file, 404 otherwise (the body is empty either way). Asked by a
    device before uploading (signed): 200 only for a file that device uploaded itself, so a hash
    seen elsewhere tells it nothing about another unit's files (it uploads, and the fleet answers
    200 "already held" to the bytes only). Or by a user: 404 alike for a file outside their units
    and for one not held."""
    caller = device_or_user(request, state)
    if isinstance(caller, Principal):
        _require_visible(session, caller, sha256)
        row = _held(state, session, sha256)
    else:
        row = _held(state, session, sha256)
        if row.uploaded_by != caller.name:
            raise HTTPException(404, "not held")
    return Response(status_code=200, headers={"X-Sohoa-Size": str(row.size), "ETag": f'"{sha256}"'},
                    media_type=served_type(row.content_type))


@router.get("/{sha256}", response_class=FileResponse,
            responses={200: file_answer("The file, as an attachment", *HELD_FILE_TYPES)})
def get_file(sha256: Sha256Path, state: StateDep, session: SessionDep, user: CurrentUser) -> FileResponse:
    """The file's bytes (each download is audited). A unit's users get only files of their units'
    devices: a page of theirs refers to it, or one of their devices uploaded it."""
    row = _held(state, session, sha256)
    _require_visible(session, user, sha256)
    media = served_type(row.content_type)
    # An attachment, never shown inline: with nosniff and the sandboxing CSP (fleet.api.security).
    return FileResponse(state.store.path(sha256), media_type=media, filename=f"{sha256}{SUFFIXES.get(media, '')}",
                        headers={"ETag": f'"{sha256}"'})
