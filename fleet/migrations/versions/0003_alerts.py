"""alerts (open / acknowledged / resolved, one open per subject and kind)

Revision ID: 0003_alerts
Revises: 0002_progress
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_alerts"
down_revision: str | None = "0002_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=96), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("open_key", sa.String(length=160), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message_vi", sa.String(length=300), nullable=False),
        sa.Column("message_en", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index(op.f("ix_alerts_device_id"), "alerts", ["device_id"])
    op.create_index(op.f("ix_alerts_status"), "alerts", ["status"])
    op.create_index("ix_alerts_opened", "alerts", ["opened_at"])


def downgrade() -> None:
    op.drop_table("alerts")
