"""page_operator: who captured each page (the kind and opaque id of the clerk signed in, or
"citizen"), as the page's event now says, so a dossier's operator is known from its first page
and every page can be traced to the counter operator who scanned it

Revision ID: 0018_page_operator
Revises: 0017_dossiers_unmatched
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_page_operator"
down_revision: str | None = "0017_dossiers_unmatched"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("operator_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("operator_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("operator_id")
        batch.drop_column("operator_kind")
