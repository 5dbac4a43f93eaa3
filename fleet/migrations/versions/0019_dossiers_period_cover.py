"""dossiers_period_cover: the index by (month received, receiving unit) also holds the two
digitized moments, so counting a year of a province's dossiers received, digitized and with
their result reads the index alone (PostgreSQL's index-only scan), not a million table rows

Revision ID: 0019_dossiers_period_cover
Revises: 0018_page_operator
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_dossiers_period_cover"
down_revision: str | None = "0018_page_operator"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_dossiers_period_unit", table_name="dossiers")
    op.create_index("ix_dossiers_period_unit", "dossiers",
                    ["received_period", "received_unit", "component_at", "result_at"])


def downgrade() -> None:
    op.drop_index("ix_dossiers_period_unit", table_name="dossiers")
    op.create_index("ix_dossiers_period_unit", "dossiers", ["received_period", "received_unit"])
