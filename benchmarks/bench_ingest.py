"""Fleet ingest: events persisted per second through a real mosquitto into the database,
beside the rate at which one plain paho subscriber receives the same messages from the same
broker in the same run. Loopback only; bounded message count.

Both clients hold persistent sessions on the broker; the benchmark publishes N
``page_captured`` events while both are away (the broker queues them for each session), then
times each client draining its queue: the plain subscriber just counts (QoS 1, acks
automatically); the fleet's ingest decodes, validates, writes events and pages in batched
transactions and acknowledges after each commit.

    python -m benchmarks.bench_ingest                      # SQLite and PostgreSQL, 20000 events, 5 runs
    python -m benchmarks.bench_ingest --db sqlite -n 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from benchmarks.fleetdata import database
from benchmarks.harness import machine
from fleet.config import BrokerConfig, DatabaseConfig, FleetConfig, IngestConfig
from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Ingest
from fleet.metrics import FleetMetrics
from fleet.models import Event
from protocol.messages import Page, PageCaptured, encode, new_id
from protocol.topics import Channel, topic
from tests.services import Mosquitto

DEVICES = 20


def _events(n: int) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        device = f"kiosk-{i % DEVICES:04d}"
        page = Page(page_id=new_id(), sha256=f"{i:064x}", size=250_000, content_type="image/png", width=2480,
                    height=3508, dpi=300, source="scanner", batch_id=f"batch-{i // 50}", sequence=i % 50 + 1,
                    dossier_code=f"000.00.00.H13-260101-{i // 10:04d}", captured_at=now)
        out.append((topic(device, Channel.EVENT), encode(PageCaptured(device_id=device, page=page))))
    return out


def _client(client_id: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    return client


def _forget_session(client_id: str, port: int) -> None:
    """End a persistent session, so the broker stops queueing for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.disconnect()


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{new_id()[:8]}", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def _raw_subscriber(client_id: str, port: int, expected: int | None) -> tuple[float, float]:
    """Subscribe (``expected`` None: just create the session) or drain ``expected`` messages;
    returns (seconds from connect to the last message, process CPU seconds meanwhile)."""
    client = _client(client_id, port)
    done = threading.Event()
    received = 0
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, _m: object) -> None:
        nonlocal received
        received += 1
        if expected is not None and received >= expected:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    start, cpu = time.perf_counter(), time.process_time()
    client.loop_start()
    if expected is None:
        client.subscribe("sohoa/v1/+/event", qos=1)
        subscribed.wait(10)
    elif not done.wait(300):
        raise TimeoutError(f"raw subscriber got {received} of {expected}")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return elapsed, cpu


def _worker(config: FleetConfig, ready: Any, go: Any, stop: Any) -> None:
    """One ingest worker process (forked): connects when told, runs until told to stop."""
    engine = make_engine(config.database.url)
    ingest = Ingest(config, session_factory(engine), FleetMetrics())
    ready.release()
    go.wait()
    ingest.start()
    stop.wait()
    ingest.stop()
    engine.dispose()


def _count(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Event)) or 0)


@dataclass(frozen=True)
class Run:
    raw_per_s: float
    ingest_per_s: float
    raw_cpu_us: float
    ingest_cpu_us: float | None  # per message; None when the workers are other processes


def _ingest_rate(url: str, port: int, messages: list[tuple[str, bytes]], run: str, workers: int) -> Run:
    """Rates and CPU cost of one run with ``workers`` ingest workers."""
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    # Several workers share a subscription group, one of its own per run: an earlier run's
    # offline sessions would otherwise take their share.
    configs = [
        FleetConfig(database=DatabaseConfig(url=url, migrate_on_start=False),
                    broker=BrokerConfig(port=port, client_id=f"{run}-w{k}", group=run if workers > 1 else None),
                    ingest=IngestConfig())
        for k in range(workers)
    ]
    for config in configs:  # first connection: the persistent session and its subscriptions
        ingest = Ingest(config, sessions, FleetMetrics())
        ingest.start()
        if not ingest.wait_connected(10):
            raise TimeoutError("ingest did not connect")
        ingest.stop()
    raw_id = f"{run}-raw"
    _raw_subscriber(raw_id, port, None)
    before = _count(sessions)
    _publish(port, messages)
    raw_s, raw_cpu = _raw_subscriber(raw_id, port, len(messages))

    ingest_cpu: float | None = None
    if workers == 1:
        cpu = time.process_time()
        ingest_s = _drain_in_process(configs[0], sessions, len(messages))
        ingest_cpu = time.process_time() - cpu
    else:
        ingest_s = _drain_in_processes(configs, sessions, before, len(messages))
    after = _count(sessions)
    engine.dispose()
    if after - before != len(messages):
        raise AssertionError(f"{after - before} events in the database, {len(messages)} published")
    for client_id in [c.broker.client_id for c in configs] + [raw_id]:
        _forget_session(client_id, port)
    n = len(messages)
    return Run(n / raw_s, n / ingest_s, raw_cpu / n * 1e6, None if ingest_cpu is None else ingest_cpu / n * 1e6)


