"""Enrollment, certificates and revocation over the API.

| route | who |
|---|---|
| ``POST /api/v1/enroll`` | a device on first boot (public, rate-limited per IP) |
| ``GET /api/v1/pki/ca.crt``, ``GET /api/v1/pki/crl.pem`` | anyone |
| ``POST/GET /api/v1/enrollment-tokens``, ``DELETE .../{token_id}`` | admins (a unit admin: its subtree) |
| ``GET /api/v1/enrollments``, ``POST /api/v1/enrollments/{id}/accept|reject`` | admins of the unit |
| ``POST /api/v1/devices/{id}/certificate`` | the device itself (signed request) |
| ``POST /api/v1/devices/{id}/revoke`` | admins of the unit |

:func:`install` adds the router and the one handler turning ``ProvisioningError`` into answers
(``TokenRejected`` 403, ``CSRRejected`` 422, ``InvalidTransition`` 409, ``CertificateRejected``
401, ``detail`` = the stable reason), audited with the client's address. The CA is loaded
and the CRL kept fresh by the fleet's services (:mod:`fleet.api.services`).

Secrets: the body of ``/enroll`` is never logged, and its validation errors never echo it; a
token's text is in exactly one response, the one creating it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from fleet.api.deps import StateDep, runtime_of
from fleet.api.state import FleetState, fleet_state
from fleet.auth.audit import record
from fleet.auth.deps import AdminUser
from fleet.auth.scope import require_unit, visible_units
from fleet.enroll import admin
from fleet.enroll.admin import audit_issued, request_auditor
from fleet.enroll.deviceauth import DevicePeer, refuse, require_same_device
from fleet.enroll.runtime import EnrollRuntime
from provisioning.ca import IssuedCertificate
from provisioning.enrollment import EnrollAnswer, EnrollRequest, RenewRequest
from provisioning.errors import CertificateRejected, CSRRejected, InvalidTransition, ProvisioningError, TokenRejected
from provisioning.identity import ca_pin
from provisioning.requestauth import CONTENT_SHA256, EMPTY_SHA256
from provisioning.tokens import UNIT_CODE_PATTERN, Enrollment, EnrollmentToken, parse_token

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[ProvisioningError], int], ...] = (
    (TokenRejected, 403), (CSRRejected, 422), (InvalidTransition, 409), (CertificateRejected, 401))
MAX_ENROLL_BODY = 16 * 1024
DEVICE_ID = Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$", description="Device id")

# What a refused request was about: set by the routes, read by the exception handler.
_AUDIT_ACTION = "enroll_audit_action"
_AUDIT_TARGET = "enroll_audit_target"
_AUDIT_UNIT = "enroll_audit_unit"
_AUDIT_DETAIL = "enroll_audit_detail"


def _about(request: Request, action: str, target: str | None = None, unit: str | None = None,
           detail: str | None = None) -> None:
    state = request.scope.setdefault("state", {})
    state.update({_AUDIT_ACTION: action, _AUDIT_TARGET: target, _AUDIT_UNIT: unit, _AUDIT_DETAIL: detail})


def _audit(state: FleetState, request: Request, **fields: Any) -> None:
    with state.sessions.begin() as session:
        record(session, request, **fields)


async def provisioning_refused(request: Request, exc: Exception) -> Response:
    """The one mapping of provisioning errors to HTTP answers; audits the refusal."""
    assert isinstance(exc, ProvisioningError)
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 400)
    info: dict[str, Any] = request.scope.get("state", {})
    extra = info.get(_AUDIT_DETAIL)
    detail = f"reason={exc.reason}" + (f" {extra}" if extra else "")
    await run_in_threadpool(_audit, fleet_state(request.app), request,
                            action=info.get(_AUDIT_ACTION) or "provisioning.refused", target=info.get(_AUDIT_TARGET),
                            unit_code=info.get(_AUDIT_UNIT), outcome="refused",
                            detail=detail)
    log.info("%s %s refused: %s", request.method, request.url.path, exc.reason)
    headers = {"WWW-Authenticate": "Sohoa-Device"} if status == 401 else None
    return JSONResponse({"detail": exc.reason}, status_code=status, headers=headers)


router = APIRouter(prefix="/api/v1", tags=["enrollment"])


def install(app: FastAPI) -> None:
    """Add the enrollment routes and the provisioning-error handler to the app."""
    app.add_exception_handler(ProvisioningError, provisioning_refused)
    app.include_router(router)


# --- public: enroll, CA, CRL --------------------------------------------------------------------------------


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _token_id(request: EnrollRequest) -> str | None:
    try:
        return parse_token(request.token)[0]
    except TokenRejected:
        return None


def _enroll(state: FleetState, runtime: EnrollRuntime, request: Request, body: EnrollRequest) -> EnrollAnswer:
    prior = runtime.store.enrollment(body.device_id)
    answer = runtime.service.enroll(body, now=state.now())
    after = runtime.store.enrollment(body.device_id)
    is_new = after is not None and (prior is None or prior.requested_at != after.requested_at)
    token_detail = f"token={after.token_id}" if after else None
    with state.sessions.begin() as session:
        if is_new:
            assert after is not None
            record(session, request, action="enrollment.requested", target=body.device_id, unit_code=after.unit_code,
                   outcome=answer.state, detail=token_detail, actor=body.device_id)
            if answer.state == "accepted":
                _audit_issued(session, request, runtime.store.latest_certificate(body.device_id), after.unit_code,
                              "certificate.issued")
        if answer.state == "rejected":
            record(session, request, action="enrollment.refused", target=body.device_id,
                   unit_code=after.unit_code if after else None, outcome="refused",
                   detail=f"reason={answer.reason or 'rejected'} {token_detail or ''}".strip())
    return answer


def _audit_issued(session: Session, request: Request, issued: IssuedCertificate | None, unit: str | None,
                  action: str, detail: str = "") -> None:
    audit_issued(session, request_auditor(request), issued, unit, action, detail)


_ENROLL_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": EnrollRequest.model_json_schema()}}}}


@router.post(
    "/enroll",
    openapi_extra=_ENROLL_BODY,
    responses={
        200: {"description": "Accepted: the certificate, the CA, the broker and fleet addresses"},
        202: {"description": "Pending an admin's approval: send the same request again after Retry-After"},
        403: {"description": "Token refused (detail: malformed, unknown, invalid, revoked, expired, used, "
                             "wrong_unit) or the enrollment was rejected"},
        409: {"description": "The device id is enrolled with another key or token (device_id_taken)"},
        422: {"description": "The request or its CSR is not acceptable (detail: the reason)"},
        429: {"description": "Too many requests from this address: retry after Retry-After"},
    },
)
async def enroll(request: Request, state: StateDep) -> Response:
    """A device's first-boot enrollment (no certificate yet), and its polls while pending."""
    runtime = runtime_of(request)
    ip = _client_ip(request)
    _about(request, "enrollment.refused")
    wait = runtime.limiter.check(ip)
    if wait > 0:
        await run_in_threadpool(_audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=rate_limited")
        return JSONResponse({"detail": "rate_limited"}, status_code=429,
                            headers={"Retry-After": str(math.ceil(wait))})
    raw = await request.body()
    if len(raw) > MAX_ENROLL_BODY:
        await run_in_threadpool(_audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=too_large")
        return JSONResponse({"detail": "too_large"}, status_code=413)
    try:
        body = EnrollRequest.model_validate_json(raw)
    except ValidationError as exc:
        # Never FastAPI's default answer: it echoes the input, which holds the token.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        await run_in_threadpool(_audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=invalid_request " + ",".join(".".join(map(str, e["loc"]))
                                                                           for e in errors)[:200])
        return JSONResponse({"detail": errors}, status_code=422)
    token_id = _token_id(body)
    _about(request, "enrollment.refused", target=body.device_id, unit=body.unit_code,
           detail=f"token={token_id}" if token_id else None)
    answer = await run_in_threadpool(_enroll, state, runtime, request, body)
    content = answer.model_dump(mode="json")
    if answer.state == "pending":
        return JSONResponse(content, status_code=202, headers={"Retry-After": str(answer.retry_after_s or 30)})
    return JSONResponse(content, status_code=200 if answer.state == "accepted" else 403)


