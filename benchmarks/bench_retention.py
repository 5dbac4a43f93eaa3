"""Telemetry retention at province scale: the hourly pass when 10,000 kiosks report every minute.

Each hour, one more hour of reports leaves the full-detail window: 10,000 devices x 60 reports,
of which the pass keeps the first of each device and deletes 590,000. The data set is exactly
that hour plus the next one (still in the window, untouched), with the pass's mark at the start of
the aged hour, as in steady operation; then a second pass with nothing left to do (what a pass
costs when only its per-device statements run). Each measured pass gets a freshly filled
database (a pass changes what the next would find).

    python -m benchmarks.bench_retention [--devices 10000] [--db sqlite|postgresql|both] [--repeat 3]
"""

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.fleetdata import database
from benchmarks.harness import machine
from fleet.config import RetentionConfig
from fleet.db import bulk_insert, make_engine, migrate, session_factory
from fleet.models import Device, MaintenanceMark, TelemetrySample
from fleet.retention import THINNED_MARK, run_retention
from protocol.messages import new_id

NOW = datetime(2026, 3, 20, 12, 30, tzinfo=UTC)
CONFIG = RetentionConfig(telemetry_full_days=7, telemetry_keep_days=400)


def _fill(url: str, devices: int) -> int:
    """Two hours of one report a minute per device around the full-detail cut; the mark one
    hour before the cut. Returns the rows written."""
    cut = (NOW - timedelta(days=CONFIG.telemetry_full_days)).replace(minute=0, second=0, microsecond=0)
    first = cut - timedelta(hours=1)
    engine = make_engine(url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        ids = [f"kiosk-{n:05d}" for n in range(devices)]
        rows = 0
        with sessions.begin() as session:
            bulk_insert(session.connection(), Device.__table__, [
                {"id": d, "unit_code": "99001", "first_seen": first, "last_seen": NOW, "status": "online"}
                for d in ids])
            session.add(MaintenanceMark(name=THINNED_MARK, at=first))
        for minute in range(120):
            ts = first + timedelta(minutes=minute, seconds=7)
            batch = [{"id": new_id(), "device_id": d, "ts": ts, "data": {"scanner": "ready"}} for d in ids]
            with sessions.begin() as session:
                bulk_insert(session.connection(), TelemetrySample.__table__, batch)
            rows += len(batch)
        return rows
    finally:
        engine.dispose()


def _pass(url: str) -> tuple[float, int]:
    engine = make_engine(url)
    try:
        done = run_retention(session_factory(engine), CONFIG, NOW)
        return done.seconds, done.thinned
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_retention", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(f"Machine: {machine()}\n")
    print(f"{args.devices} devices, one report a minute; median of {args.repeat} passes, each on a fresh fill.\n")
    print("| database | rows before | hourly pass (59 of each device's 60 reports in the aged hour deleted) "
          "| pass with nothing to do |")
    print("|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-") as tmp:
        for kind in kinds:
            busy, idle, deleted, rows = [], [], 0, 0
            for n in range(args.repeat):
                with database(kind, Path(tmp) / f"{kind}-{n}") as url:
                    rows = _fill(url, args.devices)
                    seconds, deleted = _pass(url)
                    busy.append(seconds)
                    idle.append(_pass(url)[0])
            busy.sort()
            idle.sort()
            print(f"| {kind} | {rows:,} | {busy[len(busy) // 2]:.1f} s ({deleted:,} deleted) "
                  f"| {idle[len(idle) // 2]:.1f} s |", flush=True)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f}; "
          f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
