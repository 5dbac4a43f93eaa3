"""Session tokens: random, handed out once at login; only their sha256 is stored.

>>> token = new_token(); len(token) >= 40 and token_hash(token) != token
True
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleet.auth.models import User, UserSession
from fleet.auth.principal import ROLES, Principal, Role

COOKIE = "sohoa_session"
_TOUCH_EVERY = timedelta(seconds=60)  # last_used is written at most this often per session


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(user: User) -> Principal:
    role: Role = next((r for r in ROLES if r == user.role), "viewer")  # an unknown role reads as the least
    return Principal(user_id=user.id, name=user.name, role=role, unit_code=user.unit_code)


def open_session(session: Session, user: User, now: datetime, ttl_s: float) -> tuple[str, datetime]:
    """Create a session for ``user``; returns the token (never stored) and its expiry. Commits."""
    token = new_token()
    expires = now + timedelta(seconds=ttl_s)
    session.add(UserSession(token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=expires,
                            last_used=now))
    # Expired sessions of this user go at the same time: the table stays the size of the live ones.
    session.execute(delete(UserSession).where(UserSession.user_id == user.id, UserSession.expires_at <= now))
    session.commit()
    return token, expires


def resolve(session: Session, token: str, now: datetime) -> Principal | None:
    """The principal of a live session of an enabled user, or None. Commits a ``last_used`` touch."""
    if not token or len(token) > 256:
        return None
    row = session.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user_session, user = row[0], row[1]
    if user.disabled or user_session.expires_at <= now:
        return None
    if now - user_session.last_used >= _TOUCH_EVERY:
        user_session.last_used = now
        session.commit()
    return principal_of(user)


def close_session(session: Session, token: str) -> bool:
    """Delete the session of ``token``; True when there was one. Commits."""
    found = session.get(UserSession, token_hash(token))
    if found is not None:
        session.delete(found)
    session.commit()
    return found is not None


def close_all(session: Session, user_id: int) -> None:
    """Delete every session of a user (disabled, password changed). The caller commits."""
    session.execute(delete(UserSession).where(UserSession.user_id == user_id))
