"""``/api/v1/devices/{id}/certificate`` (the device itself renews, with a request signed by its
current certificate), ``/api/v1/devices/{id}/certificate/confirm`` (the device says it now uses
the new one, with a request signed by it: the ones it replaced are revoked) and
``/api/v1/devices/{id}/revoke`` (admins of the unit)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from fleet.api.deps import StateDep, runtime_of
from fleet.auth.deps import AdminUser
from fleet.auth.scope import require_unit
from fleet.enroll import admin
from fleet.enroll.admin import request_auditor
from fleet.enroll.deviceauth import DevicePeer, refuse, require_same_device, superseded_now
from fleet.enroll.requests import (
    DEVICE_ID,
    about,
    renew_device,
)
from provisioning.enrollment import EnrollAnswer, RenewRequest
from provisioning.requestauth import CONTENT_SHA256, EMPTY_SHA256

log = logging.getLogger(__name__)

router = APIRouter(prefix="/devices/{device_id}", tags=["enrollment"])


@router.post("/certificate", responses={
    401: {"description": "Not signed by the device's current certificate (detail: revoked, expired, ...)"},
    403: {"description": "Signed by another device (not_this_device)"},
    422: {"description": "The CSR is not acceptable"}})
async def renew_certificate(device_id: Annotated[str, DEVICE_ID], peer: DevicePeer, state: StateDep,
                            request: Request) -> EnrollAnswer:
    """A new certificate for the calling device (signed with its current one), before it expires."""
    runtime = runtime_of(request)
    await run_in_threadpool(require_same_device, request, state, peer, device_id)
    raw = await request.body()
    signed_sha = request.headers.get(CONTENT_SHA256, EMPTY_SHA256).lower()
    if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), signed_sha):
        exc = await run_in_threadpool(refuse, request, state, 401, "bad_signature", action="certificate.refused",
                                      target=device_id)
        raise exc
    try:
        body = RenewRequest.model_validate_json(raw)
    except ValidationError:
        raise HTTPException(422, "the body is not a renewal request") from None
    about(request, "certificate.refused", target=device_id)
    return await run_in_threadpool(renew_device, state, runtime, request, peer.name, body, peer.serial)


class ConfirmedOut(BaseModel):
    device_id: str
    serial: str = Field(description="The certificate that signed the request (hex)")
    revoked_serials: list[str] = Field(description="Certificates it replaced, revoked now (hex); empty when "
                                                   "there were none left (an earlier request confirmed it)")


@router.post("/certificate/confirm", responses={
    401: {"description": "Not signed by one of the device's certificates (detail: revoked, expired, ...)"},
    403: {"description": "Signed by another device (not_this_device)"}})
async def confirm_certificate(device_id: Annotated[str, DEVICE_ID], peer: DevicePeer, state: StateDep,
                              request: Request) -> ConfirmedOut:
    """The device uses its renewed certificate: signed by the newest one, this revokes the ones it
    replaced (CRL rewritten, broker reloaded). Any request signed by the newest certificate does
    the same; this one lets the device say so at once, without waiting for its next upload."""
    await run_in_threadpool(require_same_device, request, state, peer, device_id)
    return ConfirmedOut(device_id=device_id, serial=f"{peer.serial:x}", revoked_serials=superseded_now(request))


class RevokedOut(BaseModel):
    device_id: str
    revoked_serials: list[str] = Field(description="Serials revoked now (hex); empty when already revoked")
    crl_published: bool
    broker_reloaded: bool = Field(description="The broker was sent SIGHUP to re-read the CRL")


@router.post("/revoke")
def revoke_device(device_id: Annotated[str, DEVICE_ID], user: AdminUser, state: StateDep,
                  request: Request) -> RevokedOut:
    """Revoke every certificate of the device: the broker refuses it after the CRL is rewritten (now),
    the API at once; the device shows 'revoked'. Re-admitting it takes a new token."""
    runtime = runtime_of(request)
    known, unit = admin.device_unit(runtime, state.sessions, device_id)
    with state.sessions() as session:
        require_unit(session, user, unit if known else None)
    if not known:
        raise HTTPException(404, "not found")
    serials, published = admin.revoke_device(runtime, state.sessions, request_auditor(request), device_id,
                                             unit=unit, by=user.name, now=state.now())
    log.info("device %s revoked by %s (%d certificate(s))", device_id, user.name, len(serials))
    return RevokedOut(device_id=device_id, revoked_serials=serials, crl_published=True,
                      broker_reloaded=published.broker_reloaded)
