"""``/api/v1/users``: user administration.

A province admin manages anyone; a unit admin only viewers and unit admins of their own unit's
subtree (others are 404 to them). Nobody can disable or demote themselves, so the fleet always
keeps an admin. A disabled user, or one whose password an admin reset, loses every session.
"""

import json
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep
from fleet.auth import audit
from fleet.auth.deps import AdminUser
from fleet.auth.models import User
from fleet.auth.passwords import hash_password
from fleet.auth.principal import Principal, Role
from fleet.auth.scope import OutOfScope, in_scope, visible_units
from fleet.auth.sessions import close_all
from fleet.enroll.models import EnrollmentRow
from fleet.models import Device
from fleet.progress.models import Unit

router = APIRouter(prefix="/users", tags=["users"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
UNIT_PATTERN = r"^[0-9A-Za-z]{1,16}$"

Body = TypeVar("Body", bound=BaseModel)


def secret_body(model: type[Body]) -> Any:
    """A dependency parsing a JSON body into ``model``; a 422 names the fields and problems but,
    unlike FastAPI's, never echoes the input (it may hold a password)."""

    async def parse(request: Request) -> Body:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            raise HTTPException(422, "the body is not JSON") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_input=False)]
            raise HTTPException(422, problems) from None

    return Depends(parse)


class UserIn(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Login name: letters, digits, . _ @ -")
    password: SecretStr = Field(description="Initial password (at least auth.min_password_length characters)")
    role: Role
    unit_code: str | None = Field(default=None, pattern=UNIT_PATTERN,
                                  description="Their unit: required for a unit admin, optional for a viewer")


class UserPatch(BaseModel):
    """What an admin may change on a user; absent fields stay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role | None = None
    unit_code: str | None = Field(default=None, pattern=UNIT_PATTERN)
    disabled: bool | None = None
    password: SecretStr | None = Field(default=None, description="A new password (the user's sessions end)")


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    unit_code: str | None
    disabled: bool
    created_at: datetime


def _out(user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role, unit_code=user.unit_code, disabled=user.disabled,
                   created_at=user.created_at)


def _check_password(state: StateDep, password: SecretStr) -> str:
    value = password.get_secret_value()
    minimum = state.config.auth.min_password_length
    if len(value) < minimum or len(value) > 1024:
        raise HTTPException(422, f"a password needs {minimum} to 1024 characters")
    return value


def _check_grant(session: Session, admin: Principal, role: Role, unit_code: str | None) -> None:
    """403 unless ``admin`` may give ``role`` in ``unit_code``; 422 for a role/unit that makes no sense."""
    if role == "unit_admin" and unit_code is None:
        raise HTTPException(422, "a unit admin needs a unit_code")
    if unit_code is not None and session.scalar(select(Unit.code).where(Unit.code == unit_code).limit(1)) is None:
        raise HTTPException(422, f"unit {unit_code} is not a known unit")
    if admin.is_province_admin:
        return
    if role == "province_admin" or not in_scope(visible_units(session, admin), unit_code):
        raise HTTPException(403, "a unit admin manages only viewers and unit admins of their own units")


def is_device_name(session: Session, name: str) -> bool:
    """Whether ``name`` is the id of a device the fleet knows or is enrolling (in any unit).

    The shape alone cannot tell: ``minh`` is as valid a device id as ``kiosk-0001``. A user named
    like a device would read, in a list filtered by actor, as that device; the audit log also
    scopes by actor kind, so even an older clash leaks nothing, but the two stay distinct here.
    """
    known = select(Device.id).where(Device.id == name).union(
        select(EnrollmentRow.device_id).where(EnrollmentRow.device_id == name))
    return session.execute(known.limit(1)).first() is not None


def _managed(session: Session, admin: Principal, user_id: int) -> User:
    """The user, when ``admin`` may manage them; 404 (audited) otherwise."""
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(404, "no such user")
    if not admin.is_province_admin and (
        user.role == "province_admin" or not in_scope(visible_units(session, admin), user.unit_code)
    ):
        raise OutOfScope("no such user", unit_code=user.unit_code)  # read as a missing one
    return user


@router.post("", status_code=201, responses={403: {"description": "Outside what you may grant"},
                                             409: {"description": "The name is taken"}})
def create_user(
    request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
    body: Annotated[UserIn, secret_body(UserIn)],
) -> UserOut:
    """Create a user (a unit admin: only viewers and unit admins in their units)."""
    _check_grant(session, admin, body.role, body.unit_code)
    password = _check_password(state, body.password)
    if session.scalar(select(User.id).where(User.name == body.name)) is not None:
        raise HTTPException(409, "a user with this name exists")
    if is_device_name(session, body.name):
        raise HTTPException(409, "this name is a device's id: a user may not take it")
    user = User(name=body.name, password_hash=hash_password(password), role=body.role, unit_code=body.unit_code,
                disabled=False, created_at=state.now())
    session.add(user)
    session.flush()
    audit.record(session, request, action="user.create", target=f"user {user.id} {user.name} ({user.role})",
                 unit_code=user.unit_code, outcome="201")
    session.commit()
    return _out(user)


@router.get("")
def list_users(session: SessionDep, admin: AdminUser) -> list[UserOut]:
    """The users you manage, by name."""
    query = select(User).order_by(User.name)
    if not admin.is_province_admin:
        visible = visible_units(session, admin) or frozenset()
        query = query.where(User.role != "province_admin", User.unit_code.in_(sorted(visible)))
    return [_out(u) for u in session.scalars(query)]


@router.get("/{user_id}")
def get_user(user_id: int, session: SessionDep, admin: AdminUser) -> UserOut:
    return _out(_managed(session, admin, user_id))


@router.patch("/{user_id}", responses={409: {"description": "You cannot disable or demote yourself"}})
def update_user(
    user_id: int, request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
    body: Annotated[UserPatch, secret_body(UserPatch)],
) -> UserOut:
    """Change a user's role, unit, password, or disable / re-enable them."""
    user = _managed(session, admin, user_id)
    fields = body.model_fields_set
    role: Role = body.role if body.role is not None else user.role  # type: ignore[assignment]
    unit_code = body.unit_code if "unit_code" in fields else user.unit_code
    if user.id == admin.user_id and (body.disabled or role != user.role):
        raise HTTPException(409, "you cannot disable or demote yourself")
    if "role" in fields or "unit_code" in fields:
        _check_grant(session, admin, role, unit_code)
    changed: list[str] = []
    if role != user.role or unit_code != user.unit_code:
        changed.append(f"role {user.role}->{role}" if role != user.role else "")
        changed.append(f"unit {user.unit_code}->{unit_code}" if unit_code != user.unit_code else "")
        user.role, user.unit_code = role, unit_code
        close_all(session, user.id)  # the sessions carried the old rights
    if body.password is not None:
        user.password_hash = hash_password(_check_password(state, body.password))
        changed.append("password reset")
        close_all(session, user.id)
    if body.disabled is not None and body.disabled != user.disabled:
        user.disabled = body.disabled
        changed.append("disabled" if body.disabled else "enabled")
        if body.disabled:
            close_all(session, user.id)
    audit.record(session, request, action="user.update", target=f"user {user.id} {user.name}",
                 unit_code=user.unit_code, outcome="200", detail=", ".join(c for c in changed if c) or "no change")
    session.commit()
    return _out(user)
