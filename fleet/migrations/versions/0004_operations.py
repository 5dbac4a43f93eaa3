"""fleet operations: settings layers, per-device desired/reported settings, commands, rollouts

Revision ID: 0004_operations
Revises: 0003_alerts
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from fleet.models import UTCDateTime

revision: str = "0004_operations"
down_revision: str | None = "0003_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "op_settings",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("settings", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_op_settings")),
    )
    op.create_table(
        "op_device_config",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("desired", _JSON, nullable=False),
        sa.Column("desired_version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("desired_at", UTCDateTime(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("reported", _JSON, nullable=True),
        sa.Column("reported_version", sa.Integer(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reported_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_op_device_config")),
    )
    op.create_table(
        "op_commands",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", _JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("deadline", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("rollout_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_op_commands")),
    )
    op.create_index("ix_op_commands_device_state", "op_commands", ["device_id", "state"])
    op.create_index(op.f("ix_op_commands_state"), "op_commands", ["state"])
    op.create_index(op.f("ix_op_commands_rollout_id"), "op_commands", ["rollout_id"])
    op.create_table(
        "op_rollouts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("doc", _JSON, nullable=False),
        sa.Column("offer", _JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_op_rollouts")),
    )
    op.create_index(op.f("ix_op_rollouts_status"), "op_rollouts", ["status"])


def downgrade() -> None:
    op.drop_table("op_rollouts")
    op.drop_table("op_commands")
    op.drop_table("op_settings")
    op.drop_table("op_device_config")