PEM = "application/x-pem-file"


@router.get("/pki/ca.crt", response_class=Response, responses={200: {"content": {PEM: {}}}})
def ca_certificate(request: Request) -> Response:
    """The fleet CA's certificate (what devices and the broker trust)."""
    return Response(runtime_of(request).ca.certificate_pem, media_type=PEM)


@router.get("/pki/crl.pem", response_class=Response, responses={200: {"content": {PEM: {}}}})
def crl(request: Request) -> Response:
    """The CRL the broker holds: every revoked, unexpired certificate (valid 7 days, rewritten daily)."""
    return Response(runtime_of(request).crl.current_pem(), media_type=PEM,
                    headers={"Cache-Control": "max-age=300"})


# --- tokens ----------------------------------------------------------------------------------------------------


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_code: str = Field(pattern=UNIT_CODE_PATTERN, description="The unit the devices will be installed in")
    ttl_hours: float = Field(24.0, gt=0, description="Hours the token stays valid (at most enrollment.max_token_ttl_h)")
    max_devices: int = Field(1, ge=1, le=10_000, description="How many devices may enroll with it")
    require_approval: bool = Field(False, description="Each enrollment waits for an admin's accept/reject")


class TokenOut(BaseModel):
    """A token's record. Its secret is not stored: it cannot be shown again."""

    token_id: str = Field(description="Public half of the token")
    unit_code: str
    created_at: dt.datetime
    expires_at: dt.datetime
    max_devices: int
    used: int = Field(description="Devices enrolled with it so far")
    require_approval: bool
    revoked_at: dt.datetime | None
    created_by: str | None
    state: Literal["active", "expired", "used", "revoked"]

    @classmethod
    def of(cls, token: EnrollmentToken, now: dt.datetime) -> TokenOut:
        state = admin.token_state(token, now)
        return cls(state=state, **token.model_dump(exclude={"secret_hash"}))


