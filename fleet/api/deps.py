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
