"""``kill -9`` of a real delivery worker (``sohoa-fleet deliver``) in the middle of a run, then a
restart: every document ends acknowledged, filed once and acknowledged once at the receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from sqlalchemy import func, select

from fleet.db import make_engine, migrate, session_factory
from fleet.delivery.models import Delivery
from fleet.handoff_receiver.server import Faults, Receiver, ReceiverServer
from fleet.storage import FileStore
from tests.fleet.delivery.conftest import add_documents
from tests.fleet.delivery.test_faults import exactly_once

DOCUMENTS = 24


def test_kill_9_mid_delivery_then_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    engine = make_engine(db)
    migrate(engine)
    sessions = session_factory(engine)
    store = FileStore(tmp_path / "files")
    add_documents(sessions, store, DOCUMENTS // 2, per_dossier=2, size=16 * 1024)
    # Some requests are read slowly: the run lasts long enough to be cut in the middle.
    receiver = Receiver(tmp_path / "received", faults=Faults(kinds=("slow_read",), rate=0.2), fsync=False)
    with ReceiverServer(receiver) as server:
        config = tmp_path / "fleet.yaml"
        config.write_text(yaml.safe_dump({
            "database": {"url": db}, "storage": {"dir": str(tmp_path / "files"), "fsync": False},
            "delivery": {"targets": [{"type": "http", "name": "motcua", "url": server.url, "timeout_s": 10}],
                         "batch_size": 10, "lease_s": 1.0, "backoff_s": 0.05, "backoff_max_s": 0.2,
                         "interval_s": 0.2}}))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "fleet", "deliver", "--config", str(config)]
        filed_some = threading.Event()
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def watch() -> None:
                while worker.poll() is None and not filed_some.is_set():
                    if len(receiver.filed) >= DOCUMENTS // 4:
                        filed_some.set()
                    else:
                        filed_some.wait(0.01)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            assert filed_some.wait(60), "the worker filed nothing"
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        assert worker.returncode == -signal.SIGKILL
        with sessions() as session:
            left = dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
        assert left.get("acknowledged", 0) < DOCUMENTS, left  # cut in the middle
        assert len(receiver.filed) < DOCUMENTS

        restarted = subprocess.run([*command, "--drain", "--timeout", "120"], env=env, capture_output=True,
                                   text=True, timeout=180)
        assert restarted.returncode == 0, restarted.stderr[-2000:]
    exactly_once(receiver, sessions, DOCUMENTS)
    engine.dispose()
