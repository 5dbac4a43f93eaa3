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

from fastapi import FastAPI

from fleet import __version__
from fleet.api.routes import alerts, devices, files, fleet_screen, health, pages, progress, web
from fleet.api.routes import operations as operations_routes
from fleet.api.state import FleetState
from fleet.auth import guard as auth_guard
from fleet.config import FleetConfig
from fleet.corrections import api as corrections_api
from fleet.db import make_engine, migrate, session_factory
from fleet.enroll import brokerlog
from fleet.enroll import routes as enroll_routes
from fleet.ingest import Ingest
from fleet.metrics import FleetMetrics
from fleet.operations import web as operations_web
from fleet.retention import router as retention_router
from fleet.storage import FileStore

log = logging.getLogger(__name__)


def create_app(
    config: FleetConfig, *, metrics: FleetMetrics | None = None, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """Build the app. Opening it (lifespan) migrates the database when configured to and
    starts the MQTT ingest when ``config.ingest.enabled``; closing it stops the ingest."""
    engine = make_engine(config.database.url, pool_size=config.database.pool_size)
    sessions = session_factory(engine)
    state = FleetState(
        config=config,
        engine=engine,
        sessions=sessions,
        store=FileStore(config.storage.dir, fsync=config.storage.fsync),
        metrics=metrics or FleetMetrics(),
    )
    if clock is not None:
        state.clock = clock

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.database.migrate_on_start:
            migrate(engine)
        if config.ingest.enabled:
            state.ingest = Ingest(config, sessions, state.metrics)
            state.ingest.start()
        try:
            yield
        finally:
            if state.ingest is not None:
                state.ingest.stop()
                state.ingest = None
            engine.dispose()

    app = FastAPI(
        title="Sohoa fleet manager",
        version=__version__,
        description="Devices, their events and the pages they capture.",
        lifespan=lifespan,
    )
    app.state.fleet = state
    app.include_router(health.router)
    app.include_router(devices.router, prefix="/api/v1")
    app.include_router(pages.router, prefix="/api/v1")
    app.include_router(files.router, prefix="/api/v1")
    app.include_router(web.router)
    app.include_router(progress.router)
    app.include_router(operations_routes.router)  # its lifespan starts fleet operations
    app.include_router(operations_web.router)  # the /operations page
    app.include_router(alerts.router)
    app.include_router(fleet_screen.router)
    app.include_router(corrections_api.router, prefix="/api/v1")
    enroll_routes.install(app)  # enrollment, certificates, CRL (its lifespan: the CRL timer)
    app.include_router(brokerlog.router)  # its lifespan audits the broker's ACL refusals
    app.include_router(retention_router)  # its lifespan thins and drops old telemetry
    auth_guard.install(app)  # login/users/audit routes, the guard every request passes, the audit
    return app
