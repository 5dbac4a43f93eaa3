"""Progress dashboard and periodic report with 3,000 units and 10,000 devices: how long the
progress API and the report take, on SQLite and PostgreSQL.

The data set is synthetic (generated codes, not official ones): 34 provinces with about 88
communes each (the two-tier shape since 1/7/2025), devices spread over the communes, pages over
three months (each dossier 2-3 pages, some rejected or dropped), a telemetry report per device
every 6 hours in the last month, dossiers received for every unit and month.
"""

import argparse
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from benchmarks.harness import machine, measure
from fleet.api.app import create_app
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from fleet.db import bulk_insert_ignore, make_engine, migrate
from fleet.models import Device, Page, TelemetrySample
from fleet.progress.models import Received, Unit
from tests.authn import login
from tests.services import Postgres

MONTHS = ("2026-01", "2026-02", "2026-03")
NOW = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)


def _fill(url: str, units: int, devices: int, pages: int, seed: int = 7) -> tuple[str, int]:
    """Fill an empty database; returns a province code and the number of rows written."""
    rng = random.Random(seed)
    engine = make_engine(url)
    migrate(engine)
    provinces = [f"{10 + i:02d}" for i in range(34)]
    per = max(1, (units - len(provinces)) // len(provinces))
    unit_rows = [{"code": p, "valid_from": date(2025, 7, 1), "valid_to": None, "name": f"Tỉnh tổng hợp {p}",
                  "tier": "province", "parent_code": None} for p in provinces]
    communes = [f"{p}{j:03d}" for p in provinces for j in range(per)]
    unit_rows += [{"code": c, "valid_from": date(2025, 7, 1), "valid_to": None, "name": f"Xã tổng hợp {c}",
                   "tier": "commune", "parent_code": c[:2]} for c in communes]
    stamp = datetime(2026, 4, 1, tzinfo=UTC)
    received = [{"unit_code": u["code"], "period": m, "count": rng.randint(20, 400), "updated_at": stamp}
                for u in unit_rows for m in MONTHS]
    enrolled = datetime(2026, 1, 1, tzinfo=UTC)
    device_rows = [{"id": f"kiosk-{i:05d}", "unit_code": rng.choice(communes), "first_seen": enrolled,
                    "last_seen": NOW - timedelta(seconds=rng.randint(0, 7200)), "status": "online",
                    "agent_version": "0.1.0"} for i in range(devices)]
    page_rows: list[dict[str, Any]] = []
    start = datetime(2025, 12, 31, 17, tzinfo=UTC)
    span = (NOW - start).total_seconds()
    n = 0
    while len(page_rows) < pages:
        device = device_rows[rng.randrange(devices)]["id"]
        when = start + timedelta(seconds=rng.uniform(0, span))
        dossier = f"000.00.00.H99-{n:08d}"
        n += 1
        for k in range(rng.randint(2, 3)):
            verdict = {"ok": rng.random() > 0.1, "issues": []}
            page_rows.append({"page_id": f"p{len(page_rows):09d}", "device_id": device, "event_id": "e",
                              "batch_id": "b",
                              "sequence": k + 1, "side": "front", "dossier_code": dossier, "sha256": "0" * 64,
                              "size": 1, "content_type": "image/png", "width": 1, "height": 1, "dpi": 200,
                              "source": "scanner", "doctype": None, "confidence": None, "quality": verdict,
                              "dropped": rng.random() < 0.05, "captured_at": when + timedelta(seconds=k),
                              "received_at": when + timedelta(seconds=k + 5)})
    telemetry = [{"id": f"t-{d['id']}-{h}", "device_id": d["id"],
                  "ts": NOW - timedelta(hours=6 * h, minutes=rng.randint(0, 59)), "data": {}}
                 for d in device_rows for h in range(0, 120)]
    with engine.begin() as conn:
        for table, rows in ((Unit.__table__, unit_rows), (Received.__table__, received),
                            (Device.__table__, device_rows), (Page.__table__, page_rows),
                            (TelemetrySample.__table__, telemetry)):
            for i in range(0, len(rows), 20000):
                bulk_insert_ignore(conn, table, rows[i:i + 20000])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return provinces[0], len(unit_rows) + len(device_rows) + len(page_rows) + len(telemetry)


@contextmanager
def _database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench.db"
        return
    pg = Postgres(workdir / "pg")
    pg.start()
    try:
        yield pg.url
    finally:
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_progress", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--pages", type=int, default=300000, help="pages over the three months")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(f"Machine: {machine()}\n")
    print(f"{args.units} units, {args.devices} devices, {args.pages} pages over {MONTHS[0]}..{MONTHS[-1]}, "
          f"{args.devices * 120} telemetry reports; through the API (TestClient), median of {args.repeat}.\n")
    print("| database | request | time |")
    print("|---|---|---|")
    status = 0
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-") as tmp:
        for kind in kinds:
            with _database(kind, Path(tmp)) as url:
                province, _ = _fill(url, args.units, args.devices, args.pages)
                config = FleetConfig(database=DatabaseConfig(url=url), ingest=IngestConfig(enabled=False),
                                     storage=StorageConfig(dir=Path(tmp) / "files"))
                with TestClient(create_app(config, clock=lambda: NOW)) as client:
                    login(client)  # a province admin (the API needs a session since #6)
                    requests = [
                        ("GET /progress (the page)", "/progress"),
                        ("GET /api/v1/progress, every unit, one month", "/api/v1/progress?from=2026-03"),
                        ("GET /api/v1/progress, every unit, three months", "/api/v1/progress?from=2026-01&to=2026-03"),
                        (f"GET /api/v1/progress, province {province}, three months",
                         f"/api/v1/progress?from=2026-01&to=2026-03&unit={province}"),
                        (f"report.xlsx, province {province}, one month",
                         f"/api/v1/progress/report.xlsx?from=2026-03&unit={province}"),
                        (f"report.pdf, province {province}, one month",
                         f"/api/v1/progress/report.pdf?from=2026-03&unit={province}"),
                    ]
                    for label, path in requests:
                        def get(path: str = path) -> None:
                            response = client.get(path)
                            if response.status_code != 200:
                                raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
                        stats = measure(get, repeat=args.repeat, warmup=1)
                        print(f"| {kind} | {label} | {stats.row()} |")
                        if stats.median_ms > 1000 and not label.startswith("report"):
                            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
