"""``/api/v1/auth``: log in (a session token, also set as an httponly cookie), log out, who am I,
change my password."""

import json
import logging
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep
from fleet.auth import audit
from fleet.auth.config import AuthConfig
from fleet.auth.deps import CurrentUser, request_token
from fleet.auth.models import User, UserSession
from fleet.auth.passwords import hash_password, verify_password
from fleet.auth.principal import Principal
from fleet.auth.ratelimit import ATTEMPT, LOGIN, retry_after
from fleet.auth.sessions import COOKIE, close_session, open_session, principal_of, token_hash

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

MAX_BODY = 4096


class LoginIn(BaseModel):
    """What a login sends. Parsed by hand (:func:`login_form`) so that a validation error never
    echoes the password back."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    next: str | None = Field(default=None, max_length=2000, description="Web form only: where to go afterwards")


class LoginOut(BaseModel):
    token: str = Field(description="The session token: send it as `Authorization: Bearer <token>`")
    expires_at: datetime


class MeOut(BaseModel):
    id: int
    name: str
    role: str
    unit_code: str | None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    current_password: str = Field(min_length=1, max_length=1024, repr=False)
    new_password: str = Field(min_length=1, max_length=1024, repr=False)


def auth_config(state: StateDep) -> AuthConfig:
    return state.config.auth


async def login_form(request: Request) -> LoginIn:
    """The login's fields from a JSON body or an HTML form, or 422 naming the problem only."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "login body too large")
    data: Any
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        data = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}
    else:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise HTTPException(422, "the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("password"), str):
        raise HTTPException(422, "send name and password")
    try:
        return LoginIn.model_validate(data)
    except ValueError:
        raise HTTPException(422, "name must be 1-64 characters, password 1-1024") from None


LoginForm = Annotated[LoginIn, Depends(login_form)]


def authenticate(request: Request, state: StateDep, form: LoginIn) -> tuple[Principal, str, datetime]:
    """Check a login; on success open a session. Audits both outcomes; 401 on a wrong name or
    password (the same answer for both), 429 with ``Retry-After`` when rate-limited."""
    config = auth_config(state)
    ip = audit.client_ip(request)
    now = state.now()
    with state.sessions() as session:
        # Committed before it is counted: concurrent tries see each other (see fleet.auth.ratelimit).
        attempt = audit.entry(at=now, action=LOGIN, actor=form.name, actor_kind="anonymous", outcome=ATTEMPT, ip=ip)
        session.add(attempt)
        session.commit()
        wait = retry_after(session, config, form.name, ip, now, attempt_id=attempt.id)
        if wait is not None:
            attempt.outcome = "rate_limited"
            session.commit()
            raise HTTPException(429, "too many failed logins; try again later", headers={"Retry-After": str(wait)})
        user = session.scalar(select(User).where(User.name == form.name))
        ok = verify_password(user.password_hash if user is not None else None, form.password)
        if user is None or not ok or user.disabled:
            attempt.outcome = "failed"
            attempt.detail = "disabled" if ok and user is not None else None
            session.commit()
            request.scope.setdefault("state", {})[audit.AUDITED_KEY] = True
            raise HTTPException(401, "wrong name or password", headers={"WWW-Authenticate": "Bearer"})
        token, expires = open_session(session, user, now, config.session_ttl_s)
        attempt.actor, attempt.actor_kind, attempt.unit_code, attempt.outcome = user.name, "user", user.unit_code, "ok"
        session.commit()
        principal = principal_of(user)
    request.scope.setdefault("state", {})[audit.AUDITED_KEY] = True
    log.info("user %s logged in", principal.user_id)
    return principal, token, expires


def set_cookie(response: Response, config: AuthConfig, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(config.session_ttl_s), path="/", httponly=True,
                        samesite="strict", secure=config.cookie_secure)


def clear_cookie(response: Response, config: AuthConfig) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=config.cookie_secure)


@router.post("/login", responses={401: {"description": "Wrong name or password"},
                                  429: {"description": "Too many failed logins (see Retry-After)"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object", "required": ["name", "password"],
                            "properties": {"name": {"type": "string"}, "password": {"type": "string"}}}}}}})
def login(request: Request, response: Response, state: StateDep, form: LoginForm) -> LoginOut:
    """Log in with ``{"name", "password"}``: the session token (also set as the httponly
    ``sohoa_session`` cookie, SameSite=Strict, for the web pages) and when it expires."""
    _, token, expires = authenticate(request, state, form)
    set_cookie(response, auth_config(state), token)
    return LoginOut(token=token, expires_at=expires)


def end_session(session: Session, request: Request, user: Principal) -> None:
    """End the request's session (its token stops working at once) and audit the logout; the
    API's logout and the web pages' logout button both go through here."""
    token = request_token(request)
    if token is not None:
        close_session(session, token)
    audit.record(session, request, action="auth.logout", target=f"user {user.user_id}")
    session.commit()


@router.post("/logout", status_code=204)
def logout(request: Request, user: CurrentUser, state: StateDep, session: SessionDep) -> Response:
    """End this session (the token stops working at once) and clear the cookie."""
    end_session(session, request, user)
    response = Response(status_code=204)
    clear_cookie(response, auth_config(state))
    return response


@router.get("/me")
def me(user: CurrentUser) -> MeOut:
    """The logged-in user: name, role, unit."""
    return MeOut(id=user.user_id, name=user.name, role=user.role, unit_code=user.unit_code)


@router.post("/password", status_code=204, responses={403: {"description": "Current password wrong"}})
def change_password(request: Request, body: PasswordIn, user: CurrentUser, state: StateDep,
                    session: SessionDep) -> Response:
    """Change my own password; my other sessions end."""
    config = auth_config(state)
    row = session.get(User, user.user_id)
    if row is None or not verify_password(row.password_hash, body.current_password):
        audit.record(session, request, action="user.password", target=f"user {user.user_id}", outcome="refused",
                     detail="current password wrong")
        session.commit()
        raise HTTPException(403, "the current password is wrong")
    if len(body.new_password) < config.min_password_length:
        raise HTTPException(422, f"the new password needs at least {config.min_password_length} characters")
    row.password_hash = hash_password(body.new_password)
    token = request_token(request)
    keep = token_hash(token) if token is not None else ""
    session.execute(delete(UserSession).where(UserSession.user_id == row.id, UserSession.token_hash != keep))
    audit.record(session, request, action="user.password", target=f"user {user.user_id}")
    session.commit()
    return Response(status_code=204)
