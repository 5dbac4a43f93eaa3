"""The operators table: one row per person who may sign in at a unit's counter devices.

An operator is an opaque id (``op-`` and 10 hex digits) with a unit and a kind (unit staff or
the public postal service's staff); the fleet never keeps their PIN or card token in the clear,
only salted scrypt hashes in the form the devices check (``scrypt$N$r$p$salt$hash``). The
``label`` is what admins see in the list (a staff number or initials: no ID number).
"""

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime

OPERATOR_KINDS = ("unit_staff", "postal_staff")


class CounterOperator(Base):
    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    pin_hash: Mapped[str | None] = mapped_column(String(160))
    card_hash: Mapped[str | None] = mapped_column(String(160))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_operators_unit", "unit_code"),)
