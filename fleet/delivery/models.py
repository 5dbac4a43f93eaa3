"""The delivery outbox: one row per (document, target).

::

    queued ──claim──▶ sending ──file sent──▶ delivered ──manifest acknowledged──▶ acknowledged
      ▲                 │  │                     │
      │   retryable     │  │ permanent error,    │ manifest refused/unanswered: tried again
      └─(backoff)───────┘  │ or attempts spent   │ (backoff), the file is not sent again
                           ▼                     │
                         failed ◀────────────────┘
      failed/cancelled ──admin retry──▶ queued;  queued/sending/delivered/failed ──admin cancel──▶ cancelled

A row is claimed by setting it ``sending`` with ``next_attempt_at`` one lease ahead: if the
process dies there (``kill -9``) the row becomes due again when the lease runs out and is sent
again with the same ``idempotency_key``, which the receiver deduplicates.
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime

STATES = ("queued", "sending", "delivered", "acknowledged", "failed", "cancelled")
WAITING = ("queued", "sending", "delivered")
"""The states of a delivery still under way (its target's backlog)."""


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("dossier_documents.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(32))
    dossier_code: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    receipt: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("document_id", "target", name="uq_deliveries_document_target"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_target_state", "target", "state"),
        Index("ix_deliveries_dossier", "dossier_code", "target"),
    )
