"""events_type_ts: the alert pass looks for the last day's scanner faults by event type and
time on every pass (every 30 s); with only the (device, time) index it read every event ever
stored, and events are kept (a year of a national fleet's page events is hundreds of millions)

Revision ID: 0021_events_type_ts
Revises: 0020_dossier_counts
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_events_type_ts"
down_revision: str | None = "0020_dossier_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_type_ts", "events", ["type", "ts"])


def downgrade() -> None:
    op.drop_index("ix_events_type_ts", table_name="events")
