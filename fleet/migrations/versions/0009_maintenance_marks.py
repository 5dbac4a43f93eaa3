"""maintenance_marks: how far a periodic maintenance job (telemetry thinning) has got

Revision ID: 0009_maintenance_marks
Revises: 0008_dossiers_digitized
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0009_maintenance_marks"
down_revision: str | None = "0008_dossiers_digitized"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "maintenance_marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_marks")),
    )


def downgrade() -> None:
    op.drop_table("maintenance_marks")
