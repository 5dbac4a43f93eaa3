"""The fleet's tables (SQLAlchemy 2, typed ORM). Alembic migrations under
``fleet/migrations`` create them; this module is what the code reads and writes.

Thin on purpose: later work adds enrollment, roles and audit; settings, commands and
rollouts; units, targets and reports, each in its own tables.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite has no time zones: store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON (JSONB on PostgreSQL); Python None is SQL NULL, not a JSON null."""

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Device(Base):
    """A kiosk or counter box, as last heard from."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_code: Mapped[str | None] = mapped_column(String(64), index=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # online | offline | unknown
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    scanner_state: Mapped[str | None] = mapped_column(String(32))
    scanner_model: Mapped[str | None] = mapped_column(String(128))
    outbox_events: Mapped[int | None] = mapped_column(Integer)
    outbox_files: Mapped[int | None] = mapped_column(Integer)
    outbox_bytes: Mapped[int | None] = mapped_column(BigInteger)
    accepting_scans: Mapped[bool | None] = mapped_column(Boolean)
    last_telemetry: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    last_telemetry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its certificates revoked (0007_enroll)


class Event(Base):
    """Something a device reported (page captured, scanner fault...). The id is the message id."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)

    # (type, ts): the alert pass's look for the last day's scanner faults (every pass) reads
    # those events only, not every event ever stored.
    __table_args__ = (Index("ix_events_device_ts", "device_id", "ts"), Index("ix_events_type_ts", "type", "ts"))


class TelemetrySample(Base):
    """One telemetry report, kept as history. The id is the message id."""

    __tablename__ = "telemetry"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)

    __table_args__ = (Index("ix_telemetry_device_ts", "device_id", "ts"),)


class MaintenanceMark(Base):
    """How far a periodic maintenance job has got (e.g. telemetry thinned up to a time), so the
    next pass starts there instead of reading the whole history again."""

    __tablename__ = "maintenance_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Page(Base):
    """A captured page's metadata (from its ``page_captured`` event). The file is in ``files``
    under ``sha256`` once uploaded; either may arrive first."""

    __tablename__ = "pages"

    page_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))
    dossier_code: Mapped[str | None] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dpi: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    doctype: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    dropped: Mapped[bool] = mapped_column(Boolean, default=False)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The device's unit when the page came in: a device moved to another unit keeps its history.
    unit_code: Mapped[str | None] = mapped_column(String(64))
    # Who captured it, when the device said: unit_staff, postal_staff or citizen, and the
    # operator's opaque id (never a name).
    operator_kind: Mapped[str | None] = mapped_column(String(16))
    operator_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_pages_device_captured", "device_id", "captured_at"),
                      Index("ix_pages_unit_captured", "unit_code", "captured_at"))


class StoredFile(Base):
    """A file held in the content-addressed store."""

    __tablename__ = "files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))


def is_online(device: Device, now: datetime, heartbeat_timeout_s: float) -> bool:
    """Online: the device has not said (or its Last Will has not said) it is offline, and it
    was heard from within the heartbeat timeout. A device silent for longer is offline even
    when its retained status still says online (a broken link may not trigger the Will soon)."""
    if device.status == "offline":
        return False
    return (now - device.last_seen).total_seconds() <= heartbeat_timeout_s
