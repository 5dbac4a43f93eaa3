"""Signed device requests for httpx: every request carries the device key's signature.

The fleet cannot see the client certificate behind uvicorn, so each device request is signed
with the certificate's key (:mod:`provisioning.requestauth`): method, path with query, the body's
sha256, a time and a nonce. A signature is good for one request only, so it is made in the auth
flow, once per request actually sent (a retry gets a fresh one).

For a page upload the body's sha256 is the file's name, already known: pass it
(``auth.for_body(sha256)``) so a streamed body is never read twice. Otherwise the body is hashed
here (it must then be in memory, as ``content=bytes`` bodies are).

>>> http = httpx.Client(verify=ident.ssl_context(), auth=DeviceAuth(ident))          # doctest: +SKIP
>>> http.put(url, content=stream, auth=DeviceAuth(ident).for_body(sha256))            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator

import httpx

from provisioning.identity import DeviceIdentity
from provisioning.requestauth import EMPTY_SHA256


def signed_path(url: httpx.URL) -> str:
    """The path the signature covers: the decoded path plus the raw query, as the fleet rebuilds
    it from ``request.url.path`` and ``request.url.query``."""
    query = url.query.decode("ascii")
    return url.path + (f"?{query}" if query else "")


class DeviceAuth(httpx.Auth):
    """An :class:`httpx.Auth` adding ``Authorization: Sohoa-Device ...`` and the body hash header.

    >>> with httpx.Client(auth=DeviceAuth(ident)) as http:                                # doctest: +SKIP
    ...     http.post(f"{fleet}/api/v1/devices/kiosk-0001/certificate", content=body)
    """

    def __init__(self, identity: DeviceIdentity, body_sha256: str | None = None) -> None:
        self.identity = identity
        self.body_sha256 = body_sha256

    def for_body(self, sha256: str) -> DeviceAuth:
        """The same signer for one request whose body's sha256 is known (a streamed file)."""
        return DeviceAuth(self.identity, sha256)

    def _body_sha256(self, request: httpx.Request) -> str:
        if self.body_sha256 is not None:
            return self.body_sha256.lower()
        if isinstance(request.stream, httpx.ByteStream):
            body = request.content
            return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        raise ValueError("a streamed body needs its sha256 given: DeviceAuth(...).for_body(sha256)")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = self.identity.sign_request(request.method, signed_path(request.url), self._body_sha256(request))
        request.headers.update(headers)
        yield request
