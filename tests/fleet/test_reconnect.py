"""The fleet's own MQTT clients (the ingest worker, the operations publisher) reconnect on the same
jittered, capped schedule as the kiosks (:mod:`protocol.reconnect`), against a real mosquitto
killed with SIGKILL and restarted on the same port: the delays paho waited are exactly the seeded
schedule's (the first drawn from the spread window, the next under the doubling cap), the time
each client took to come back covers them, the two clients drew different delays, and the ingest
stores an event published once the broker is back."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import BrokerConfig, DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Ingest
from fleet.metrics import FleetMetrics
from fleet.models import Event
from fleet.operations.service import Operations
from protocol.messages import encode
from protocol.reconnect import PahoReconnects, ReconnectSchedule
from tests.device.agent_harness import wait_until
from tests.fleet.messages import fault
from tests.fleet.test_ingest import mosquitto_pub
from tests.services import Mosquitto

TIMEOUT = 20.0
MIN_S, MAX_S, SPREAD_S = 0.2, 1.0, 1.0
FAILURES = 4
"""Failed attempts each client makes while the broker is down, before it is started again."""


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    tmp = tmp_path_factory.mktemp("fleet-reconnect")
    engine = make_engine(f"sqlite:///{tmp}/fleet.db")
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _replay(seed: int, draws: int) -> list[float]:
    """What the schedule draws with ``seed``: one delay after the loss, then one per failure."""
    schedule = ReconnectSchedule(first_s=MIN_S, cap_s=MAX_S, spread_s=SPREAD_S, rng=random.Random(seed))
    return [schedule.after_loss(), *(schedule.after_failure() for _ in range(draws - 1))]


def _timed(reconnects: PahoReconnects) -> list[float]:
    """When each delay was set (the moment paho starts waiting it): instruments the object."""
    times: list[float] = []
    original = reconnects.next_attempt_in

    def recording(delay: float) -> None:
        times.append(time.monotonic())
        original(delay)

    reconnects.next_attempt_in = recording  # type: ignore[method-assign]
    return times


def test_the_fleets_clients_come_back_after_a_broker_kill_on_the_jittered_schedule(
        tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    config = FleetConfig(
        database=DatabaseConfig(url="sqlite://"),
        storage=StorageConfig(dir=tmp_path / "files"),
        broker=BrokerConfig(port=broker.port, client_id="fleet-reconnect-ingest", reconnect_min_s=MIN_S,
                            reconnect_max_s=MAX_S, reconnect_spread_s=SPREAD_S),
        ingest=IngestConfig(),
    )
    ingest = Ingest(config, sessions, FleetMetrics(), rng=random.Random(1))
    ops = Operations(config, sessions, rng=random.Random(2))
    try:
        ingest.start()
        ops.start()
        assert ingest.wait_connected(TIMEOUT) and ops.connected.wait(TIMEOUT)
        assert ingest.reconnects is not None
        clients = {"ingest": ingest.reconnects, "operations": ops.reconnects}
        drawn_at = {name: _timed(reconnects) for name, reconnects in clients.items()}

        broker.kill()
        killed = time.monotonic()
        wait_until(lambda: not ingest.connected and not ops.connected.is_set(), TIMEOUT, "both clients to see the loss")
        wait_until(lambda: all(len(r.delays) >= 1 + FAILURES for r in clients.values()), TIMEOUT,
                   f"{FAILURES} failed attempts from each client while the broker is down")
        broker.start()
        assert ingest.wait_connected(TIMEOUT), "the ingest did not come back after the broker's restart"
        assert ops.connected.wait(TIMEOUT), "the operations publisher did not come back"
        back = time.monotonic() - killed

        for (name, reconnects), seed in zip(clients.items(), (1, 2), strict=True):
            delays = list(reconnects.delays)
            assert delays == _replay(seed, len(delays)), f"{name}: the delays are not the seeded schedule's"
            assert 0 <= delays[0] <= SPREAD_S
            for failure, delay in enumerate(delays[1:]):
                assert 0 <= delay <= min(MAX_S, MIN_S * 2**failure), (name, failure, delay)
            # paho waited each delay before the next attempt (its own back-off starts at 1 s and
            # doubles: 1 + 2 + 4 + ... would not fit the schedule's sum either way).
            assert back >= sum(delays) - 0.05, (name, back, delays)
            # Each failed attempt came after the delay drawn before it, not after paho's own
            # (it would wait at least reconnect_min rounded to 1 s, then double).
            gaps = [b - a for a, b in zip(drawn_at[name], drawn_at[name][1:], strict=False)]
            for delay, gap in zip(delays, gaps, strict=False):
                assert gap >= delay - 0.01, (name, delay, gap)
            assert sum(gaps) <= sum(delays[:len(gaps)]) + 0.3 * len(gaps), (name, delays, gaps)
        assert ingest.reconnects.delays[0] != ops.reconnects.delays[0], "the two clients knock together"

        event = fault("kiosk-reconnect")
        mosquitto_pub(broker, f"sohoa/v1/{event.device_id}/event", message=encode(event).decode())
        with sessions() as session:
            assert ingest.wait_for(lambda: session.get(Event, event.id) is not None, TIMEOUT), \
                "an event published after the restart was not stored"
    finally:
        ops.stop()
        ingest.stop()
        broker.stop()
