"""Tables for digitization progress: the administrative units (with their history), the
targets per tier and per unit, and the dossiers received per unit per month.

A unit's record is keyed by (code, valid_from): a unit renamed, merged or moved under another
parent gets a new record and its old one keeps its dates, so a figure stays with the unit valid
on its date. Periods are calendar months in Vietnam's time, written ``YYYY-MM``.
"""

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime

TIERS = ("province", "agency", "district", "commune")
"""Tiers from the top. ``agency``: a province-level agency (a department, the Public
Administration Service Center), under its province. Two-tier local government (since 1/7/2025)
simply has no districts."""


class Unit(Base):
    """One version of an administrative unit, valid from ``valid_from`` to ``valid_to``
    (inclusive; open-ended when None)."""

    __tablename__ = "units"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date, primary_key=True)
    valid_to: Mapped[date | None] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(16), index=True)
    parent_code: Mapped[str | None] = mapped_column(String(64), index=True)

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class Target(Base):
    """A minimum digitization rate (0..1) from ``period_from`` on, for a whole tier
    (``tier`` set) or for one unit (``unit_code`` set), which overrides its tier's."""

    __tablename__ = "progress_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tier: Mapped[str | None] = mapped_column(String(16))
    unit_code: Mapped[str | None] = mapped_column(String(64))
    period_from: Mapped[str] = mapped_column(String(7))
    rate: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("tier", "unit_code", "period_from", name="uq_progress_targets_scope"),
        CheckConstraint("(tier IS NULL) <> (unit_code IS NULL)", name="one_scope"),
        CheckConstraint("rate >= 0 AND rate <= 1", name="rate_range"),
    )


class Received(Base):
    """How many dossiers a unit received in a month (from the one-stop information system)."""

    __tablename__ = "dossiers_received"

    unit_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("count >= 0", name="count_positive"),)


class DigitizedDossier(Base):
    """A dossier with at least one accepted page: when and for which unit its first accepted page
    was captured (ties broken by page id). Kept by the ingest as pages arrive, in any order
    (:mod:`fleet.progress.digitized`), so counting digitized dossiers reads one row per dossier
    instead of ranking every page."""

    __tablename__ = "dossiers_digitized"

    dossier_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    page_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str | None] = mapped_column(String(64))
