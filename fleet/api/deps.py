"""FastAPI dependencies: the app's state and a database session per request."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from fleet.api.state import FleetState, fleet_state
from fleet.enroll.runtime import EnrollRuntime


def get_state(request: Request) -> FleetState:
    return fleet_state(request.app)


StateDep = Annotated[FleetState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def runtime_of(request: Request) -> EnrollRuntime:
    """The app's enrollment runtime; 503 when this fleet has no CA configured (or is not open)."""
    runtime = fleet_state(request.app).services.enroll
    if runtime is None:
        raise HTTPException(503, "enrollment is not configured on this fleet (pki.ca_dir)")
    return runtime


async def import_body(request: Request, state: FleetState) -> bytes:
    """A CSV import's body, read up to ``http.max_import_bytes``: 413 beyond it (by its declared
    length before reading, else as soon as the stream passes it), so a huge upload is not
    held in memory whole."""
    limit = state.config.http.max_import_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"larger than {limit} bytes; split the file")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"larger than {limit} bytes; split the file")
        parts.append(chunk)
    return b"".join(parts)
