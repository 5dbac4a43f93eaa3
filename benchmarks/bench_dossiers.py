"""Dossiers received matched with digitized ones for one year of a province: the received list's
import, the ingest's per-batch reconciliation, a full recount, and the progress figures and
chase list through the API, on PostgreSQL (or SQLite).

The data set is synthetic (generated codes): one province with ``--units`` units under it (a few
province-level agencies, the rest communes), ``--received`` dossiers received over the twelve
months 2025-04..2026-03, about 60% of them digitized (one accepted page each; one in eight also
a result page ``<code>-KQ1``), plus 0.5% of digitized dossiers under mistyped codes that match
nothing. Goals: the progress page's query under 1 s, a full recount under 60 s. Each step is
given with its wall time and the CPU time it cost this process and the database server (what
the other work on a shared machine does not inflate).

With ``--former``, the progress requests are also measured the former way on the same
database, alternating with the new one: the received dossiers counted on each request
(:func:`former_cells_query`, the query the fleet ran before it read ``dossier_counts``) and every
unit's digitized dossiers grouped by month; both must answer byte for byte the same. With
``--former-writes`` (PostgreSQL), the ingest's batch and the recount likewise, with the counts'
triggers disabled and no rebuild (what they cost before the table existed).

The recount is measured three times from the same data: the fleet's (in SQL) from a registry
that knows only the received side, the former fold in Python (:func:`python_recount`, kept here
as the baseline) from that same state, and the fleet's again once nothing changed; both
recounts must leave the same rows.

    nice -n 19 python -m benchmarks.bench_dossiers --db postgresql
"""

import argparse
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, delete, func, select, update

from benchmarks.fleetdata import database
from benchmarks.harness import Stats, machine, measure
from fleet.api.app import create_app
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from fleet.db import bulk_insert, make_engine, migrate, session_factory
from fleet.display import DEFAULT_ZONE
from fleet.dossiers import codes, counts, reconcile, registry
from fleet.dossiers.models import Dossier, DossierDocument
from fleet.dossiers.received import ReceivedRow, import_received
from fleet.dossiers.recount import recount as sql_recount
from fleet.models import Device, Page
from fleet.progress import digitized, rates
from fleet.progress.models import Unit
from tests.authn import login

FIRST, LAST = "2025-04", "2026-03"
NOW = datetime(2026, 4, 15, 3, tzinfo=UTC)
START = date(2025, 4, 1)
DAYS = (date(2026, 3, 31) - START).days + 1


def _units(count: int) -> list[dict[str, Any]]:
    rows = [{"code": "99", "valid_from": date(2004, 1, 1), "valid_to": None, "name": "Tỉnh tổng hợp 99",
             "tier": "province", "parent_code": None}]
    rows += [{"code": f"000.00.{j:02d}.H99", "valid_from": date(2004, 1, 1), "valid_to": None,
              "name": f"Sở tổng hợp {j}", "tier": "agency", "parent_code": "99"} for j in range(1, 21)]
    rows += [{"code": f"9{j:04d}", "valid_from": date(2004, 1, 1), "valid_to": None, "name": f"Xã tổng hợp {j}",
              "tier": "commune", "parent_code": "99"} for j in range(count - len(rows))]
    return rows


