"""document signing: each dossier document records its signed copy (sha256, size, time, PAdES
level, signing certificate) and the last signing failure; a partial index finds the unsigned

Revision ID: 0011_document_signing
Revises: 0010_dossier_registry
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0011_document_signing"
down_revision: str | None = "0010_dossier_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSIGNED = "signed_sha256 IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.add_column(sa.Column("signed_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("signed_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("signed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("signing_level", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("signing_certificate", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signing_error", sa.Text(), nullable=True))
    op.create_index("ix_dossier_documents_unsigned", "dossier_documents", ["id"],
                    postgresql_where=sa.text(UNSIGNED), sqlite_where=sa.text(UNSIGNED))


def downgrade() -> None:
    op.drop_index("ix_dossier_documents_unsigned", table_name="dossier_documents")
    with op.batch_alter_table("dossier_documents") as batch:
        for column in ("signing_error", "signing_certificate", "signing_level", "signed_at", "signed_size",
                       "signed_sha256"):
            batch.drop_column(column)
