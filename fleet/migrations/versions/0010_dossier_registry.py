"""dossier registry: dossiers (received list and digitization matched by code) and their
documents; unit codes widened to 64 characters (province-level agencies have codes such as
000.00.12.H10); the registry filled from the digitized dossiers already known

Revision ID: 0010_dossier_registry
Revises: 0009_maintenance_marks
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import JsonDoc, UTCDateTime

revision: str = "0010_dossier_registry"
down_revision: str | None = "0009_maintenance_marks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDENED = (("units", "code"), ("units", "parent_code"), ("progress_targets", "unit_code"),
            ("dossiers_received", "unit_code"), ("users", "unit_code"), ("audit_log", "unit_code"),
            ("alerts", "unit_code"))

# Every dossier already digitized (first accepted page), under its normalized code. Pages of a
# result (code-KQn) are left to a full recount (POST /api/v1/dossiers/recount), which knows the form.
_FILL = """
INSERT INTO dossiers (code, walk_in, component_at, digitized_unit, device_id, updated_at)
SELECT UPPER(TRIM(dossier_code)), {false}, MIN(first_at), MIN(unit_code), MIN(device_id), MIN(first_at)
FROM dossiers_digitized WHERE UPPER(dossier_code) NOT LIKE '%-KQ%'
GROUP BY UPPER(TRIM(dossier_code))
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce VARCHAR lengths
        for table, column in _WIDENED:
            op.alter_column(table, column, type_=sa.String(length=64), existing_type=sa.String(length=16))
    op.create_table(
        "dossiers",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("walk_in", sa.Boolean(), nullable=False),
        sa.Column("named_code", sa.String(length=64), nullable=True),
        sa.Column("procedure_code", sa.String(length=64), nullable=True),
        sa.Column("received_unit", sa.String(length=64), nullable=True),
        sa.Column("received_on", sa.Date(), nullable=True),
        sa.Column("received_period", sa.String(length=7), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("result_on", sa.Date(), nullable=True),
        sa.Column("component_at", UTCDateTime(), nullable=True),
        sa.Column("result_at", UTCDateTime(), nullable=True),
        sa.Column("digitized_unit", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("operator_kind", sa.String(length=16), nullable=True),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dossiers")),
    )
    op.create_index("ix_dossiers_period_unit", "dossiers", ["received_period", "received_unit"])
    op.create_index("ix_dossiers_unit_received", "dossiers", ["received_unit", "received_on"])
    op.create_index("ix_dossiers_digitized_unit", "dossiers", ["digitized_unit", "component_at"])
    op.create_index("ix_dossiers_component_at", "dossiers", ["component_at"])
    op.create_table(
        "dossier_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("doctype", sa.String(length=64), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text_layer", sa.Boolean(), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("page_ids", JsonDoc, nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=False),
        sa.Column("operator_kind", sa.String(length=16), nullable=True),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_documents")),
        sa.UniqueConstraint("sha256", "name", name="uq_dossier_documents_file"),
    )
    op.create_index(op.f("ix_dossier_documents_dossier_code"), "dossier_documents", ["dossier_code"])
    false = "false" if op.get_bind().dialect.name == "postgresql" else "0"
    op.execute(_FILL.format(false=false))


def downgrade() -> None:
    op.drop_index(op.f("ix_dossier_documents_dossier_code"), table_name="dossier_documents")
    op.drop_table("dossier_documents")
    for name in ("ix_dossiers_component_at", "ix_dossiers_digitized_unit", "ix_dossiers_unit_received",
                 "ix_dossiers_period_unit"):
        op.drop_index(name, table_name="dossiers")
    op.drop_table("dossiers")
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _WIDENED:
            op.alter_column(table, column, type_=sa.String(length=16), existing_type=sa.String(length=64))
