"""Migration 0010 on a database that already holds digitized dossiers (SQLite and PostgreSQL):
each becomes a registry row under its normalized code; a result's pages are left to a recount."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from fleet.db import make_engine, migrate


def test_existing_digitized_dossiers_fill_the_registry(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine, "0009_maintenance_marks")
        first = datetime(2026, 1, 5, 3, tzinfo=UTC)
        with engine.begin() as conn:
            for code, unit in (("h99-1", "99001"), ("H99-2", None), ("H99-2-KQ1", "99001")):
                conn.execute(text("INSERT INTO dossiers_digitized (dossier_code, first_at, page_id, device_id, "
                                  "unit_code) VALUES (:c, :t, :p, 'kiosk-a', :u)"),
                             {"c": code, "t": first.replace(tzinfo=None) if engine.dialect.name == "sqlite" else first,
                              "p": f"p-{code}", "u": unit})
        migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT code, digitized_unit, device_id, received_on FROM dossiers ORDER BY code"))
            assert [tuple(r) for r in rows] == [("H99-1", "99001", "kiosk-a", None), ("H99-2", None, "kiosk-a", None)]
    finally:
        engine.dispose()
