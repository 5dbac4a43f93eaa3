"""Signed documents delivered per second to the reference receiver over loopback, and the time to
drain a backlog of 10,000 documents.

The fleet side is the real delivery worker (:class:`fleet.delivery.worker.DeliveryWorker`) on a
SQLite database and file store in a temporary folder (fsync on, as shipped); the receiver is the
reference receiver (``python -m fleet.handoff_receiver``, fsync on) in its own process, no fault,
plain HTTP on 127.0.0.1. Documents are signed copies of ``--size`` bytes, two per dossier (one
manifest per dossier). Throughput: ``--docs`` documents, median of ``--rounds`` runs (a fresh
database and receiver each). Drain: one backlog of ``--backlog`` documents, enqueued and sent
until every one is acknowledged.

    python -m benchmarks.bench_delivery [--docs 400] [--rounds 3] [--backlog 10000] [--size 65536]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import machine
from fleet.db import make_engine, migrate, session_factory
from fleet.delivery.config import DeliveryConfig, HttpTarget
from fleet.delivery.worker import DeliveryWorker
from fleet.storage import FileStore
from tests.fleet.delivery.conftest import add_documents
from tests.services import free_port, wait_port


def _run(folder: Path, documents: int, size: int, batch: int) -> tuple[float, int]:
    """Seconds to deliver ``documents`` (enqueue to last acknowledgement) and how many were acknowledged."""
    engine = make_engine(f"sqlite:///{folder}/fleet.db")
    migrate(engine)
    sessions = session_factory(engine)
    # Filling the store is setup, not measured: no fsync there; the worker only reads it.
    add_documents(sessions, FileStore(folder / "files", fsync=False), documents // 2, per_dossier=2, size=size)
    store = FileStore(folder / "files")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "fleet.handoff_receiver", "--dir", str(folder / "received"),
                                 "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        config = DeliveryConfig(targets=[HttpTarget(name="motcua", url=f"http://127.0.0.1:{port}", timeout_s=30)],
                                batch_size=batch)
        with DeliveryWorker(config, sessions, store) as worker:
            start = time.perf_counter()
            drained = worker.drain(3600)
            seconds = time.perf_counter() - start
        from sqlalchemy import func, select

        from fleet.delivery.models import Delivery

        with sessions() as session:
            acknowledged = int(session.scalar(select(func.count()).where(Delivery.state == "acknowledged")) or 0)
        if not drained:
            print(f"  not drained after {seconds:.0f} s", flush=True)
    finally:
        receiver.terminate()
        receiver.wait(30)
        engine.dispose()
    return seconds, acknowledged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_delivery")
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per signed document")
    parser.add_argument("--batch", type=int, default=200, help="delivery.batch_size")
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}")
    print(f"Load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shares the machine)")
    rates = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
            seconds, acknowledged = _run(Path(tmp), args.docs, args.size, args.batch)
        rates.append(acknowledged / seconds)
        print(f"  round {n + 1}: {acknowledged} documents acknowledged in {seconds:.2f} s = "
              f"{acknowledged / seconds:.1f} documents/s", flush=True)
    print(f"| documents of {args.size // 1024} KiB delivered and acknowledged per second (median of {args.rounds}) "
          f"| {statistics.median(rates):.1f} |")
    if args.backlog:
        with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
            seconds, acknowledged = _run(Path(tmp), args.backlog, args.size, args.batch)
        print(f"| backlog of {args.backlog} documents drained | {seconds:.0f} s ({acknowledged} acknowledged, "
              f"{acknowledged / seconds:.1f} documents/s) |")
    print(f"Load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
