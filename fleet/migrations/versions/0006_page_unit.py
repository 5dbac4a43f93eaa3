"""pages.unit_code: the device's unit when the page came in (a device moved to another unit
keeps its history); existing pages get their device's current unit

Revision ID: 0006_page_unit
Revises: 0005_auth
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_page_unit"
down_revision: str | None = "0005_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pages", sa.Column("unit_code", sa.String(length=64), nullable=True))
    op.execute("UPDATE pages SET unit_code = "
               "(SELECT devices.unit_code FROM devices WHERE devices.id = pages.device_id)")
    op.create_index("ix_pages_unit_captured", "pages", ["unit_code", "captured_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pages_unit_captured", table_name="pages")
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("unit_code")
