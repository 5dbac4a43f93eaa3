"""Device requests authenticated by the device's certificate: a signature per request.

uvicorn does not hand the TLS client certificate to the app, so a device signs each request with
its certificate's key (``provisioning.requestauth``): ``Authorization: Sohoa-Device id=...,ts=...,
nonce=...,sig=...`` and ``X-Sohoa-Content-SHA256``. Here the fleet checks the signature against
the device's newest certificate (and, only on a bad signature, the two before it: a renewal lost
on its way back), the certificate with the CA (not expired, not revoked), the clock and the
nonce. A refusal is 401 with ``detail`` = the reason (``revoked``, ``expired``, ``replayed``,
``stale``, ``bad_signature``, ``unauthenticated``; a device stops on revoked/expired) and is
audited; a success names the device in ``request.state.device_id`` for the audit log.

A request signed by the device's newest certificate confirms its last renewal: the device holds
the new key and certificate (it stores both before it signs anything with them, and reconnects
MQTT with them). The certificates it replaced are then revoked, the CRL rewritten and the broker
reloaded, so a copy of the old key (an SD card imaged before the renewal) opens neither the broker
nor the API. Until then the previous certificate keeps working: a renewal lost on its way back
must not lock the device out.

In a route::

    @router.post("/devices/{device_id}/certificate")
    def renew(device_id: str, peer: DevicePeer) -> ...:
        require_same_device(request, peer, device_id)

For a body whose hash the route knows (``PUT /files/{sha256}``: the path's sha256), call
``authenticate_device(request, state, body_sha256=sha256)`` so the signature must cover that hash.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from fleet.api.deps import StateDep, runtime_of
from fleet.api.state import FleetState
from fleet.auth.audit import DEVICE_KEY, record
from fleet.auth.deps import current_user
from fleet.auth.principal import Principal
from fleet.enroll.admin import request_auditor, retire_superseded
from fleet.enroll.runtime import EnrollRuntime
from provisioning.ca import PeerIdentity
from provisioning.errors import CertificateRejected
from provisioning.requestauth import CONTENT_SHA256, EMPTY_SHA256, SCHEME, SignedRequest, parse_authorization

log = logging.getLogger(__name__)

SUPERSEDED_KEY = "device_superseded_serials"


def _signed_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _claimed(request: Request) -> str | None:
    try:
        return parse_authorization(request.headers.get("Authorization")).device_id
    except CertificateRejected:
        return None


def refuse(request: Request, state: FleetState, status: int, reason: str, *, action: str,
           target: str | None = None, unit_code: str | None = None) -> HTTPException:
    """Audit a refused device request and return the HTTPException to raise."""
    with state.sessions.begin() as session:
        record(session, request, action=action, target=target, unit_code=unit_code, outcome="refused",
               detail=f"reason={reason}")
    log.info("device request %s %s refused: %s", request.method, request.url.path, reason)
    headers = {"WWW-Authenticate": SCHEME} if status == 401 else None
    return HTTPException(status, reason, headers=headers)


def authenticate_device(request: Request, state: FleetState, *, body_sha256: str | None = None) -> PeerIdentity:
    """The device a signed request comes from, or HTTPException 401 (detail = reason, audited).

    ``body_sha256``: the hash the signature must cover (the request body's, or for a file upload
    the sha256 in the path); default the ``X-Sohoa-Content-SHA256`` header, which the route must
    then compare with the body it reads.
    """
    runtime = runtime_of(request)
    header_sha = request.headers.get(CONTENT_SHA256, EMPTY_SHA256).lower()
    covered = (body_sha256 or header_sha).lower()
    try:
        signed = parse_authorization(request.headers.get("Authorization"))
        if body_sha256 is not None and not hmac.compare_digest(header_sha, covered):
            raise CertificateRejected("bad_signature", "the body is not the one the request was signed for")
        peer, newest = _verify_with_recent(runtime, state, signed, request.method, _signed_path(request), covered)
    except CertificateRejected as exc:
        raise refuse(request, state, 401, exc.reason, action="device.refused", target=_claimed(request)) from None
    scope_state = request.scope.setdefault("state", {})
    scope_state[DEVICE_KEY] = peer.name
    if newest:
        scope_state[SUPERSEDED_KEY] = retire_superseded(runtime, state.sessions, request_auditor(request), peer.name,
                                                        peer.serial, now=state.now())
    return peer


def superseded_now(request: Request) -> list[str]:
    """Hex serials this request's authentication revoked (the certificates its signer replaced)."""
    found: list[str] = request.scope.get("state", {}).get(SUPERSEDED_KEY, [])
    return found


def _verify_with_recent(runtime: EnrollRuntime, state: FleetState, signed: SignedRequest, method: str, path: str,
                        covered: str) -> tuple[PeerIdentity, bool]:
    """Check the signature against the device's newest certificate, then the ones before it;
    (the signer, whether an older certificate is still unrevoked although the newest signed).

    A renewal issued here but never stored by the device (crash, dropped link) leaves the device
    signing with its previous key; refusing it would lock the device out of renewing again. Only a
    bad signature moves on to an older certificate: a revoked or expired newest one is final."""
    revoked = runtime.store.revoked_serials()
    recent = runtime.store.recent_certificates(signed.device_id)
    if not recent:
        raise CertificateRejected("unauthenticated", "no certificate on record for this device")
    first: CertificateRejected | None = None
    for index, cert in enumerate(recent):
        try:
            peer = runtime.verifier.verify(signed, method, path, covered, certificate_pem=cert.pem,
                                           revoked=revoked, now=state.now())
        except CertificateRejected as exc:
            if first is None:
                first = exc
            if exc.reason != "bad_signature":
                break
            continue
        return peer, index == 0 and any(old.serial not in revoked for old in recent[1:])
    assert first is not None
    raise first


def device_peer(request: Request, state: StateDep) -> PeerIdentity:
    return authenticate_device(request, state)


DevicePeer = Annotated[PeerIdentity, Depends(device_peer)]
"""The authenticated device (its certificate's CN in ``.name``); 401 otherwise."""


def device_or_user(request: Request, state: FleetState, *, body_sha256: str | None = None
                   ) -> PeerIdentity | Principal:
    """For a route a device or a user may call (``GET /bundles/{name}``, ``HEAD /files/{sha256}``):
    a signed device request (``Authorization: Sohoa-Device ...``) is checked as the device's,
    anything else as a user's session (401 when neither)."""
    if request.headers.get("Authorization", "").startswith(SCHEME + " "):
        return authenticate_device(request, state, body_sha256=body_sha256)
    return current_user(request)


def require_same_device(request: Request, state: FleetState, peer: PeerIdentity, device_id: str) -> None:
    """403 ``not_this_device`` (audited) when a device asks about another device."""
    if not hmac.compare_digest(peer.name, device_id):
        raise refuse(request, state, 403, "not_this_device", action="device.refused", target=device_id)
