"""Tables of users, their sessions and the audit log."""

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime


class User(Base):
    """Someone who logs into the admin API and web pages. ``password_hash`` is argon2id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    unit_code: Mapped[str | None] = mapped_column(String(64), index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A login. Only the sha256 of its token is stored: a leaked table opens no session."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_used: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did or tried what, when, from where. Never holds a secret."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str | None] = mapped_column(String(128))
    actor_kind: Mapped[str] = mapped_column(String(16))  # user | device | anonymous
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(255))
    unit_code: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_actor_at", "actor", "at"), Index("ix_audit_log_action_at", "action", "at"))
