"""units, progress targets (seeded with the directive's 50/40/35%), dossiers received

Revision ID: 0002_progress
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_progress"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("code", "valid_from", name=op.f("pk_units")),
    )
    op.create_index(op.f("ix_units_tier"), "units", ["tier"])
    op.create_index(op.f("ix_units_parent_code"), "units", ["parent_code"])
    targets = op.create_table(
        "progress_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("period_from", sa.String(length=7), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.CheckConstraint("(tier IS NULL) <> (unit_code IS NULL)", name=op.f("ck_progress_targets_one_scope")),
        sa.CheckConstraint("rate >= 0 AND rate <= 1", name=op.f("ck_progress_targets_rate_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_progress_targets")),
        sa.UniqueConstraint("tier", "unit_code", "period_from", name="uq_progress_targets_scope"),
    )
    op.create_table(
        "dossiers_received",
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_dossiers_received_count_positive")),
        sa.PrimaryKeyConstraint("unit_code", "period", name=op.f("pk_dossiers_received")),
    )
    op.create_index(op.f("ix_dossiers_received_period"), "dossiers_received", ["period"])
    # The directive (January 2022): 50% province, 40% district, 35% commune. Data, not code.
    op.bulk_insert(targets, [
        {"tier": "province", "unit_code": None, "period_from": "2022-01", "rate": 0.50},
        {"tier": "district", "unit_code": None, "period_from": "2022-01", "rate": 0.40},
        {"tier": "commune", "unit_code": None, "period_from": "2022-01", "rate": 0.35},
    ])


def downgrade() -> None:
    op.drop_table("dossiers_received")
    op.drop_table("progress_targets")
    op.drop_table("units")
