"""dossier_documents.signed_at indexed: the delivery worker looks only at documents signed since
its last complete pass, not at every document ever signed

Revision ID: 0016_documents_signed_at
Revises: 0015_operators
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_documents_signed_at"
down_revision: str | None = "0015_operators"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dossier_documents_signed_at", "dossier_documents", ["signed_at"])


def downgrade() -> None:
    op.drop_index("ix_dossier_documents_signed_at", table_name="dossier_documents")
