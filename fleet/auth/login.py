"""Logging in and out, shared by the API (``/api/v1/auth``) and the web login page: the login's
fields read without ever echoing the password, the check with its rate limit and audit, the
session cookie.

>>> safe_next("/fleet?unit=01"), safe_next("//evil.example/"), safe_next("https://evil.example/")
('/fleet?unit=01', '/', '/')
"""

import json
import logging
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.deps import StateDep
from fleet.auth import audit
from fleet.auth.config import AuthConfig
from fleet.auth.deps import request_token
from fleet.auth.models import User
from fleet.auth.passwords import verify_password
from fleet.auth.principal import Principal
from fleet.auth.ratelimit import ATTEMPT, LOGIN, retry_after, serialize_attempts
from fleet.auth.sessions import COOKIE, close_session, open_session, principal_of

log = logging.getLogger(__name__)

MAX_BODY = 4096


class LoginIn(BaseModel):
    """What a login sends. Parsed by hand (:func:`login_form`) so that a validation error never
    echoes the password back."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    next: str | None = Field(default=None, max_length=2000, description="Web form only: where to go afterwards")


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
        serialize_attempts(session, form.name, ip)
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


def end_session(session: Session, request: Request, user: Principal) -> None:
    """End the request's session (its token stops working at once) and audit the logout; the
    API's logout and the web pages' logout button both go through here."""
    token = request_token(request)
    if token is not None:
        close_session(session, token)
    audit.record(session, request, action="auth.logout", target=f"user {user.user_id}")
    session.commit()


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirect).
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
