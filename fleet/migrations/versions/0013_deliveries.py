"""deliveries: the outbox of signed documents to the one-stop system (one row per document and
target); dossier_documents.files_deleted_at: when retention deleted the document's files (the
row, its names and hashes stay)

Revision ID: 0013_deliveries
Revises: 0012_document_device_name
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0013_deliveries"
down_revision: str | None = "0012_document_device_name"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("receipt", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["dossier_documents.id"], ondelete="CASCADE",
                                name=op.f("fk_deliveries_document_id_dossier_documents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("document_id", "target", name="uq_deliveries_document_target"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_target_state", "deliveries", ["target", "state"])
    op.create_index("ix_deliveries_dossier", "deliveries", ["dossier_code", "target"])
    with op.batch_alter_table("dossier_documents") as batch:
        batch.add_column(sa.Column("files_deleted_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.drop_column("files_deleted_at")
    op.drop_index("ix_deliveries_dossier", table_name="deliveries")
    op.drop_index("ix_deliveries_target_state", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