def cpu_seconds(datadir: Path | None = None) -> float:
    """CPU time (user + system) spent so far by this process and, given a PostgreSQL data
    directory, by that server (the postmaster, its live processes and those it reaped): what a
    step costs whatever else the machine runs, where wall time on a shared machine says little."""
    total = time.process_time()
    pid_file = datadir / "postmaster.pid" if datadir is not None else None
    if pid_file is None or not pid_file.is_file():
        return total
    master = int(pid_file.read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == master:
            total += sum(int(f) for f in fields[11:15]) / tick  # its own and its reaped children's
        elif ppid == master:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _timed(label: str, fn: Callable[[], object], datadir: Path | None = None) -> float:
    cpu = cpu_seconds(datadir)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    used = cpu_seconds(datadir) - cpu
    print(f"| {label} | {seconds:.1f} s | {used:.1f} s | {_load()} |", flush=True)
    return seconds


def python_recount(connection: Connection) -> None:
    """The recount as the fleet did it before it moved into SQL: every page read into Python,
    folded in memory, the registry cleared and upserted 20,000 dossiers per statement."""
    news: dict[str, registry._News] = {}
    columns = (Page.device_id, Page.unit_code, Page.dossier_code, Page.dropped, Page.quality, Page.captured_at)
    keys = ("device_id", "unit_code", "dossier_code", "dropped", "quality", "captured_at")
    for values in connection.execute(select(*columns).where(Page.dossier_code.is_not(None))):
        row = dict(zip(keys, values, strict=True))
        if digitized.accepted(row):
            named = codes.page_code(row["dossier_code"])
            item = news.get(named.code) or news.setdefault(named.code, registry._News(named.code))
            item.saw(named.kind, row["captured_at"], row["unit_code"], row["device_id"])
    for code, kind, closed_at, unit, device, operator_kind, operator_id in connection.execute(select(
            DossierDocument.dossier_code, DossierDocument.kind, DossierDocument.closed_at, DossierDocument.unit_code,
            DossierDocument.device_id, DossierDocument.operator_kind, DossierDocument.operator_id)):
        item = news.get(code) or news.setdefault(code, registry._News(code))
        item.saw("result" if kind == "result" else "component", closed_at, unit, device, (operator_kind, operator_id))
    connection.execute(update(Dossier).values(component_at=None, result_at=None, digitized_unit=None,
                                              device_id=None))
    ordered = sorted(news)
    for start in range(0, len(ordered), 20_000):
        registry._upsert(connection, {c: news[c] for c in ordered[start:start + 20_000]})


def former_cells_query(start: str, end: str) -> Any:
    """The received dossiers per unit and month as the fleet counted them before it kept
    ``dossier_counts``: every dossier of the months, on every request (the baseline)."""
    t = Dossier.__table__.c
    return (select(t.received_unit.label("unit"), t.received_period.label("month"), func.count().label("received"),
                   func.count(t.component_at).label("digitized"), func.count(t.result_at).label("results"))
            .where(t.received_period >= start, t.received_period <= end)
            .group_by(t.received_unit, t.received_period))


@contextmanager
def former_reads() -> Iterator[None]:
    """The progress figures count the dossiers again and group every unit's digitized dossiers,
    as before (for the side by side)."""
    kept, digitized_query = reconcile.cells_query, rates.digitized_counts_query

    def every_digitized(dialect: str, start: str, end: str, zone_name: str = DEFAULT_ZONE, skip: Any = None) -> Any:
        return digitized_query(dialect, start, end, zone_name)  # before: all units' digitized dossiers

    reconcile.cells_query = former_cells_query
    rates.digitized_counts_query = every_digitized
    try:
        yield
    finally:
        reconcile.cells_query, rates.digitized_counts_query = kept, digitized_query


@contextmanager
def former_writes(engine: Engine) -> Iterator[None]:
    """PostgreSQL only: the counts' triggers disabled and the recount's rebuild skipped, as the
    writers were before the table; afterwards the triggers are back and the table rebuilt."""
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE dossiers DISABLE TRIGGER USER")
    rebuild = counts.rebuild
    counts.rebuild = lambda connection: None
    try:
        yield
    finally:
        counts.rebuild = rebuild
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE dossiers ENABLE TRIGGER USER")
            counts.rebuild(conn)


def side_by_side(label: str, new: Callable[[], object], former: Callable[[], object], repeat: int,
                 datadir: Path | None, former_context: Callable[[], Any]) -> tuple[Stats, Stats]:
    """``new`` and ``former`` alternately (one warm-up each, then ``repeat`` rounds), printed
    as two rows of the table: median wall time and CPU per call."""
    samples: dict[str, list[float]] = {"new": [], "former": []}
    cpu: dict[str, float] = {"new": 0.0, "former": 0.0}
    for round_ in range(repeat + 1):
        for which, fn in (("new", new), ("former", former)):
            with former_context() if which == "former" else _nothing():
                before_cpu = cpu_seconds(datadir)
                start = time.perf_counter()
                fn()
                seconds = time.perf_counter() - start
                used = cpu_seconds(datadir) - before_cpu
            if round_:  # the first round warms up
                samples[which].append(seconds * 1000)
                cpu[which] += used
    stats = {w: Stats(samples[w]) for w in samples}
    for which in ("former", "new"):
        print(f"| {label}, {which} | {stats[which].row()} | {cpu[which] / repeat:.2f} s per call | {_load()} |",
              flush=True)
    return stats["new"], stats["former"]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _fingerprint(engine: Engine) -> str:
    """A digest of every dossier's digitized side, to show two recounts agree."""
    t = Dossier.__table__.c
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for row in conn.execute(select(t.code, t.component_at, t.result_at, t.digitized_unit, t.device_id)
                                .order_by(t.code)):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]


