"""The dossier registry's tables: one row per dossier (what the one-stop system received, what
the devices digitized, matched by code) and one per document a device built for it.

A dossier row is keyed by its code (normalized: :func:`fleet.dossiers.codes.normalize`). It
fills from two sides, in any order: the received list (unit, procedure, received, due and
result dates) and the ingest (first accepted page or component document, first result). A
code digitized but never received stays a row with no received date (``unmatched``): listed
apart, never counted in a rate. A walk-in dossier closed before anyone named it is a row
keyed ``WALKIN-…`` (``walk_in``); once a clerk names it, its documents and pages move to the
real code and the walk-in row keeps ``named_code`` as the trace.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, JsonDoc, UTCDateTime

OPERATOR_KINDS = ("unit_staff", "postal_staff", "citizen")
"""Who digitized: a unit's clerk, the public postal service's staff (Decree 107/2021), the
citizen at a self-service kiosk."""


class Dossier(Base):
    """One dossier, received and/or digitized."""

    __tablename__ = "dossiers"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    walk_in: Mapped[bool] = mapped_column(Boolean, default=False)
    named_code: Mapped[str | None] = mapped_column(String(64))
    procedure_code: Mapped[str | None] = mapped_column(String(64))
    # From the one-stop system's received list.
    received_unit: Mapped[str | None] = mapped_column(String(64))
    received_on: Mapped[date | None] = mapped_column(Date)
    received_period: Mapped[str | None] = mapped_column(String(7))
    due_on: Mapped[date | None] = mapped_column(Date)
    result_on: Mapped[date | None] = mapped_column(Date)
    # From the devices: the first component digitized (accepted page or document), the first result.
    component_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digitized_unit: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    operator_kind: Mapped[str | None] = mapped_column(String(16))
    operator_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Counting a range's dossiers per unit and month reads this index alone: it holds the
        # digitized moments the counts need.
        Index("ix_dossiers_period_unit", "received_period", "received_unit", "component_at", "result_at"),
        Index("ix_dossiers_unit_received", "received_unit", "received_on"),
        Index("ix_dossiers_digitized_unit", "digitized_unit", "component_at"),
        Index("ix_dossiers_component_at", "component_at"),
        # The digitized dossiers matching nothing received: listed and counted apart.
        Index("ix_dossiers_unmatched", "code", postgresql_where=text("received_on IS NULL"),
              sqlite_where=text("received_on IS NULL")),
    )


class DossierDocument(Base):
    """A PDF a device built and delivered for a dossier: a component (``<code>.<n>``) or a
    result (``<code>-KQ<n>``). A redelivered ``dossier_closed`` event adds nothing: a document
    is its (sha256, name), and a document already stored from the same session is not stored again.

    The fleet is the authority on numbers: a device numbers offline, so when two devices (or a
    device whose number book was lost) give one dossier's number twice, the document that comes
    second is renamed to the dossier's next free number and keeps its device's name in
    ``device_name`` (:func:`fleet.dossiers.registry.record_closed`).

    The fleet signs it (:mod:`fleet.signing`) once its file is in the store: the signed copy is
    stored by its own sha256 (``signed_sha256``), and a document is ready for delivery exactly
    when ``signed_sha256`` is set. ``signing_error`` keeps the last failure's reason for the
    admin (cleared once signed)."""

    __tablename__ = "dossier_documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_code: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # component | result
    sequence: Mapped[int | None] = mapped_column(Integer)
    doctype: Mapped[str | None] = mapped_column(String(64))
    pages: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    text_layer: Mapped[bool | None] = mapped_column(Boolean)
    device_id: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(64))
    page_ids: Mapped[list[Any]] = mapped_column(JsonDoc)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    operator_kind: Mapped[str | None] = mapped_column(String(16))
    operator_id: Mapped[str | None] = mapped_column(String(64))
    signed_sha256: Mapped[str | None] = mapped_column(String(64))
    signed_size: Mapped[int | None] = mapped_column(BigInteger)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signing_level: Mapped[str | None] = mapped_column(String(8))  # B-B | B-T
    signing_certificate: Mapped[str | None] = mapped_column(Text)  # PEM
    signing_error: Mapped[str | None] = mapped_column(Text)
    device_name: Mapped[str | None] = mapped_column(String(128))
    """The name the device gave, when the fleet renamed the document (its number was taken)."""
    files_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When retention deleted this document's files (original, signed copy, page images) after
    every target acknowledged it; the row, its names, hashes and counts stay."""

    __table_args__ = (
        UniqueConstraint("sha256", "name", name="uq_dossier_documents_file"),
        # The signing job's backlog, small however many documents were ever signed.
        Index("ix_dossier_documents_unsigned", "id", postgresql_where=text("signed_sha256 IS NULL"),
              sqlite_where=text("signed_sha256 IS NULL")),
        # The delivery worker's window: documents signed since its last complete pass.
        Index("ix_dossier_documents_signed_at", "signed_at"),
    )


class DossierCount(Base):
    """How many dossiers a unit received in a month (``period``, from the received date), how
    many of them have a component digitized and how many a result: what the progress figures
    read for the units whose dossiers are imported one per row, so a request reads one row per
    unit and month instead of counting every dossier.

    The database keeps it, not the writers: triggers on ``dossiers`` (migration
    ``0020_dossier_counts``) add each inserted, updated or deleted row's difference to its
    (unit, month) in the same transaction, with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + x``,
    whoever writes (the received import, the ingest's reconciliation, naming a walk-in, the
    recount, a bulk load); two fleet nodes writing at once add up, never overwrite. The full
    recount rebuilds it from the dossiers (:func:`fleet.dossiers.counts.rebuild`), the reference.
    A (unit, month) whose dossiers all moved away keeps a row of zeros, which counts nothing."""

    __tablename__ = "dossier_counts"

    unit_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    digitized: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_dossier_counts_period", "period", "unit_code"),)