class TokenIssued(TokenOut):
    token: str = Field(description="The token text: shown ONCE, in this answer; give it to the installer")
    ca_pin: str = Field(description="The CA's pin (sha256 of its public key) for devices without the CA file")
    enroll_url: str = Field(description="Where the device sends its enrollment")


@router.post("/enrollment-tokens", status_code=201)
def create_token(body: TokenIn, user: AdminUser, state: StateDep, request: Request, response: Response) -> TokenIssued:
    """A one-time enrollment token for a unit (a unit admin: its own unit or one under it)."""
    runtime = runtime_of(request)
    now = state.now()
    with state.sessions() as session:
        require_unit(session, user, body.unit_code)
    try:
        text, token = admin.create_token(
            runtime, state.sessions, request_auditor(request), unit_code=body.unit_code,
            ttl=dt.timedelta(hours=body.ttl_hours), max_devices=body.max_devices,
            require_approval=body.require_approval, created_by=user.name,
            max_ttl_h=state.config.enrollment.max_token_ttl_h, now=now)
    except admin.TokenTtlTooLong as exc:
        raise HTTPException(422, str(exc)) from None
    response.headers["Cache-Control"] = "no-store"
    out = TokenOut.of(token, now)
    return TokenIssued(**out.model_dump(), token=text.get_secret_value(), ca_pin=ca_pin(runtime.ca.certificate_pem),
                       enroll_url=f"{runtime.service.fleet_url}/api/v1/enroll")


@router.get("/enrollment-tokens")
def list_tokens(user: AdminUser, state: StateDep, request: Request) -> list[TokenOut]:
    """Tokens of the caller's units, newest first (records only: no secret exists to show)."""
    runtime = runtime_of(request)
    with state.sessions() as session:
        units = visible_units(session, user)
    now = state.now()
    return [TokenOut.of(t, now) for t in runtime.store.tokens(units)]


@router.delete("/enrollment-tokens/{token_id}")
def revoke_token(token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], user: AdminUser, state: StateDep,
                 request: Request) -> TokenOut:
    """Withdraw a token: no further device enrolls with it (enrolled ones stay)."""
    runtime = runtime_of(request)
    token = runtime.store.token(token_id)
    with state.sessions() as session:
        require_unit(session, user, token.unit_code if token else None)
    revoked = admin.withdraw_token(runtime, state.sessions, request_auditor(request), token_id, state.now()) \
        if token else None
    if revoked is None:
        raise HTTPException(404, "not found")
    return TokenOut.of(revoked, state.now())


