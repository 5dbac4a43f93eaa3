"""User administration: who may grant what, and the changes themselves (``/api/v1/users`` is
:mod:`fleet.api.routes.users`; it audits and commits).

A province admin manages anyone; a unit admin only viewers and unit admins of their own unit's
subtree (others are 404 to them). Nobody can disable or demote themselves, so the fleet always
keeps an admin. A disabled user, or one whose password an admin reset, loses every session.

>>> from pydantic import SecretStr
>>> check_password(SecretStr("correct horse battery"), 12)
'correct horse battery'
"""

from datetime import datetime

from fastapi import HTTPException
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.auth.models import User
from fleet.auth.passwords import hash_password
from fleet.auth.principal import Principal, Role
from fleet.auth.scope import OutOfScope, in_scope, visible_units
from fleet.auth.sessions import close_all
from fleet.enroll.models import EnrollmentRow
from fleet.models import Device
from fleet.progress.models import Unit


def check_password(password: SecretStr, minimum: int) -> str:
    """The password's text; 422 when it is shorter than ``minimum`` or longer than 1024."""
    value = password.get_secret_value()
    if len(value) < minimum or len(value) > 1024:
        raise HTTPException(422, f"a password needs {minimum} to 1024 characters")
    return value


def check_grant(session: Session, admin: Principal, role: Role, unit_code: str | None) -> None:
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


def managed(session: Session, admin: Principal, user_id: int) -> User:
    """The user, when ``admin`` may manage them; 404 (audited) otherwise."""
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(404, "no such user")
    if not admin.is_province_admin and (
        user.role == "province_admin" or not in_scope(visible_units(session, admin), user.unit_code)
    ):
        raise OutOfScope("no such user", unit_code=user.unit_code)  # read as a missing one
    return user


def managed_users(session: Session, admin: Principal) -> list[User]:
    """The users ``admin`` manages, by name."""
    query = select(User).order_by(User.name)
    if not admin.is_province_admin:
        visible = visible_units(session, admin) or frozenset()
        query = query.where(User.role != "province_admin", User.unit_code.in_(sorted(visible)))
    return list(session.scalars(query))


def add_user(session: Session, admin: Principal, *, name: str, password: SecretStr, role: Role,
             unit_code: str | None, min_password_length: int, now: datetime) -> User:
    """Create a user (a unit admin: only viewers and unit admins in their units); 409 when the
    name is taken, by a user or a device."""
    check_grant(session, admin, role, unit_code)
    text = check_password(password, min_password_length)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise HTTPException(409, "a user with this name exists")
    if is_device_name(session, name):
        raise HTTPException(409, "this name is a device's id: a user may not take it")
    user = User(name=name, password_hash=hash_password(text), role=role, unit_code=unit_code, disabled=False,
                created_at=now)
    session.add(user)
    session.flush()
    return user


def change_user(session: Session, admin: Principal, user: User, *, role: Role, unit_code: str | None,
                grant_changed: bool, password: SecretStr | None, disabled: bool | None,
                min_password_length: int) -> list[str]:
    """Apply an admin's changes to ``user`` (ending their sessions when their rights or password
    change, or they are disabled); returns what changed, for the audit entry. 409 for disabling
    or demoting oneself."""
    if user.id == admin.user_id and (disabled or role != user.role):
        raise HTTPException(409, "you cannot disable or demote yourself")
    if grant_changed:
        check_grant(session, admin, role, unit_code)
    changed: list[str] = []
    if role != user.role or unit_code != user.unit_code:
        changed.append(f"role {user.role}->{role}" if role != user.role else "")
        changed.append(f"unit {user.unit_code}->{unit_code}" if unit_code != user.unit_code else "")
        user.role, user.unit_code = role, unit_code
        close_all(session, user.id)  # the sessions carried the old rights
    if password is not None:
        user.password_hash = hash_password(check_password(password, min_password_length))
        changed.append("password reset")
        close_all(session, user.id)
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        changed.append("disabled" if disabled else "enabled")
        if disabled:
            close_all(session, user.id)
    return [c for c in changed if c]
