"""The one place that decides who may call what, and what gets audited.

- Public (no user): ``/healthz``, ``/metrics``, ``/login``, ``/api/v1/auth/login``,
  ``/api/v1/enroll`` (and paths below it), ``/api/v1/pki/*``.
- Device paths: ``PUT`` and ``HEAD /api/v1/files/{sha256}`` (the uploader asks with HEAD whether
  a file is held), ``POST /api/v1/devices/{device_id}/certificate`` (and ``.../confirm``), ``GET``/``HEAD
  /api/v1/bundles/{name}`` (a device or a user): the route authenticates the device
  (``fleet.enroll.deviceauth.DevicePeer``); a user's session, when one is sent, is resolved
  here all the same, so the route can accept a user instead.
- Everything else needs a user's session (401; a web page redirects to ``/login?next=...``),
  and a write (POST, PUT, PATCH, DELETE) an admin role (403 for a viewer), except logging out
  and changing one's own password. ``POST /api/v1/contract/check`` is a read (a dry-run the
  admin forms call as the admin types; it stores nothing): any user, not audited.

Audited here, once the response is sent: every write by a user (method, path template, status),
every download of a page or dossier file, every 401 and 403, and every 404 given for an object
outside the principal's units (:class:`fleet.auth.scope.OutOfScope`). A route that recorded the
request itself (:func:`fleet.auth.audit.record`) is not recorded twice.
"""

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.api.state import fleet_state
from fleet.auth import audit
from fleet.auth.deps import request_token, resolve_request
from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope

log = logging.getLogger(__name__)

Access = Literal["public", "device", "user"]

PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/login", "/api/v1/auth/login"})
PUBLIC_TREES = ("/api/v1/enroll", "/api/v1/pki")  # the path itself and everything below it
DEVICE_ROUTES = frozenset({
    ("PUT", "/api/v1/files/{sha256}"),
    ("HEAD", "/api/v1/files/{sha256}"),
    ("POST", "/api/v1/devices/{device_id}/certificate"),
    ("POST", "/api/v1/devices/{device_id}/certificate/confirm"),
    ("GET", "/api/v1/bundles/{name}"),
    ("HEAD", "/api/v1/bundles/{name}"),
})
ANY_USER_WRITES = frozenset({"/api/v1/auth/logout", "/api/v1/auth/password", "/logout"})
DOWNLOADS = frozenset({"/api/v1/files/{sha256}", "/api/v1/pages/{page_id}/file", "/api/v1/corrections/export.zip",
                       "/api/v1/dossiers/{code}/documents/{name}"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_ONLY_POSTS = frozenset({"/api/v1/contract/check"})  # a body to check, nothing changed

OUT_OF_SCOPE_KEY = "out_of_scope"
_BODY_KEPT = 2048


def access(method: str, template: str) -> Access:
    """Who may call ``method template`` (a route's path template, or the raw path).

    >>> access("GET", "/healthz"), access("PUT", "/api/v1/files/{sha256}"), access("GET", "/api/v1/devices")
    ('public', 'device', 'user')
    >>> access("POST", "/api/v1/enroll"), access("POST", "/api/v1/enrollment-tokens")
    ('public', 'user')
    """
    if template in PUBLIC_PATHS or any(template == t or template.startswith(t + "/") for t in PUBLIC_TREES):
        return "public"
    if (method, template) in DEVICE_ROUTES:
        return "device"
    return "user"


def needs_admin(method: str, template: str) -> bool:
    return method in WRITES and template not in ANY_USER_WRITES and template not in READ_ONLY_POSTS


def is_web_page(path: str) -> bool:
    return not path.startswith("/api/")


class AuthGuard:
    """ASGI middleware applying :func:`access` to every HTTP request and auditing the outcome."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._routes: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = None

    def routes(self) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
        """(path regex, path template, methods) of every route, read on the first request (when
        every router is included)."""
        if self._routes is None:
            table = []
            for route in iter_route_contexts(self.fastapi_app.router.routes):
                if isinstance(route.path, str) and route.path:
                    table.append((compile_path(route.path)[0], route.path, frozenset(route.methods or ())))
            self._routes = table
        return self._routes

    def template(self, method: str, path: str) -> str:
        """The path template of the route ``method path`` goes to (the raw path when none does)."""
        partial: str | None = None
        for regex, template, methods in self.routes():
            if regex.match(path):
                if method in methods or (method == "HEAD" and "GET" in methods):
                    return template
                partial = partial or template
        return partial or path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method = request.method.upper()
        template = self.template(method, request.url.path)
        kind = access(method, template)
        principal: Principal | None = None
        if kind != "public" and request_token(request) is not None:
            principal = await run_in_threadpool(resolve_request, request)
        if kind == "user":
            refusal = self.refusal(request, method, template, principal)
            if refusal is not None:
                status, response = refusal
                await response(scope, receive, send)
                await self.audit(request, method, template, kind, status, _detail(bytes(response.body)))
                return

        status = 500
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < _BODY_KEPT:
                body.extend(message.get("body", b"")[: _BODY_KEPT - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            await self.audit(request, method, template, kind, status, _detail(bytes(body)) if body else None)

    def refusal(
        self, request: Request, method: str, template: str, principal: Principal | None
    ) -> tuple[int, JSONResponse | RedirectResponse] | None:
        if principal is None:
            if is_web_page(request.url.path) and method in ("GET", "HEAD"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return 401, RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            return 401, JSONResponse({"detail": "login required"}, status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        if needs_admin(method, template) and not principal.is_admin:
            return 403, JSONResponse({"detail": "an admin role is needed"}, status_code=403)
        return None

    async def audit(
        self, request: Request, method: str, template: str, kind: Access, status: int, detail: str | None
    ) -> None:
        state: MutableMapping[str, Any] = request.scope.setdefault("state", {})
        if state.get(audit.AUDITED_KEY):
            return
        out_of_scope = state.get(OUT_OF_SCOPE_KEY)
        unit = request.query_params.get("unit")
        action = f"{method} {template}"
        if out_of_scope is not None:
            detail, unit = "outside the user's units", None if out_of_scope == "-" else str(out_of_scope)
        elif status in (401, 403):
            pass  # a device is named only by its signature (deviceauth audits those refusals with it)
        elif kind == "user" and template in DOWNLOADS and method == "GET":
            action = f"download {template}"
        elif kind == "user" and method in WRITES and template not in READ_ONLY_POSTS:
            pass
        else:
            return
        who, actor_kind, actor_unit = audit.request_actor(request)
        fleet = fleet_state(request.app)
        row = audit.entry(at=fleet.now(), action=action, actor=who, actor_kind=actor_kind, target=request.url.path,
                          unit_code=unit if unit is not None else actor_unit, outcome=str(status), detail=detail,
                          ip=audit.client_ip(request))
        try:
            await run_in_threadpool(_write, fleet.sessions, row)
        except Exception as exc:  # the response is gone already; the failure must at least be seen
            log.error("audit entry for %s %s not written (%s)", method, template, type(exc).__name__)


def _write(sessions: Any, row: Any) -> None:
    with sessions() as session:
        session.add(row)
        session.commit()


def _detail(body: bytes) -> str | None:
    """The ``detail`` of a JSON error body (a message, never a request's content)."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return None
    if isinstance(detail, str):
        return detail[:500]
    return "invalid request" if detail is not None else None


async def _out_of_scope(request: Request, exc: Exception) -> JSONResponse:
    request.scope.setdefault("state", {})[OUT_OF_SCOPE_KEY] = getattr(exc, "unit_code", None) or "-"
    return JSONResponse({"detail": getattr(exc, "detail", "not found")}, status_code=404)


ExceptionHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def install(app: FastAPI) -> None:
    """Add the guard and the audit to ``app`` (call once, in the app factory, after every router
    is included: the guard reads the routes' path templates)."""
    handler: ExceptionHandler = _out_of_scope
    app.add_exception_handler(OutOfScope, handler)
    app.add_middleware(AuthGuard, fastapi_app=app)
