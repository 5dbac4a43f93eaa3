"""dossiers_unmatched: a partial index on the dossiers no received row matches, so listing them
(state=unmatched) and counting them per month read a few thousand rows, not the whole registry

Revision ID: 0017_dossiers_unmatched
Revises: 0016_documents_signed_at
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_dossiers_unmatched"
down_revision: str | None = "0016_documents_signed_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNMATCHED = "received_on IS NULL"


def upgrade() -> None:
    op.create_index("ix_dossiers_unmatched", "dossiers", ["code"],
                    postgresql_where=sa.text(UNMATCHED), sqlite_where=sa.text(UNMATCHED))


def downgrade() -> None:
    op.drop_index("ix_dossiers_unmatched", table_name="dossiers")
