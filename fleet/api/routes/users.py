"""``/api/v1/users``: user administration, for admins; who may grant what and the changes
themselves are :mod:`fleet.auth.users`. Bodies are parsed without ever echoing a password."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fleet.api.deps import UNIT_PATTERN, RowId, SessionDep, StateDep, secret_body
from fleet.auth import audit, users
from fleet.auth.deps import AdminUser
from fleet.auth.models import User
from fleet.auth.principal import Role

router = APIRouter(prefix="/users", tags=["users"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"

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


@router.post("", status_code=201, responses={403: {"description": "Outside what you may grant"},
                                             409: {"description": "The name is taken"}})
def create_user(
    request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
    body: Annotated[UserIn, secret_body(UserIn)],
) -> UserOut:
    """Create a user (a unit admin: only viewers and unit admins in their units)."""
    user = users.add_user(session, admin, name=body.name, password=body.password, role=body.role,
                          unit_code=body.unit_code, min_password_length=state.config.auth.min_password_length,
                          now=state.now())
    audit.record(session, request, action="user.create", target=f"user {user.id} {user.name} ({user.role})",
                 unit_code=user.unit_code, outcome="201")
    session.commit()
    return _out(user)


@router.get("")
def list_users(session: SessionDep, admin: AdminUser) -> list[UserOut]:
    """The users you manage, by name."""
    return [_out(u) for u in users.managed_users(session, admin)]


@router.get("/{user_id}")
def get_user(user_id: RowId, session: SessionDep, admin: AdminUser) -> UserOut:
    return _out(users.managed(session, admin, user_id))


@router.patch("/{user_id}", responses={409: {"description": "You cannot disable or demote yourself"}})
def update_user(
    user_id: RowId, request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
    body: Annotated[UserPatch, secret_body(UserPatch)],
) -> UserOut:
    """Change a user's role, unit, password, or disable / re-enable them."""
    user = users.managed(session, admin, user_id)
    fields = body.model_fields_set
    role: Role = body.role if body.role is not None else user.role  # type: ignore[assignment]
    changed = users.change_user(session, admin, user, role=role,
                                unit_code=body.unit_code if "unit_code" in fields else user.unit_code,
                                grant_changed="role" in fields or "unit_code" in fields, password=body.password,
                                disabled=body.disabled, min_password_length=state.config.auth.min_password_length)
    audit.record(session, request, action="user.update", target=f"user {user.id} {user.name}",
                 unit_code=user.unit_code, outcome="200", detail=", ".join(changed) or "no change")
    session.commit()
    return _out(user)
