"""The broker-log watch puts ACL refusals in the audit log, and keeps them across a database fault."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select, text

from fleet.api.app import create_app
from fleet.api.state import FleetState, fleet_state
from fleet.auth.models import AuditEntry
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig
from fleet.db import migrate
from fleet.enroll.brokerlog import BrokerLogAudit

DENIED = ("1764072000: Denied PUBLISH from kiosk-a (d0, q1, r0, m1, 'sohoa/v1/kiosk-b/status', ... (12 bytes))\n")


def _entries(state: FleetState) -> list[tuple[str, str, str]]:
    with state.sessions() as session:
        return [(e.actor or "", e.action, e.target or "") for e in session.scalars(select(AuditEntry))]


def test_refusal_kept_when_the_audit_write_fails(tmp_path: Path) -> None:
    """Fault tried: the audit table is gone (a database fault) when the watch reads a denial from
    the broker's log. The log position has moved on, so the refusal must be held and written on a
    later look once the database is back, not lost."""
    app = create_app(FleetConfig(database=DatabaseConfig(url=f"sqlite:///{tmp_path}/f.db"),
                                 ingest=IngestConfig(enabled=False)))
    state = fleet_state(app)
    migrate(state.engine)
    log_file = tmp_path / "mosquitto.log"
    log_file.write_text("1764071999: mosquitto version 2.0.11 running\n")
    audit = BrokerLogAudit(log_file, state.sessions, 0.02, clock=state.now)
    watch = audit.watch
    with state.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    with log_file.open("a") as f:
        f.write(DENIED)

    async def scenario() -> list[tuple[str, str, str]]:
        audit.start()
        try:
            await asyncio.sleep(0.2)  # several looks fail: no table
            assert watch.offset == log_file.stat().st_size  # the line was read ...
            with state.engine.begin() as conn:
                conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
            for _ in range(200):
                await asyncio.sleep(0.02)
                if found := _entries(state):
                    return found
            return []
        finally:
            await audit.stop()

    found = asyncio.run(scenario())
    assert found == [("kiosk-a", "broker.publish_denied", "sohoa/v1/kiosk-b/status")]  # ... and kept
    state.engine.dispose()
