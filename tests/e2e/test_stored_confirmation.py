"""End-to-end acknowledgement through the real mosquitto: a kiosk's delivery (its outbox, publisher
and MQTT link, as the agent wires them) against the fleet's ingest on SQLite. The broker loses
what it had acknowledged, in the two ways the broker can: killed with ``kill -9`` before its
save, and restarted while the fleet's shared subscription is offline (mosquitto forgets it).
Every event the kiosk made ends up in the database exactly once. A control sender that trusts
the broker's acknowledgement, as agents did before, shows that the broker really lost data."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from device.config import BrokerConfig as DeviceBroker
from device.delivery.link import MqttLink
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from fleet.config import BrokerConfig, DatabaseConfig, FleetConfig, IngestConfig
from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Ingest
from fleet.metrics import FleetMetrics
from fleet.models import Event
from protocol.messages import AgentStarted, encode
from tests.fleet.conftest import Publisher as PlainSender
from tests.services import Mosquitto

KIOSK = "kiosk-0001"
OLD_KIOSK = "kiosk-0002"  # trusts the broker's PUBACK, as agents did before `stored`


class Kiosk:
    """The device's delivery half: outbox, publisher thread, MQTT link, with short waits."""

    def __init__(self, state_dir: Path, broker: Mosquitto) -> None:
        self.outbox = Outbox(state_dir)
        self.publisher = Publisher(self.outbox, KIOSK, window=20, stored_timeout_s=1.0, stored_timeout_max_s=2.0)
        config = DeviceBroker(port=broker.port, reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5)
        self.link = MqttLink(KIOSK, config, "0.1.0", on_message=self._on_message,
                             on_connect=self.publisher.on_connect, on_published=self.publisher.on_published)
        self.publisher.link = self.link
        self.made: list[str] = []
        self._thread = threading.Thread(target=self.publisher.run, name="publisher", daemon=True)

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        if topic_name.endswith("/stored"):
            self.publisher.on_stored(topic_name, payload)

    def __enter__(self) -> Kiosk:
        self.link.start()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.publisher.stop()
        self._thread.join(10)
        self.link.close(timeout=1.0)
        self.outbox.close()

    def emit(self, n: int) -> None:
        for _ in range(n):
            event = AgentStarted(device_id=KIOSK, agent_version="0.1.0")
            self.publisher.emit(event)
            self.made.append(event.id)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds, re-checked whenever the outbox changes."""
        with self.outbox.changed:
            return self.outbox.changed.wait_for(predicate, timeout)

    def all_taken(self) -> bool:
        """The broker acknowledged everything made (nothing left to send before a wait is over)."""
        return not self.outbox.pending_messages(now=time.time() - 0.001) and self.publisher.inflight() == 0


class Fleet:
    """The fleet's ingest on a SQLite file, started and stopped like a fleet node."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, group: str | None) -> None:
        engine = make_engine(f"sqlite:///{tmp_path}/fleet.db")
        migrate(engine)
        self.engine = engine
        self.sessions: sessionmaker[Session] = session_factory(engine)
        self.config = FleetConfig(
            database=DatabaseConfig(url=str(engine.url)),
            broker=BrokerConfig(port=broker.port, client_id="fleet-test-ingest", group=group, reconnect_max_s=1),
            ingest=IngestConfig(enabled=True),
        )
        self.ingest: Ingest | None = None

    def start(self) -> Ingest:
        self.ingest = Ingest(self.config, self.sessions, FleetMetrics())
        self.ingest.start()
        assert self.ingest.wait_connected(15), "ingest did not connect"
        return self.ingest

    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None

    def stored(self, device_id: str) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(Event.id).where(Event.device_id == device_id)))

    def rows(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Event)) or 0)


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Fleet]:
    node = Fleet(tmp_path, mosquitto, getattr(request, "param", None))
    try:
        yield node
    finally:
        node.stop()
        node.engine.dispose()


