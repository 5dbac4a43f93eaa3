"""The one place that decides who may call what, and what gets audited.

- Public (no user): ``/healthz``, ``/metrics``, ``/login``, ``/api/v1/auth/login``,
  ``/api/v1/enroll`` (and below it), ``/api/v1/pki/*``.
- Device paths: ``PUT``/``HEAD /api/v1/files/{sha256}``, ``POST /api/v1/devices/{device_id}/certificate``,
  ``GET /api/v1/bundles/{name}`` (a device or a user): the route authenticates the device
  (``fleet.enroll.deviceauth.DevicePeer``); a user's session, when sent, is resolved here too.
- Everything else needs a user's session (401; a web page redirects to ``/login?next=...``), and
  a write (POST, PUT, PATCH, DELETE) an admin role (403 for a viewer), except logging out and
  changing one's own password.

Audited here, after the response: every write by a user, every download of a page or dossier
file, every 401/403 and every 404 given for an object outside the principal's units.
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fleet.auth import routes
from fleet.auth.scope import OutOfScope

OUT_OF_SCOPE_KEY = "out_of_scope"


async def _out_of_scope(request: Request, exc: Exception) -> JSONResponse:
    state = request.scope.setdefault("state", {})
    state[OUT_OF_SCOPE_KEY] = getattr(exc, "unit_code", None) or "-"
    return JSONResponse({"detail": "not found"}, status_code=404)


def install(app: FastAPI) -> None:
    """Add the auth routes, the guard and the audit to ``app`` (call once, in the app factory)."""
    app.include_router(routes.router)
    app.add_exception_handler(OutOfScope, _out_of_scope)