def _forget_digitized(engine: Engine) -> None:
    """Back to a registry that knows only the received side (not measured)."""
    with engine.begin() as conn:
        conn.execute(delete(Dossier).where(Dossier.received_on.is_(None)))
        conn.execute(update(Dossier).values(component_at=None, result_at=None, digitized_unit=None, device_id=None))
    _analyze(engine)


def _analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dossiers", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--received", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--bulk-received", action="store_true",
                        help="load the received list with one bulk insert instead of measuring its import")
    parser.add_argument("--skip-python-recount", action="store_true", help="do not measure the former recount")
    parser.add_argument("--former", action="store_true",
                        help="also measure, alternating on the same database, the progress requests counting the "
                             "dossiers on each request")
    parser.add_argument("--former-writes", action="store_true",
                        help="PostgreSQL: also measure, alternating, the ingest's batch and the recount without "
                             "the counts' triggers and rebuild")
    args = parser.parse_args(argv)
    rng = random.Random(13)
    print(f"Machine: {machine()}\n")
    print(f"{args.units} units, {args.received:,} dossiers received over {FIRST}..{LAST}, on {args.db}.\n")
    status = 0
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-") as tmp, database(args.db, Path(tmp)) as url:
        engine = make_engine(url)
        migrate(engine)
        units = _units(args.units)
        communes = [u["code"] for u in units if u["tier"] != "province"]
        devices = [{"id": f"kiosk-{c}", "unit_code": c, "first_seen": NOW, "last_seen": NOW, "status": "offline"}
                   for c in communes]
        with engine.begin() as conn:
            bulk_insert(conn, Unit.__table__, units)
            bulk_insert(conn, Device.__table__, devices)
        rows: list[ReceivedRow] = []
        pages: list[dict[str, Any]] = []
        for i in range(args.received):
            unit = communes[i % len(communes)]
            got = START + timedelta(days=rng.randrange(DAYS))
            code = f"000.00.00.H99-{got:%y%m%d}-{i:07d}"
            rows.append(ReceivedRow(i + 2, code, f"1.{i % 500:03d}", unit, got.isoformat(),
                                    (got + timedelta(days=15)).isoformat()))
            if rng.random() < 0.6:
                when = datetime.combine(got, datetime.min.time(), UTC) + timedelta(days=rng.randrange(20), hours=2)
                typo = rng.random() < 0.005
                pages.append(_page(len(pages), unit, code.replace("H99", "H9G") if typo else code, when))
                if rng.random() < 0.125:
                    pages.append(_page(len(pages), unit, f"{code}-KQ1", when + timedelta(days=10)))

        datadir = None
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                datadir = Path(str(conn.exec_driver_sql("SHOW data_directory").scalar()))
        print("| step | wall time | CPU time (this process and the database server) | "
              "load average (1 / 5 / 15 min) at its end |")
        print("|---|---|---|---|")
        sessions = session_factory(engine)

        def load() -> None:
            with sessions() as session:
                result = import_received(session, rows, now=NOW)
            assert result.inserted == args.received, result

        if args.bulk_received:
            _bulk_received(engine, rows)
        else:
            _timed(f"import of the received list ({args.received:,} rows, validated, one transaction)", load)
        with engine.begin() as conn:
            for start in range(0, len(pages), 20000):
                bulk_insert(conn, Page.__table__, pages[start:start + 20000])
        _analyze(engine)

        def recount() -> None:
            with engine.begin() as conn:
                sql_recount(conn, now=NOW)

        def former() -> None:
            with engine.begin() as conn:
                python_recount(conn)

        seconds = _timed(f"full recount from {len(pages):,} pages, in SQL (the fleet's)", recount, datadir)
        if seconds > 60:
            status = 1
        done = _fingerprint(engine)
        if not args.skip_python_recount:
            _forget_digitized(engine)
            _timed(f"full recount from {len(pages):,} pages, folded in Python (the former one)", former, datadir)
            if _fingerprint(engine) != done:
                print("the two recounts disagree")
                status = 1
        _analyze(engine)
        _timed("full recount again, nothing changed, in SQL", recount, datadir)
        if _fingerprint(engine) != done:
            print("the recount changed what it had counted")
            status = 1
        batch = [{**p, "page_id": f"x{p['page_id']}"} for p in pages[:500]]

        def ingest_batch() -> None:
            with engine.begin() as conn:
                registry.record_pages(conn, batch)

        if args.former_writes and engine.dialect.name == "postgresql":
            side_by_side("the ingest's reconciliation of a batch of 500 pages", ingest_batch, ingest_batch,
                         args.repeat, datadir, lambda: former_writes(engine))
            side_by_side("full recount again, nothing changed", recount, recount, min(args.repeat, 3), datadir,
                         lambda: former_writes(engine))
        else:
            cpu = cpu_seconds(datadir)
            stats = measure(ingest_batch, repeat=args.repeat, warmup=1)
            print(f"| the ingest's reconciliation of a batch of 500 pages | {stats.row()} | "
                  f"{(cpu_seconds(datadir) - cpu) / (args.repeat + 1):.2f} s per call | {_load()} |")
        with engine.connect() as conn:
            if counts.kept(conn) != counts.fresh(conn):
                print("the kept counts differ from a fresh count")
                status = 1
        _analyze(engine)
        config = FleetConfig(database=DatabaseConfig(url=url), ingest=IngestConfig(enabled=False),
                             storage=StorageConfig(dir=Path(tmp) / "files"))
        with TestClient(create_app(config, clock=lambda: NOW)) as client:
            login(client)
            commune = communes[-1]
            requests = [
                ("GET /api/v1/progress, the province, one month", f"/api/v1/progress?from={LAST}&unit=99", True),
                ("GET /api/v1/progress, the province, the year", f"/api/v1/progress?from={FIRST}&to={LAST}&unit=99",
                 True),
                (f"GET /api/v1/dossiers/chase, commune {commune}, the year",
                 f"/api/v1/dossiers/chase?from={FIRST}&to={LAST}&unit={commune}", False),
                (f"chase.xlsx, commune {commune}, the year",
                 f"/api/v1/dossiers/chase.xlsx?from={FIRST}&to={LAST}&unit={commune}", False),
                ("GET /api/v1/dossiers?state=unmatched", "/api/v1/dossiers?state=unmatched&limit=100", False),
            ]
            for label, path, page_goal in requests:
                def get(path: str = path) -> bytes:
                    response = client.get(path)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
                    return bytes(response.content)
                if args.former and page_goal:
                    with former_reads():
                        answer = get()
                    if answer != get():
                        print(f"{path}: the former and the new answers differ")
                        status = 1
                    stats, _ = side_by_side(label, get, get, args.repeat, datadir, former_reads)
                else:
                    cpu = cpu_seconds(datadir)
                    stats = measure(get, repeat=args.repeat, warmup=1)
                    used = (cpu_seconds(datadir) - cpu) / (args.repeat + 1)
                    print(f"| {label} | {stats.row()} | {used:.2f} s per request | {_load()} |", flush=True)
                if page_goal and stats.median_ms > 1000:
                    status = 1
        engine.dispose()
    return status


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _bulk_received(engine: Engine, rows: list[ReceivedRow]) -> None:
    """The received list straight into the registry (what the import would store), unmeasured."""
    out = []
    for row in rows:
        got, due = date.fromisoformat(row.received_date), date.fromisoformat(row.due_date)
        out.append({"code": row.code, "walk_in": False, "procedure_code": row.procedure_code,
                    "received_unit": row.unit_code, "received_on": got, "received_period": f"{got:%Y-%m}",
                    "due_on": due, "updated_at": NOW})
    with engine.begin() as conn:
        for start in range(0, len(out), 20000):
            bulk_insert(conn, Dossier.__table__, out[start:start + 20000])


def _page(n: int, unit: str, code: str, when: datetime) -> dict[str, Any]:
    return {"page_id": f"p{n:09d}", "device_id": f"kiosk-{unit}", "event_id": "e", "batch_id": "b", "sequence": 1,
            "side": "front", "dossier_code": code, "sha256": "0" * 64, "size": 1, "content_type": "image/png",
            "width": 1, "height": 1, "dpi": 200, "source": "scanner", "doctype": None, "confidence": None,
            "quality": {"ok": True, "issues": []}, "dropped": False, "captured_at": when,
            "received_at": when + timedelta(seconds=5), "unit_code": unit}


if __name__ == "__main__":
    raise SystemExit(main())
