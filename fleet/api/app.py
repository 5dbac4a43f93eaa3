"""The fleet's web application: API under ``/api/v1``, ``/healthz``, ``/metrics``, the web
page at ``/``, OpenAPI at ``/docs``.

>>> from fleet.config import FleetConfig, DatabaseConfig, IngestConfig
>>> app = create_app(FleetConfig(database=DatabaseConfig(url="sqlite://"), ingest=IngestConfig(enabled=False)))
>>> app.title
'Sohoa fleet manager'
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from fleet import __version__
from fleet.api import routes
from fleet.api.security import ForgeryCheck, SecurityHeaders
from fleet.api.state import FleetState
from fleet.auth import guard as auth_guard
from fleet.config import FleetConfig
from fleet.db import make_engine, migrate, session_factory
from fleet.enroll.requests import provisioning_refused
from fleet.errors import ContractViolation
from fleet.metrics import FleetMetrics
from fleet.storage import open_storage
from provisioning.errors import ProvisioningError

log = logging.getLogger(__name__)


async def _contract_violation(_request: Request, exc: Exception) -> Response:
    """A command's arguments, desired settings or an update offer that do not fit the wire
    contract: 422 naming each field, as FastAPI answers a body that does not validate."""
    assert isinstance(exc, ContractViolation)
    return JSONResponse({"detail": exc.problems}, status_code=422)


def create_app(
    config: FleetConfig, *, metrics: FleetMetrics | None = None, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """Build the app. Opening it (lifespan) migrates the database when configured to and starts
    the background services (:class:`fleet.api.services.FleetServices`); closing it stops them."""
    engine = make_engine(config.database.url, pool_size=config.database.pool_size)
    sessions = session_factory(engine)
    state = FleetState(
        config=config,
        engine=engine,
        sessions=sessions,
        store=open_storage(config.storage),
        metrics=metrics or FleetMetrics(),
    )
    if clock is not None:
        state.clock = clock

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The database first and last; the services in between (their order: fleet.api.services).
        if config.database.migrate_on_start:
            migrate(engine)
        try:
            await state.services.start(config, sessions, state.metrics, clock=state.now)
            yield
        finally:
            await state.services.stop()
            engine.dispose()

    app = FastAPI(
        title="Sohoa fleet manager",
        version=__version__,
        description="Devices, their events and the pages they capture.",
        lifespan=lifespan,
    )
    state.attach(app)
    app.include_router(routes.router)
    app.add_exception_handler(ProvisioningError, provisioning_refused)
    app.add_exception_handler(ContractViolation, _contract_violation)
    app.add_middleware(ForgeryCheck)  # inside the guard: cross-site writes with the session cookie refused
    auth_guard.install(app)  # the guard every request passes and the audit (reads the routes above)
    app.add_middleware(SecurityHeaders)  # outermost: CSP, nosniff, frame and HSTS headers on every answer
    return app
