"""FastAPI dependencies: the app's state and a database session per request."""

import json
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from fleet.api.state import FleetState, fleet_state
from fleet.enroll.runtime import EnrollRuntime

MAX_ROW_ID = 2**63 - 1
"""The largest integer a database column takes (SQLite and PostgreSQL BIGINT): a larger id or
offset in a request is a 422 here, not an overflow in the driver."""

Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="Skip this many")]
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The row's id")]


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


UNIT_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.]{0,63}$"  # 2-5 digits, or an agency code: 000.00.12.H10

Body = TypeVar("Body", bound=BaseModel)


def secret_body(model: type[Body]) -> Any:
    """A dependency parsing a JSON body into ``model``; a 422 names the fields and problems but,
    unlike FastAPI's, never echoes the input (it may hold a password)."""

    async def parse(request: Request) -> Body:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            raise HTTPException(422, "the body is not JSON") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_input=False)]
            raise HTTPException(422, problems) from None

    return Depends(parse)
