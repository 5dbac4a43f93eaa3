"""``/api/v1/auth``: log in (a session token, also set as an httponly cookie), log out, who am I,
change my password."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete

from fleet.api.deps import SessionDep, StateDep
from fleet.auth import audit
from fleet.auth.deps import CurrentUser, request_token
from fleet.auth.login import LoginForm, auth_config, authenticate, clear_cookie, end_session, set_cookie
from fleet.auth.models import User, UserSession
from fleet.auth.passwords import hash_password, verify_password
from fleet.auth.sessions import token_hash

router = APIRouter(prefix="/auth", tags=["auth"])


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
