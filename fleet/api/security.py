"""What every answer of the fleet carries, and which cross-site writes it refuses.

Headers (on every page, API answer, error and file):

- ``Content-Security-Policy``: pages load scripts, styles, images and data from the fleet itself
  only, plus their own inline scripts by hash (computed from the page as sent, so an injected
  script has no matching hash); no plugins, no ``<base>``, forms post only to the fleet, and no
  other site may frame them (``frame-ancestors 'none'``). Anything else (JSON, files) gets
  ``default-src 'none'; sandbox``: a file opened in the browser runs nothing.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``.
- Over HTTPS: ``Strict-Transport-Security``, and every cookie the fleet sets is ``Secure``.

Cross-site request forgery: a write (POST, PUT, PATCH, DELETE) that a browser authenticates with
the session cookie (no ``Authorization`` header) must say where it comes from, and that must be
the fleet itself: its ``Origin`` (or, without one, its ``Referer``) names the scheme, host and
port the request was sent to. ``SameSite=Strict`` alone does not stop a sibling site on the same
registrable domain. Such a write to the API may not use the content types a cross-site form can
send without asking (``text/plain``, form encodings), and the CSV imports take ``text/csv`` only.
Devices (signed requests) and API clients (bearer tokens) send no cookie and are not concerned.

>>> csp_for_page(b"<script>let a = 1;</script><script src='/static/nav.js'></script>").split("; ")[1]
"script-src 'self' 'sha256-xY6QKfH9PRsQnLz56nj6MBwiK5oHg+im1Jkpdp1x/Ck='"
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.auth.sessions import COOKIE

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
"""What a page of another site can post without the browser asking the fleet first (CORS)."""
FORM_PATHS = frozenset({"/login", "/logout"})
"""Web forms: posted form-encoded by the fleet's own pages (the Origin check still applies)."""
LOGINS = frozenset({"/login", "/api/v1/auth/login"})
CSV_IMPORTS = frozenset({"/api/v1/units/import", "/api/v1/progress/received/import",
                         "/api/v1/dossiers/received/import"})
CSV_TYPES = frozenset({"text/csv"})
HSTS = "max-age=31536000"
FILE_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_MAX_PAGE = 4 * 1024 * 1024


def csp_for_page(html: bytes) -> str:
    """The policy of one HTML page: its own inline scripts allowed by their sha256, nothing else."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
                      for body in _INLINE_SCRIPT.findall(html))
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self'{' ' + hashes if hashes else ''}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _origin(value: str) -> str | None:
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _own_origin(scope: Scope, headers: Headers) -> str:
    host = headers.get("host") or ""
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}".lower()


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def forgery(scope: Scope) -> str | None:
    """Why this request is refused as a possible cross-site forgery, or None."""
    if scope["type"] != "http" or scope["method"] not in WRITES:
        return None
    headers = Headers(scope=scope)
    cookies = headers.get("cookie", "")
    if "authorization" in headers or f"{COOKIE}=" not in cookies or scope["path"] in LOGINS:
        return None  # not authenticated by the browser's cookie (a login is by its password)
    origin = headers.get("origin")
    claimed = _origin(origin) if origin and origin != "null" else (
        _origin(headers["referer"]) if "referer" in headers else None)
    if claimed is None or claimed != _own_origin(scope, headers):
        return "cross-site request refused: the Origin is not this fleet"
    path: str = scope["path"]
    media = _media_type(headers)
    if path in CSV_IMPORTS and media not in CSV_TYPES:
        return "send the CSV as Content-Type: text/csv"
    if path.startswith("/api/") and media in SIMPLE_TYPES and path not in FORM_PATHS:
        return f"Content-Type {media} is not accepted for this request"
    return None


class ForgeryCheck:
    """ASGI middleware: refuses (403) a cookie-authenticated write from elsewhere (see above).
    Installed inside the auth guard: a bad session is a 401 first, and the guard audits the 403."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = forgery(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": refused}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware, outermost: the headers above on every answer, the guard's own included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        start: Message | None = None
        buffered: list[bytes] = []

        async def send_secured(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message["headers"]))
                if headers.get("content-type", "").startswith("text/html"):
                    start = message  # held until the page is whole: its CSP hashes its scripts
                    return
                _secure(headers, https, FILE_CSP)
                await send({**message, "headers": headers.raw})
                return
            if start is not None and message["type"] == "http.response.body":
                buffered.append(message.get("body", b""))
                if message.get("more_body", False) and sum(map(len, buffered)) < _MAX_PAGE:
                    return
                page = b"".join(buffered)
                headers = MutableHeaders(raw=list(start["headers"]))
                _secure(headers, https, csp_for_page(page))
                await send({**start, "headers": headers.raw})
                await send({"type": "http.response.body", "body": page, "more_body": message.get("more_body", False)})
                start = None
                return
            await send(message)

        await self.app(scope, receive, send_secured)


def _secure(headers: MutableHeaders, https: bool, csp: str) -> None:
    headers["Content-Security-Policy"] = csp
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    if https:
        headers["Strict-Transport-Security"] = HSTS
        cookies = headers.getlist("set-cookie")
        if cookies:
            del headers["set-cookie"]
            for cookie in cookies:
                headers.append("set-cookie", cookie if "; secure" in cookie.lower() else f"{cookie}; Secure")
