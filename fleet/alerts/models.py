"""The alerts table. One row per occurrence: opened when a condition starts, acknowledged by
an admin, resolved when the condition clears. ``open_key`` (kind + subject) is set while the
alert is not resolved and is unique, so there is never more than one open alert per device
(or unit) and kind, even with several evaluators."""

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime

KINDS = ("offline", "scanner_jammed", "scanner_cover_open", "disk_low", "outbox_backlog", "reject_rate",
         "behind_pace", "delivery_failed", "delivery_backlog")
STATUSES = ("open", "acknowledged", "resolved")


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(96))  # device:<id> or unit:<code>
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    unit_code: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    open_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    severity: Mapped[str] = mapped_column(String(16))
    message_vi: Mapped[str] = mapped_column(String(300))
    message_en: Mapped[str] = mapped_column(String(300))
    value: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_alerts_opened", "opened_at"),)
