"""An app with no broker, on SQLite or PostgreSQL, whose clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.api.state import FleetState, fleet_state
from fleet.auth.config import AuthConfig
from tests.fleet.conftest import make_config


@dataclass
class Clock:
    """The fleet's time, moved by the test instead of waited for."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_app(
    tmp_path: Path, db_url: str, clock: Clock, auth: AuthConfig | None = None, *, address: str = "203.0.113.7"
) -> TestClient:
    config = make_config(tmp_path, db_url)
    if auth is not None:
        config = config.model_copy(update={"auth": auth})
    return TestClient(create_app(config, clock=clock), client=(address, 50000))


@pytest.fixture
def app_client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    """The fleet on SQLite, opened (migrated), not logged in."""
    with open_app(tmp_path, f"sqlite:///{tmp_path}/fleet.db", clock) as client:
        yield client


def state_of(client: TestClient) -> FleetState:
    state = fleet_state(client.app)
    return state
