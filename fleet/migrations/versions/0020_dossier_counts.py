"""dossier_counts: per receiving unit and month received, the dossiers received, digitized and
with their result, kept by triggers on ``dossiers`` in the writing transaction (every writer,
two fleet nodes at once), backfilled from the dossiers here; the progress figures read it
instead of counting a year of dossiers on every request

Revision ID: 0020_dossier_counts
Revises: 0019_dossiers_period_cover
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_dossier_counts"
down_revision: str | None = "0019_dossiers_period_cover"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ADD = ("ON CONFLICT (unit_code, period) DO UPDATE SET received = dossier_counts.received + excluded.received, "
        "digitized = dossier_counts.digitized + excluded.digitized, "
        "results = dossier_counts.results + excluded.results")

# PostgreSQL: one statement-level trigger per event, reading the statement's rows (transition
# tables) and adding their grouped difference, (unit, month) in key order so that two
# transactions adding to the same rows take their locks in the same order.
_PG_DIFFERENCE = """
    INSERT INTO dossier_counts (unit_code, period, received, digitized, results)
    SELECT unit_code, period, sum(received), sum(digitized), sum(results) FROM ({rows}) AS d
    GROUP BY unit_code, period
    HAVING sum(received) <> 0 OR sum(digitized) <> 0 OR sum(results) <> 0
    ORDER BY unit_code, period
    {add};"""


def _pg_rows(table: str, sign: str) -> str:
    # Table names and signs from this module, never from input.
    return (f"SELECT received_unit AS unit_code, received_period AS period, {sign}1 AS received, "  # noqa: S608
            f"{sign}(component_at IS NOT NULL)::int AS digitized, {sign}(result_at IS NOT NULL)::int AS results "
            f"FROM {table} WHERE received_unit IS NOT NULL AND received_period IS NOT NULL")


_PG_FUNCTION = f"""
CREATE FUNCTION dossier_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_PG_DIFFERENCE.format(rows=_pg_rows("new_rows", ""), add=_ADD)}
  ELSIF TG_OP = 'UPDATE' THEN
    {_PG_DIFFERENCE.format(rows=_pg_rows("new_rows", "") + " UNION ALL " + _pg_rows("old_rows", "-"), add=_ADD)}
  ELSE
    {_PG_DIFFERENCE.format(rows=_pg_rows("old_rows", "-"), add=_ADD)}
  END IF;
  RETURN NULL;
END $$"""

_PG_TRIGGERS = [
    "CREATE TRIGGER dossier_counts_insert AFTER INSERT ON dossiers REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION dossier_counts_follow()",
    "CREATE TRIGGER dossier_counts_update AFTER UPDATE ON dossiers "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION dossier_counts_follow()",
    "CREATE TRIGGER dossier_counts_delete AFTER DELETE ON dossiers REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION dossier_counts_follow()",
]


def _sqlite_add(row: str, sign: str) -> str:
    return (f"INSERT INTO dossier_counts (unit_code, period, received, digitized, results) "
            f"SELECT {row}.received_unit, {row}.received_period, {sign}1, {sign}({row}.component_at IS NOT NULL), "
            f"{sign}({row}.result_at IS NOT NULL) "
            f"WHERE {row}.received_unit IS NOT NULL AND {row}.received_period IS NOT NULL {_ADD};")


# SQLite: row-level triggers (it has no others); an update that changes nothing counted is skipped.
_COUNTED_CHANGE = ("OLD.received_unit IS NOT NEW.received_unit OR OLD.received_period IS NOT NEW.received_period "
                   "OR (OLD.component_at IS NULL) <> (NEW.component_at IS NULL) "
                   "OR (OLD.result_at IS NULL) <> (NEW.result_at IS NULL)")
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER dossier_counts_insert AFTER INSERT ON dossiers BEGIN {_sqlite_add('NEW', '')} END",
    f"CREATE TRIGGER dossier_counts_update AFTER UPDATE ON dossiers WHEN {_COUNTED_CHANGE} "
    f"BEGIN {_sqlite_add('OLD', '-')} {_sqlite_add('NEW', '')} END",
    f"CREATE TRIGGER dossier_counts_delete AFTER DELETE ON dossiers BEGIN {_sqlite_add('OLD', '-')} END",
]

_BACKFILL = """
INSERT INTO dossier_counts (unit_code, period, received, digitized, results)
SELECT received_unit, received_period, count(*), count(component_at), count(result_at) FROM dossiers
WHERE received_unit IS NOT NULL AND received_period IS NOT NULL
GROUP BY received_unit, received_period"""


def upgrade() -> None:
    op.create_table(
        "dossier_counts",
        sa.Column("unit_code", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("digitized", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("results", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("unit_code", "period", name=op.f("pk_dossier_counts")),
    )
    op.create_index("ix_dossier_counts_period", "dossier_counts", ["period", "unit_code"])
    if op.get_bind().dialect.name == "postgresql":
        # No dossier written between the backfill and the triggers: both in this transaction,
        # the table locked against writers first.
        op.execute("LOCK TABLE dossiers IN SHARE ROW EXCLUSIVE MODE")
        op.execute(_PG_FUNCTION)
        for trigger in _PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(_BACKFILL)


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS dossier_counts_{event}" +
                   (" ON dossiers" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS dossier_counts_follow()")
    op.drop_index("ix_dossier_counts_period", table_name="dossier_counts")
    op.drop_table("dossier_counts")
