"""FastAPI dependencies: the app's state and a database session per request."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from fleet.api.state import FleetState


def get_state(request: Request) -> FleetState:
    state: FleetState = request.app.state.fleet
    return state


StateDep = Annotated[FleetState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
