"""``/api/v1/enrollment-tokens``: one-time tokens a unit's devices enroll with (admins; a unit
admin: its subtree). A token's text is in exactly one response, the one creating it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from fleet.api.deps import StateDep, runtime_of
from fleet.auth.deps import AdminUser
from fleet.auth.scope import require_unit, visible_units
from fleet.enroll import admin
from fleet.enroll.admin import request_auditor
from provisioning.identity import ca_pin
from provisioning.tokens import UNIT_CODE_PATTERN, EnrollmentToken

router = APIRouter(prefix="/enrollment-tokens", tags=["enrollment"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_code: str = Field(pattern=UNIT_CODE_PATTERN, description="The unit the devices will be installed in")
    ttl_hours: float = Field(24.0, ge=1 / 3600, description="Hours the token stays valid (at least a second, at most "
                                                          "enrollment.max_token_ttl_h)")
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
    qr_svg: str = Field(description="An SVG QR code of the token, its unit, the CA pin and the enrollment URL "
                                    "(JSON), for the installer's phone: shown once, with the token")


def _qr_svg(text: str, title: str) -> str:
    import segno  # only here: an SVG for the admin page

    svg: str = segno.make_qr(text, error="m").svg_inline(scale=4, border=2, title=title)
    return svg


@router.post("", status_code=201)
def create_token(body: TokenIn, user: AdminUser, state: StateDep, request: Request, response: Response) -> TokenIssued:
    """A one-time enrollment token for a unit (a unit admin: its own unit or one under it)."""
    runtime = runtime_of(request)
    now = state.now()
    with state.sessions() as session:
        require_unit(session, user, body.unit_code)
    max_ttl_h = state.config.enrollment.max_token_ttl_h
    if body.ttl_hours > max_ttl_h:  # before any timedelta: a huge float would overflow it
        raise HTTPException(422, f"ttl_hours is at most {max_ttl_h:g}")
    try:
        text, token = admin.create_token(
            runtime, state.sessions, request_auditor(request), unit_code=body.unit_code,
            ttl=dt.timedelta(hours=body.ttl_hours), max_devices=body.max_devices,
            require_approval=body.require_approval, created_by=user.name,
            max_ttl_h=max_ttl_h, now=now)
    except ValueError as exc:  # too long, or too short to end after now; a bad unit code or count
        raise HTTPException(422, str(exc)) from None
    response.headers["Cache-Control"] = "no-store"
    out = TokenOut.of(token, now)
    pin = ca_pin(runtime.ca.certificate_pem)
    url = f"{runtime.service.fleet_url}/api/v1/enroll"
    secret = text.get_secret_value()
    qr = _qr_svg(json.dumps({"enroll_url": url, "unit_code": token.unit_code, "token": secret, "ca_pin": pin},
                            separators=(",", ":")), title=f"Enrollment token {token.token_id}")
    return TokenIssued(**out.model_dump(), token=secret, ca_pin=pin, enroll_url=url, qr_svg=qr)


@router.get("")
def list_tokens(user: AdminUser, state: StateDep, request: Request) -> list[TokenOut]:
    """Tokens of the caller's units, newest first (records only: no secret exists to show)."""
    runtime = runtime_of(request)
    with state.sessions() as session:
        units = visible_units(session, user)
    now = state.now()
    return [TokenOut.of(t, now) for t in runtime.store.tokens(units)]


@router.delete("/{token_id}")
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
