"""What the app holds for its lifetime: config, database, file store, metrics, and the
background services (:class:`fleet.api.services.FleetServices`). One :class:`FleetState` per
app, stored once by the app factory and read back typed with :func:`fleet_state` (requests:
:data:`fleet.api.deps.StateDep`)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fleet.api.services import FleetServices
from fleet.config import FleetConfig
from fleet.metrics import FleetMetrics
from fleet.storage import FileStorage

_KEY = "fleet"


@dataclass
class FleetState:
    config: FleetConfig
    engine: Engine
    sessions: sessionmaker[Session]
    store: FileStorage
    metrics: FleetMetrics
    services: FleetServices = field(default_factory=FleetServices)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The fleet's time (tests move it forward instead of waiting)."""
        return self.clock()

    def attach(self, app: FastAPI) -> None:
        """Store this state on ``app`` (the app factory, once)."""
        setattr(app.state, _KEY, self)


def fleet_state(app: object) -> FleetState:
    """The app's state, typed (an app built by :func:`fleet.api.app.create_app`)."""
    state = getattr(getattr(app, "state", None), _KEY, None)
    if not isinstance(state, FleetState):
        raise TypeError("not a fleet app (build it with fleet.api.app.create_app)")
    return state
