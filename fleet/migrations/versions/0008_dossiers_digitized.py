"""dossiers_digitized: each digitized dossier's first accepted page (time, page, device, unit),
kept by the ingest, so the dashboard counts dossiers without ranking every page; filled here
from the pages already stored

Revision ID: 0008_dossiers_digitized
Revises: 0007_enroll
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fleet.models import UTCDateTime

revision: str = "0008_dossiers_digitized"
down_revision: str | None = "0007_enroll"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A page that makes its dossier digitized: a dossier code, not dropped, not rejected by the quality check.
_SQLITE = """
INSERT INTO dossiers_digitized (dossier_code, first_at, page_id, device_id, unit_code)
SELECT dossier_code, MIN(captured_at), page_id, device_id, unit_code FROM pages
WHERE dossier_code IS NOT NULL AND dropped = 0
  AND (quality IS NULL OR json_extract(quality, '$.ok') IS NULL OR json_extract(quality, '$.ok') = 1)
GROUP BY dossier_code
"""
_POSTGRESQL = """
INSERT INTO dossiers_digitized (dossier_code, first_at, page_id, device_id, unit_code)
SELECT DISTINCT ON (dossier_code) dossier_code, captured_at, page_id, device_id, unit_code FROM pages
WHERE dossier_code IS NOT NULL AND dropped = false
  AND (quality IS NULL OR (quality ->> 'ok') IS NULL OR (quality ->> 'ok')::boolean)
ORDER BY dossier_code, captured_at, page_id
"""


def upgrade() -> None:
    op.create_table(
        "dossiers_digitized",
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("dossier_code", name=op.f("pk_dossiers_digitized")),
    )
    op.create_index(op.f("ix_dossiers_digitized_first_at"), "dossiers_digitized", ["first_at"], unique=False)
    op.execute(_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE)


def downgrade() -> None:
    op.drop_index(op.f("ix_dossiers_digitized_first_at"), table_name="dossiers_digitized")
    op.drop_table("dossiers_digitized")
