"""``/api/v1/enroll`` (a device's first-boot enrollment, public and rate-limited per address)
and ``/api/v1/enrollments`` (what admins of the unit accept or reject). A refusal is answered
and audited by :func:`fleet.enroll.requests.provisioning_refused`."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.api.deps import StateDep, runtime_of
from fleet.api.state import FleetState
from fleet.auth.deps import AdminUser
from fleet.auth.scope import require_unit, visible_units
from fleet.enroll import admin
from fleet.enroll.admin import request_auditor
from fleet.enroll.requests import (
    DEVICE_ID,
    MAX_ENROLL_BODY,
    about,
    audit,
    client_ip,
    enroll_device,
    token_id,
)
from provisioning.enrollment import EnrollAnswer, EnrollRequest
from provisioning.tokens import Enrollment

router = APIRouter(tags=["enrollment"])


_ENROLL_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": EnrollRequest.model_json_schema()}}}}


@router.post(
    "/enroll",
    openapi_extra=_ENROLL_BODY,
    responses={
        200: {"model": EnrollAnswer,
              "description": "Accepted: the certificate, the CA, the broker and fleet addresses"},
        202: {"model": EnrollAnswer,
              "description": "Pending an admin's approval: send the same request again after Retry-After"},
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
    ip = client_ip(request)
    about(request, "enrollment.refused")
    wait = runtime.limiter.check(ip)
    if wait > 0:
        await run_in_threadpool(audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=rate_limited")
        return JSONResponse({"detail": "rate_limited"}, status_code=429,
                            headers={"Retry-After": str(math.ceil(wait))})
    raw = await request.body()
    if len(raw) > MAX_ENROLL_BODY:
        await run_in_threadpool(audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=too_large")
        return JSONResponse({"detail": "too_large"}, status_code=413)
    try:
        body = EnrollRequest.model_validate_json(raw)
    except ValidationError as exc:
        # Never FastAPI's default answer: it echoes the input, which holds the token.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        await run_in_threadpool(audit, state, request, action="enrollment.refused", outcome="refused",
                                detail="reason=invalid_request " + ",".join(".".join(map(str, e["loc"]))
                                                                           for e in errors)[:200])
        return JSONResponse({"detail": errors}, status_code=422)
    presented = token_id(body)
    about(request, "enrollment.refused", target=body.device_id, unit=body.unit_code,
           detail=f"token={presented}" if presented else None)
    answer = await run_in_threadpool(enroll_device, state, runtime, request, body)
    content = answer.model_dump(mode="json")
    if answer.state == "pending":
        return JSONResponse(content, status_code=202, headers={"Retry-After": str(answer.retry_after_s or 30)})
    return JSONResponse(content, status_code=200 if answer.state == "accepted" else 403)



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
    about(request, "enrollment.refused", target=device_id, unit=current.unit_code)
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
