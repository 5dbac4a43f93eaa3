"""enrollment: tokens, enrollments, issued certificates; devices.revoked_at (#6)

Revision ID: 0007_enroll
Revises: 0006_page_unit
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0007_enroll"
down_revision: str | None = "0006_page_unit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_id", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("require_approval", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_enrollment_tokens")),
    )
    op.create_index(op.f("ix_enrollment_tokens_unit_code"), "enrollment_tokens", ["unit_code"])
    op.create_table(
        "enrollments",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=16), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_enrollments")),
    )
    op.create_index("ix_enrollments_state_unit", "enrollments", ["state", "unit_code"])
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=49), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("not_after", UTCDateTime(), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_certificates")),
    )
    op.create_index("ix_certificates_name_issued", "certificates", ["name", "issued_at"])
    op.create_index(op.f("ix_certificates_not_after"), "certificates", ["not_after"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("revoked_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("revoked_at")
    op.drop_index(op.f("ix_certificates_not_after"), table_name="certificates")
    op.drop_index("ix_certificates_name_issued", table_name="certificates")
    op.drop_table("certificates")
    op.drop_index("ix_enrollments_state_unit", table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_index(op.f("ix_enrollment_tokens_unit_code"), table_name="enrollment_tokens")
    op.drop_table("enrollment_tokens")
