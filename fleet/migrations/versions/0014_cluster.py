"""cluster: job leases (one node runs each background job) and signed requests' nonces shared by
every fleet node on the database

Revision ID: 0014_cluster
Revises: 0013_deliveries
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_cluster"
down_revision: str | None = "0013_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )
    op.create_table(
        "request_nonces",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "nonce", name=op.f("pk_request_nonces")),
    )
    op.create_index(op.f("ix_request_nonces_ts"), "request_nonces", ["ts"])


def downgrade() -> None:
    op.drop_index(op.f("ix_request_nonces_ts"), table_name="request_nonces")
    op.drop_table("request_nonces")
    op.drop_table("job_leases")
