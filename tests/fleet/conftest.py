"""Fixtures for the fleet: a database on SQLite or the suite's real PostgreSQL, a config
pointing at the test broker, the app opened through its factory, a device-like publisher."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from fleet.api.app import create_app
from fleet.api.state import FleetState, fleet_state
from fleet.config import BrokerConfig, DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Ingest
from tests.authn import login
from tests.services import Mosquitto


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the suite's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fleet.db"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    admin = make_url(base).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on that database, migrated to the head (the fleet's tables without the app)."""
    engine = make_engine(db_url)
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def make_config(
    tmp_path: Path,
    db_url: str,
    broker: Mosquitto | None = None,
    *,
    heartbeat_timeout_s: float = 180.0,
    client_id: str = "fleet-test-ingest",
    max_upload_bytes: int = 64 * 1024 * 1024,
) -> FleetConfig:
    return FleetConfig(
        database=DatabaseConfig(url=db_url),
        storage=StorageConfig(dir=tmp_path / "files", max_upload_bytes=max_upload_bytes),
        broker=BrokerConfig(port=broker.port if broker else 1883, client_id=client_id),
        ingest=IngestConfig(enabled=broker is not None, heartbeat_timeout_s=heartbeat_timeout_s),
    )


@pytest.fixture
def fleet_config(tmp_path: Path, db_url: str, mosquitto: Mosquitto) -> FleetConfig:
    return make_config(tmp_path, db_url, mosquitto)


@pytest.fixture
def client(fleet_config: FleetConfig) -> Iterator[TestClient]:
    """The app opened (migrated, ingest connected to the test broker) through TestClient."""
    with TestClient(create_app(fleet_config)) as test_client:
        ingest = state_of(test_client).services.ingest
        assert ingest is not None and ingest.wait_connected(10), "ingest did not connect"
        login(test_client)  # a province admin
        yield test_client


def state_of(test_client: TestClient) -> FleetState:
    state = fleet_state(test_client.app)
    return state


def ingest_of(test_client: TestClient) -> Ingest:
    ingest = state_of(test_client).services.ingest
    assert ingest is not None
    return ingest


class Publisher:
    """A device-like MQTT v5 client that waits for each QoS 1 publish to be acknowledged."""

    def __init__(self, broker: Mosquitto, client_id: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    try:
        yield pub
    finally:
        pub.close()


def wait_for(test_client: TestClient, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``predicate`` holds, re-checking after each batch the ingest writes."""
    assert ingest_of(test_client).wait_for(predicate, timeout), "condition not met in time"
