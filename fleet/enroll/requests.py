"""What the enrollment routes share: the audit of a device's own requests (enrollment and
renewal, named by the client's address) and the one handler turning a
:class:`provisioning.errors.ProvisioningError` into an HTTP answer (``TokenRejected`` 403,
``CSRRejected`` 422, ``InvalidTransition`` 409, ``CertificateRejected`` 401, ``detail`` = the
stable reason), audited with what the route said the request was :func:`about`.

Secrets: the body of ``/enroll`` is never logged, and its validation errors never echo it.

>>> client_ip(type("R", (), {"client": None})())
'unknown'
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from fleet.api.state import FleetState, fleet_state
from fleet.auth.audit import record
from fleet.enroll.admin import audit_issued, request_auditor
from fleet.enroll.runtime import EnrollRuntime
from provisioning.ca import IssuedCertificate
from provisioning.enrollment import EnrollAnswer, EnrollRequest, RenewRequest
from provisioning.errors import CertificateRejected, CSRRejected, InvalidTransition, ProvisioningError, TokenRejected
from provisioning.tokens import parse_token

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


def about(request: Request, action: str, target: str | None = None, unit: str | None = None,
          detail: str | None = None) -> None:
    """Say what the request is about, for the audit entry of a refusal."""
    state = request.scope.setdefault("state", {})
    state.update({_AUDIT_ACTION: action, _AUDIT_TARGET: target, _AUDIT_UNIT: unit, _AUDIT_DETAIL: detail})


def audit(state: FleetState, request: Request, **fields: Any) -> None:
    with state.sessions.begin() as session:
        record(session, request, **fields)


async def provisioning_refused(request: Request, exc: Exception) -> Response:
    """The one mapping of provisioning errors to HTTP answers; audits the refusal."""
    assert isinstance(exc, ProvisioningError)
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 400)
    info: dict[str, Any] = request.scope.get("state", {})
    extra = info.get(_AUDIT_DETAIL)
    detail = f"reason={exc.reason}" + (f" {extra}" if extra else "")
    await run_in_threadpool(audit, fleet_state(request.app), request,
                            action=info.get(_AUDIT_ACTION) or "provisioning.refused", target=info.get(_AUDIT_TARGET),
                            unit_code=info.get(_AUDIT_UNIT), outcome="refused",
                            detail=detail)
    log.info("%s %s refused: %s", request.method, request.url.path, exc.reason)
    headers = {"WWW-Authenticate": "Sohoa-Device"} if status == 401 else None
    return JSONResponse({"detail": exc.reason}, status_code=status, headers=headers)


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def token_id(request: EnrollRequest) -> str | None:
    try:
        return parse_token(request.token)[0]
    except TokenRejected:
        return None


def enroll_device(state: FleetState, runtime: EnrollRuntime, request: Request,
                  body: EnrollRequest) -> EnrollAnswer:
    """Enroll (or answer the poll of) a device; audits what is new."""
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
                audit_issued_by(session, request, runtime.store.latest_certificate(body.device_id), after.unit_code,
                              "certificate.issued")
        if answer.state == "rejected":
            record(session, request, action="enrollment.refused", target=body.device_id,
                   unit_code=after.unit_code if after else None, outcome="refused",
                   detail=f"reason={answer.reason or 'rejected'} {token_detail or ''}".strip())
    return answer


def audit_issued_by(session: Session, request: Request, issued: IssuedCertificate | None, unit: str | None,
                    action: str, detail: str = "") -> None:
    """Audit a certificate issued to a device, as the request's actor."""
    audit_issued(session, request_auditor(request), issued, unit, action, detail)

def renew_device(state: FleetState, runtime: EnrollRuntime, request: Request, device_id: str,
                 body: RenewRequest, old_serial: int) -> EnrollAnswer:
    """A new certificate for a device from the one that signed its request; audited."""
    # Renew from the certificate that signed the request (the newest, or the one before it when
    # the device never stored its last renewal).
    current = next((c for c in runtime.store.recent_certificates(device_id) if c.serial == old_serial), None)
    if current is None:
        raise CertificateRejected("unauthenticated", "no certificate on record for this device")
    answer = runtime.service.renew(device_id, body, current.pem, now=state.now())
    enrollment = runtime.store.enrollment(device_id)
    with state.sessions.begin() as session:
        audit_issued_by(session, request, runtime.store.latest_certificate(device_id),
                      enrollment.unit_code if enrollment else None, "certificate.renewed",
                      f"previous={old_serial:x}")
    return answer
