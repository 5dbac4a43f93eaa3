"""operators: the counter operators of each unit (unit staff, postal staff) with salted scrypt
hashes of their PINs and staff-card tokens

Revision ID: 0015_operators
Revises: 0014_cluster
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0015_operators"
down_revision: str | None = "0014_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("unit_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("pin_hash", sa.String(length=160), nullable=True),
        sa.Column("card_hash", sa.String(length=160), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_operators_unit", "operators", ["unit_code"])


def downgrade() -> None:
    op.drop_index("ix_operators_unit", table_name="operators")
    op.drop_table("operators")
