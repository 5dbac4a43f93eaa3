"""The fleet's background services started and stopped as one (:class:`FleetServices`), outside
any app: against the suite's real broker, every configured service runs after ``start``, the
operations hook is in the ingest writer before the ingest receives anything, and ``stop``
leaves no thread behind."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from fleet.api.services import FleetServices
from fleet.metrics import FleetMetrics
from tests.fleet.conftest import make_config
from tests.services import Mosquitto

THREADS = ("fleet-operations", "fleet-ingest-writer", "alerts-evaluator", "retention")


def _running() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name in THREADS and t.is_alive()}


def test_services_start_in_order_and_stop_cleanly(tmp_path: Path, db_url: str, sessions: sessionmaker[Session],
                                                   mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, db_url, mosquitto)
    services = FleetServices()
    before = _running()

    async def scenario() -> None:
        await services.start(config, sessions, FleetMetrics(), clock=lambda: datetime.now(UTC))
        try:
            assert services.ingest is not None and services.operations is not None
            assert services.operations.hook in services.ingest.writer.hooks
            assert services.ingest.wait_connected(10), "ingest did not connect"
            assert services.alerts is not None and services.retention is not None
            assert services.enroll is None and services.crl_refresh is None  # no pki.ca_dir
            assert services.broker_log is None  # no pki.broker_log_file
            assert set(THREADS) <= _running()
        finally:
            await services.stop()

    asyncio.run(scenario())
    assert (services.ingest, services.operations, services.alerts, services.retention) == (None, None, None, None)
    assert _running() <= before, "a service thread outlived stop()"
    asyncio.run(services.stop())  # a second stop is harmless


def test_without_ingest_operations_do_not_run(tmp_path: Path, db_url: str, sessions: sessionmaker[Session]) -> None:
    """No ingest, no acknowledgement could come back: the operations object is there for the
    routes to wake, but its thread and MQTT client do not run."""
    config = make_config(tmp_path, db_url)  # ingest disabled
    services = FleetServices()

    async def scenario() -> None:
        await services.start(config, sessions, FleetMetrics(), clock=lambda: datetime.now(UTC))
        try:
            assert services.ingest is None and services.operations is not None
            assert "fleet-operations" not in _running()
            services.wake_operations()  # harmless
        finally:
            await services.stop()

    asyncio.run(scenario())
