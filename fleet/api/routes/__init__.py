"""Every route of the fleet, one module per resource; :data:`router` is all the app includes.

The API is under ``/api/v1`` (applied here, once); the web pages (:mod:`.web`, :mod:`.login`) and
the health endpoints (:mod:`.health`) are at the root. The order below is the order requests are
matched in: a path declared earlier wins (``tests/fleet/test_routes.py`` checks that every path
reaches its own route). Who may call what is the guard's (:mod:`fleet.auth.guard`) and each
route's dependencies; the work is done by the services each module names.
"""

from fastapi import APIRouter

from fleet.api.routes import (
    alerts,
    audit,
    auth,
    bundles,
    certificates,
    commands,
    contract,
    corrections,
    deliveries,
    devices,
    dossiers,
    enrollment_tokens,
    enrollments,
    files,
    fleet_screen,
    health,
    login,
    operators,
    pages,
    pki,
    progress,
    rollouts,
    settings,
    units,
    users,
    web,
)

API_PREFIX = "/api/v1"

api = APIRouter(prefix=API_PREFIX)
for resource in (devices, pages, files, dossiers, deliveries, units, progress, settings, commands, contract, bundles,
                 rollouts, alerts, fleet_screen, corrections, enrollments, pki, enrollment_tokens, certificates, auth,
                 users, operators, audit):
    api.include_router(resource.router)

router = APIRouter()
router.include_router(health.router)
router.include_router(api)
router.include_router(web.router)
router.include_router(login.router)
