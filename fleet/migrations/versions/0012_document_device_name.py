"""document device name: a dossier document keeps the name its device gave when the fleet
renamed it because another document of the dossier already held that number

Revision ID: 0012_document_device_name
Revises: 0011_document_signing
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_document_device_name"
down_revision: str | None = "0011_document_signing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.add_column(sa.Column("device_name", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.drop_column("device_name")
