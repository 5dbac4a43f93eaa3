"""The fleet's databases for benchmarks: an empty SQLite file or a PostgreSQL server of the test
suite's kind (:func:`database`), and a synthetic province-scale data set (:func:`fill`).

The data set is synthetic (generated codes, not official ones): 34 provinces with about 88
communes each (the two-tier shape since 1/7/2025), devices spread over the communes, pages over
three months (each dossier 2-3 pages, some rejected with a reason or dropped), a telemetry
report per device every 6 hours in the last month, dossiers received for every unit and month.
Devices were last heard up to two hours before :data:`NOW`, so nearly all are offline then: the
heaviest case for the alerts and the fleet screen.

    with tempfile.TemporaryDirectory() as tmp, database("sqlite", Path(tmp)) as url:
        filled = fill(url, units=3000, devices=10000, pages=300000)
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet.db import bulk_insert, make_engine, migrate
from fleet.models import Device, Page, TelemetrySample
from fleet.progress import digitized
from fleet.progress.models import Received, Unit
from tests.services import Postgres

MONTHS = ("2026-01", "2026-02", "2026-03")
NOW = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
"""The fleet's clock in the benchmarks: 23:00 on 31 March in Vietnam."""

ISSUES = ("blurry", "too_dark", "glare", "skewed", "cut_off", "blank")


@dataclass(frozen=True)
class Filled:
    province: str
    """A province's code (for subtree requests)."""
    province_units: int
    """The province and its communes."""
    device: str
    """A device id."""
    units: int
    devices: int
    pages: int
    telemetry: int


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A URL to an empty database: ``sqlite`` (a file in ``workdir``) or ``postgresql`` (a
    server started in ``workdir``, stopped on exit)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench.db"
        return
    pg = Postgres(workdir / "pg")
    pg.start()
    try:
        yield pg.url
    finally:
        pg.stop()


def fill(url: str, units: int, devices: int, pages: int, seed: int = 7) -> Filled:
    """Migrate the empty database at ``url`` and fill it (see the module's docstring)."""
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
    device_rows: list[dict[str, Any]] = []
    for i in range(devices):
        heard = NOW - timedelta(seconds=rng.randint(0, 7200))
        device_rows.append({
            "id": f"kiosk-{i:05d}", "unit_code": rng.choice(communes), "first_seen": enrolled, "last_seen": heard,
            "status": "online", "status_at": enrolled, "agent_version": "0.1.0", "scanner_state": "ready",
            "scanner_model": "SANE test", "outbox_events": 0, "outbox_files": 0, "outbox_bytes": 0,
            "accepting_scans": True, "last_telemetry_at": heard,
            "last_telemetry": {"disk_free_bytes": rng.randint(2, 30) * 10**9, "disk_total_bytes": 32 * 10**9,
                               "camera": {"state": "ready"}, "outbox": {"events": 0, "files": 0, "bytes": 0}}})
    unit_of = {d["id"]: d["unit_code"] for d in device_rows}
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
            ok = rng.random() > 0.1
            verdict = {"ok": ok, "issues": [] if ok else rng.sample(ISSUES, rng.randint(1, 2))}
            page_rows.append({"page_id": f"p{len(page_rows):09d}", "device_id": device, "event_id": "e",
                              "batch_id": "b", "sequence": k + 1, "side": "front", "dossier_code": dossier,
                              "sha256": "0" * 64, "size": 1, "content_type": "image/png", "width": 1, "height": 1,
                              "dpi": 200, "source": "scanner", "doctype": None, "confidence": None,
                              "quality": verdict, "dropped": rng.random() < 0.05,
                              "captured_at": when + timedelta(seconds=k),
                              "received_at": when + timedelta(seconds=k + 5), "unit_code": unit_of[device]})
    telemetry = [{"id": f"t-{d['id']}-{h}", "device_id": d["id"],
                  "ts": NOW - timedelta(hours=6 * h, minutes=rng.randint(0, 59)), "data": {}}
                 for d in device_rows for h in range(0, 120)]
    with engine.begin() as conn:
        for table, rows in ((Unit.__table__, unit_rows), (Received.__table__, received),
                            (Device.__table__, device_rows), (Page.__table__, page_rows),
                            (TelemetrySample.__table__, telemetry)):
            for i in range(0, len(rows), 20000):
                bulk_insert(conn, table, rows[i:i + 20000])
        digitized.rebuild(conn)  # what the ingest keeps as pages arrive
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    province = provinces[0]
    return Filled(province=province, province_units=1 + per, device="kiosk-00042", units=len(unit_rows),
                  devices=len(device_rows), pages=len(page_rows), telemetry=len(telemetry))
