"""Tables of fleet operations. Created by the Alembic revision ``0004_operations``."""

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, JsonDoc, UTCDateTime


class SettingsLayer(Base):
    """Desired settings at one level: the fleet (key ``*``), a unit (its code) or a device (its id)."""

    __tablename__ = "op_settings"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # fleet | unit | device
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeviceConfig(Base):
    """Per device: the effective desired settings last published, and what the device reported."""

    __tablename__ = "op_device_config"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    desired: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    desired_version: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    desired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_version: Mapped[int | None] = mapped_column(Integer)
    reported: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    reported_version: Mapped[int | None] = mapped_column(Integer)
    applied: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CommandRow(Base):
    """One command: queued -> delivered -> in_progress -> succeeded | failed | timed_out | rejected.
    ``delivered`` is only ever set from the device's own acknowledgement."""

    __tablename__ = "op_commands"
    __table_args__ = (Index("ix_op_commands_device_state", "device_id", "state"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rollout_id: Mapped[str | None] = mapped_column(String(64), index=True)


class RolloutRow(Base):
    """A rollout: the pure :class:`fleet.rollouts.Rollout` as JSON (phases, per-device progress)
    and what is offered."""

    __tablename__ = "op_rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    doc: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    offer: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
