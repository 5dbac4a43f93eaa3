"""Progress dashboard and periodic report with 3,000 units and 10,000 devices: how long the
progress API and the report take, on SQLite and PostgreSQL. The data set is
:func:`benchmarks.fleetdata.fill`'s (synthetic codes); the pages in Chromium, the chart series
and the alerts are measured by ``bench_fleet_screen``.
"""

import argparse
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks.fleetdata import MONTHS, NOW, database, fill
from benchmarks.harness import machine, measure
from fleet.api.app import create_app
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from tests.authn import login


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
            with database(kind, Path(tmp)) as url:
                province = fill(url, args.units, args.devices, args.pages).province
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
