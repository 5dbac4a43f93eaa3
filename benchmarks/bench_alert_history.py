"""The alert pass over a fleet with a long event history: events are kept (retention thins
telemetry, not events), and a national fleet stores hundreds of millions of page events a year.
Every pass (every 30 s) looks for the last day's scanner faults by event type and time: this
measures that look and the whole pass with the (type, ts) index and, on the same database after
dropping it, without (as before migration 0021), side by side.

    nice -n 19 python -m benchmarks.bench_alert_history --devices 10000 --events 3000000
    nice -n 19 python -m benchmarks.bench_alert_history --database postgresql --events 3000000

Data (synthetic): ``--devices`` devices, all heard in the last minutes (no offline alerts: the
pass reads every device and writes nothing, the steady case), ``--events`` events spread over the
last 90 days, one in a thousand a scanner fault, the rest pages captured.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.fleetdata import database
from benchmarks.harness import load, machine, measure
from fleet.alerts import conditions
from fleet.alerts.config import AlertsConfig
from fleet.alerts.evaluator import AlertEvaluator
from fleet.db import bulk_insert, make_engine, migrate, session_factory
from fleet.models import Device, Event

NOW = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
"""11:00 in Vietnam: office hours, every device heard minutes ago."""


def fill(url: str, devices: int, events: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    engine = make_engine(url)
    migrate(engine)
    ids = [f"kiosk-{i:05d}" for i in range(devices)]
    device_rows = [{"id": d, "unit_code": None, "first_seen": NOW - timedelta(days=365),
                    "last_seen": NOW - timedelta(seconds=rng.randint(0, 120)), "status": "online",
                    "status_at": NOW - timedelta(days=1), "agent_version": "0.1.0", "scanner_state": "ready",
                    "scanner_model": "SANE test", "outbox_events": 0, "outbox_files": 0, "outbox_bytes": 0,
                    "accepting_scans": True, "last_telemetry_at": NOW - timedelta(seconds=30),
                    "last_telemetry": {"disk_free_bytes": 20 * 10**9, "disk_total_bytes": 32 * 10**9,
                                       "outbox": {"events": 0, "files": 0, "bytes": 0}}} for d in ids]
    span = 90 * 86400
    with engine.begin() as conn:
        bulk_insert(conn, Device.__table__, device_rows)
        rows: list[dict[str, Any]] = []
        for n in range(events):
            fault = rng.random() < 0.001
            ts = NOW - timedelta(seconds=rng.uniform(0, span))
            rows.append({"id": f"e{n:010d}", "device_id": ids[rng.randrange(devices)],
                         "type": "scanner_jammed" if fault else "page_captured",
                         "severity": "warning" if fault else "info", "ts": ts, "received_at": ts, "payload": {}})
            if len(rows) == 20000:
                bulk_insert(conn, Event.__table__, rows)
                rows = []
        bulk_insert(conn, Event.__table__, rows)
    if engine.dialect.name == "postgresql":  # as autovacuum would have; the fleet never runs ANALYZE on SQLite
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    engine.dispose()


def _plan(url: str) -> str:
    """How the database reads the faults look (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN)."""
    engine = make_engine(url)
    query = conditions.faults_query(NOW).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(explain + str(query))).fetchall()
    finally:
        engine.dispose()
    return "; ".join(str(row[-1]) for row in rows)


def _measure(url: str, repeat: int) -> tuple[float, float]:
    """(median ms of the faults look, median ms of a whole steady pass)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    evaluator = AlertEvaluator(AlertsConfig(), sessions, clock=lambda: NOW, heartbeat_timeout_s=180.0)
    try:
        evaluator.run_once()  # opens what there is to open; the passes measured are steady

        def faults() -> None:
            with sessions() as session:
                conditions.latest_faults(session, NOW)

        look = measure(faults, repeat=repeat, warmup=1).median_ms
        whole = measure(evaluator.run_once, repeat=repeat, warmup=1).median_ms
    finally:
        evaluator.close()
        engine.dispose()
    return look, whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{machine()}\n{load()} at start")
    with tempfile.TemporaryDirectory(prefix="sohoa-alert-history-") as tmp, \
            database(args.database, Path(tmp)) as url:
        began = time.monotonic()
        fill(url, args.devices, args.events)
        print(f"{args.database}: {args.devices} devices, {args.events} events over 90 days, filled in "
              f"{time.monotonic() - began:.0f} s")
        after, plan_after = _measure(url, args.repeat), _plan(url)
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_events_type_ts"))
        engine.dispose()
        before, plan_before = _measure(url, args.repeat), _plan(url)
        print(f"plan without the index: {plan_before}\nplan with it: {plan_after}")
        print(f"\n| {args.database}, median of {args.repeat} | without (type, ts) (before 0021) | with it |")
        print("|---|---|---|")
        print(f"| the last day's scanner faults (`latest_faults`) | {before[0]:.1f} ms | {after[0]:.1f} ms |")
        print(f"| a whole steady alert pass ({args.devices} devices) | {before[1]:.1f} ms | {after[1]:.1f} ms |")
    print(f"\n{load()} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