def _drain_in_process(config: FleetConfig, sessions: Any, expected: int) -> float:
    """Seconds for one in-process worker to store ``expected`` events; the stopwatch stops on
    the worker's own progress signal (no polling)."""
    metrics = FleetMetrics()
    ingest = Ingest(config, sessions, metrics)

    def stored() -> float:
        return metrics.registry.get_sample_value("sohoa_fleet_messages_ingested_total", {"channel": "event"}) or 0.0

    start = time.perf_counter()
    ingest.start()
    if not ingest.wait_for(lambda: stored() >= expected, 300):
        raise TimeoutError(f"ingest stored {stored()} of {expected}")
    elapsed = time.perf_counter() - start
    ingest.stop()
    return elapsed


def _drain_in_processes(configs: list[FleetConfig], sessions: Any, before: int, expected: int) -> float:
    """Seconds for forked worker processes (one per config) to store ``expected`` events."""
    ctx = multiprocessing.get_context("fork")
    ready, go, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(c, ready, go, stop), daemon=True) for c in configs]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=60):
            raise TimeoutError("ingest worker did not start")
    start = time.perf_counter()
    go.set()
    deadline = start + 300
    # Polling the count (20 ms) is the stopwatch here: the workers are other processes.
    while _count(sessions) - before < expected:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"ingest stored {_count(sessions) - before} of {expected}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    stop.set()
    for proc in procs:
        proc.join(30)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_ingest", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--messages", type=int, default=20000, help="events per run (bounded)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; medians are reported")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", default="1", help="ingest workers to try, e.g. 1,2 (more than one: forked "
                        "processes sharing the subscription)")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"Machine: {machine()}\n")
    print(f"{args.messages} `page_captured` events (QoS 1) from {DEVICES} devices, queued on one mosquitto for "
          f"both clients while they are away, then drained; median of {args.repeat} runs, raw and ingest "
          "alternating in each run.\n")
    print("| database | ingest workers | raw paho subscriber (msg/s) | fleet ingest, persisted (events/s) "
          "| ingest / raw | CPU per message: raw / ingest (µs) |")
    print("|---|---|---|---|---|---|")
    status = 0
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(workdir / "mosquitto")
        broker.start()
        try:
            for kind in kinds:
                with database(kind, workdir) as url:
                    for workers in worker_counts:
                        runs = [
                            _ingest_rate(url, broker.port, _events(args.messages), f"bench-{kind}-{workers}-{r}",
                                         workers)
                            for r in range(args.repeat)
                        ]
                        raw_m = statistics.median(r.raw_per_s for r in runs)
                        ing_m = statistics.median(r.ingest_per_s for r in runs)
                        ratio = statistics.median(r.ingest_per_s / r.raw_per_s for r in runs)
                        raw_cpu = statistics.median(r.raw_cpu_us for r in runs)
                        ing_cpus = [r.ingest_cpu_us for r in runs if r.ingest_cpu_us is not None]
                        ing_cpu = f"{statistics.median(ing_cpus):.0f}" if ing_cpus else "n/a"
                        print(f"| {kind} | {workers} | {raw_m:,.0f} | {ing_m:,.0f} | {ratio:.2f} "
                              f"| {raw_cpu:.0f} / {ing_cpu} |", flush=True)
                        if kind == "sqlite" and workers == worker_counts[0] and ratio < 0.5:
                            status = 1
        finally:
            broker.stop()
    print("\nGoal: ingest >= 0.5 x raw on SQLite" + (" (met)." if status == 0 else " (not met with one worker)."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