def _old_kiosk_sends(broker: Mosquitto, n: int) -> list[str]:
    """What an agent without `stored` does: publish QoS 1, forget on PUBACK."""
    sender = PlainSender(broker, client_id=OLD_KIOSK)
    ids = []
    try:
        for _ in range(n):
            event = AgentStarted(device_id=OLD_KIOSK, agent_version="0.0.9")
            sender.publish(f"sohoa/v1/{OLD_KIOSK}/event", encode(event))
            ids.append(event.id)
    finally:
        sender.close()
    return ids


def _learn(kiosk: Kiosk, fleet: Fleet, ingest: Ingest) -> None:
    """First events while all is well: stored, confirmed, and the kiosk now waits for the fleet."""
    kiosk.emit(5)
    assert ingest.wait_for(lambda: len(fleet.stored(KIOSK)) == 5, 15)
    assert kiosk.wait(lambda: kiosk.publisher.waits_for_fleet() and kiosk.outbox.depth().events == 0, 15), (
        "the fleet's confirmations did not come")


def _everything_once(kiosk: Kiosk, fleet: Fleet, ingest: Ingest) -> None:
    assert ingest.wait_for(lambda: set(fleet.stored(KIOSK)) >= set(kiosk.made), 45), (
        f"{len(set(kiosk.made) - set(fleet.stored(KIOSK)))} of {len(kiosk.made)} events never stored")
    stored = fleet.stored(KIOSK)
    assert sorted(stored) == sorted(kiosk.made), "each event exactly once"
    assert kiosk.wait(lambda: kiosk.outbox.depth().events == 0, 15), "confirmed events stay on the kiosk"
    assert kiosk.publisher.resent > 0


def test_a_broker_killed_before_its_save_loses_nothing(tmp_path: Path, mosquitto: Mosquitto, fleet: Fleet) -> None:
    """The kiosk sends a stream throughout; the fleet goes away (its session queues at the broker),
    the broker is killed with SIGKILL holding that queue, the kiosk keeps scanning while the broker is
    down, the broker and then the fleet come back."""
    ingest = fleet.start()
    with Kiosk(tmp_path / "kiosk", mosquitto) as kiosk:
        _learn(kiosk, fleet, ingest)
        fleet.stop()
        kiosk.emit(30)
        lost_by_old = _old_kiosk_sends(mosquitto, 10)
        assert kiosk.wait(kiosk.all_taken, 15), "the broker did not take the stream"
        connects = kiosk.link.connects
        mosquitto.kill()
        kiosk.emit(10)  # while the broker is down: they wait in the outbox
        mosquitto.start()
        assert kiosk.wait(lambda: kiosk.link.connects > connects, 15), "the kiosk did not reconnect"
        kiosk.emit(10)
        ingest = fleet.start()
        _everything_once(kiosk, fleet, ingest)
        assert set(fleet.stored(OLD_KIOSK)).isdisjoint(lost_by_old), (
            "control: the killed broker should have lost what the old kiosk trusted it with")
        assert fleet.rows() == len(kiosk.made)


@pytest.mark.parametrize("fleet", ["ingest"], indirect=True)
def test_a_forgotten_shared_subscription_loses_nothing(tmp_path: Path, mosquitto: Mosquitto, fleet: Fleet) -> None:
    """``broker.group`` set: the fleet's ingest is offline while mosquitto restarts (cleanly, with its
    save), which forgets the offline session's shared subscription: what kiosks send until the ingest
    is back reaches nobody, although the broker acknowledged it."""
    ingest = fleet.start()
    with Kiosk(tmp_path / "kiosk", mosquitto) as kiosk:
        _learn(kiosk, fleet, ingest)
        fleet.stop()
        connects = kiosk.link.connects
        mosquitto.stop()
        mosquitto.start()
        assert kiosk.wait(lambda: kiosk.link.connects > connects, 15), "the kiosk did not reconnect"
        kiosk.emit(20)
        lost_by_old = _old_kiosk_sends(mosquitto, 10)
        assert kiosk.wait(kiosk.all_taken, 15), "the broker did not take the stream"
        ingest = fleet.start()
        kiosk.emit(5)
        _everything_once(kiosk, fleet, ingest)
        assert set(fleet.stored(OLD_KIOSK)).isdisjoint(lost_by_old), (
            "control: mosquitto should have dropped what nobody was subscribed to")
        assert fleet.rows() == len(kiosk.made)