# --- enrollments ---------------------------------------------------------------------------------------------


class EnrollmentOut(BaseModel):
    device_id: str
    unit_code: str
    token_id: str = Field(description="The token presented (its public id)")
    public_key_sha256: str = Field(description="The device key's fingerprint: compare with the kiosk's screen")
    state: Literal["pending", "accepted", "rejected"]
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    reason: str | None

    @classmethod
    def of(cls, enrollment: Enrollment) -> EnrollmentOut:
        return cls(**enrollment.model_dump())


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500, description="Why (shown to admins; the device sees 'rejected')")


@router.get("/enrollments")
def list_enrollments(
    user: AdminUser, state: StateDep, request: Request,
    enrollment_state: Annotated[Literal["pending", "accepted", "rejected"] | None,
                                Query(alias="state", description="Only enrollments in this state")] = None,
) -> list[EnrollmentOut]:
    """Enrollments of the caller's units, newest first (``?state=pending``: what awaits a decision)."""
    runtime = runtime_of(request)
    with state.sessions() as session:
        units = visible_units(session, user)
    return [EnrollmentOut.of(e) for e in runtime.store.enrollments(state=enrollment_state, units=units)]


def _decide(device_id: str, accept: bool, user: AdminUser, state: FleetState, request: Request,
            reason: str | None) -> EnrollmentOut:
    runtime = runtime_of(request)
    current = runtime.store.enrollment(device_id)
    with state.sessions() as session:
        require_unit(session, user, current.unit_code if current else None)
    if current is None:
        raise HTTPException(404, "not found")
    _about(request, "enrollment.refused", target=device_id, unit=current.unit_code)
    decided = admin.decide(runtime, state.sessions, request_auditor(request), device_id, accept=accept,
                           by=user.name, reason=reason, now=state.now())
    return EnrollmentOut.of(decided)


@router.post("/enrollments/{device_id}/accept")
def accept_enrollment(device_id: Annotated[str, DEVICE_ID], user: AdminUser, state: StateDep,
                      request: Request) -> EnrollmentOut:
    """Accept a pending enrollment: the certificate is signed now, the device gets it on its next poll."""
    return _decide(device_id, True, user, state, request, None)


@router.post("/enrollments/{device_id}/reject")
def reject_enrollment(device_id: Annotated[str, DEVICE_ID], user: AdminUser, state: StateDep, request: Request,
                      body: Annotated[DecisionIn | None, Body()] = None) -> EnrollmentOut:
    """Reject a pending enrollment: the device is told 'rejected' and stops."""
    return _decide(device_id, False, user, state, request, body.reason if body else None)


# --- certificates: renewal and revocation -------------------------------------------------------------------


@router.post("/devices/{device_id}/certificate", responses={
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
    _about(request, "certificate.refused", target=device_id)
    return await run_in_threadpool(_renew, state, runtime, request, peer.name, body, peer.serial)


def _renew(state: FleetState, runtime: EnrollRuntime, request: Request, device_id: str, body: RenewRequest,
           old_serial: int) -> EnrollAnswer:
    # Renew from the certificate that signed the request (the newest, or the one before it when
    # the device never stored its last renewal).
    current = next((c for c in runtime.store.recent_certificates(device_id) if c.serial == old_serial), None)
    if current is None:
        raise CertificateRejected("unauthenticated", "no certificate on record for this device")
    answer = runtime.service.renew(device_id, body, current.pem, now=state.now())
    enrollment = runtime.store.enrollment(device_id)
    with state.sessions.begin() as session:
        _audit_issued(session, request, runtime.store.latest_certificate(device_id),
                      enrollment.unit_code if enrollment else None, "certificate.renewed",
                      f"previous={old_serial:x}")
    return answer


class RevokedOut(BaseModel):
    device_id: str
    revoked_serials: list[str] = Field(description="Serials revoked now (hex); empty when already revoked")
    crl_published: bool
    broker_reloaded: bool = Field(description="The broker was sent SIGHUP to re-read the CRL")


@router.post("/devices/{device_id}/revoke")
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
