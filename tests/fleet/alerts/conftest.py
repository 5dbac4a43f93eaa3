"""Fixtures for the alert tests: the fleet app with a clock the test moves, its evaluator run on
demand, and a device that reports through the fleet's real ingest writer."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from fleet.alerts.config import AlertsConfig
from fleet.alerts.evaluator import AlertEvaluator
from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import FleetConfig
from fleet.ingest import Incoming, Writer
from protocol.messages import (
    CameraInfo,
    Message,
    OutboxDepth,
    Page,
    PageCaptured,
    QualityVerdict,
    ScannerFault,
    ScannerInfo,
    Status,
    Telemetry,
    encode,
    new_id,
)
from protocol.topics import Channel, topic
from tests.authn import login
from tests.fleet.conftest import make_config, state_of

T0 = datetime(2026, 3, 20, 2, 0, tzinfo=UTC)  # 09:00 in Vietnam, 20 March: two thirds of the month gone


class Clock:
    """The fleet's clock, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def alerts_config(tmp_path: Path, db_url: str, **alerts: Any) -> FleetConfig:
    """The test config, with the periodic evaluator off unless asked (tests call it on demand)."""
    settings: dict[str, Any] = {"enabled": False, **alerts}
    return make_config(tmp_path, db_url).model_copy(update={"alerts": AlertsConfig(**settings)})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fleet(tmp_path: Path, db_url: str, clock: Clock) -> Iterator[TestClient]:
    """The fleet app (no MQTT) on SQLite or PostgreSQL, its clock at T0."""
    with TestClient(create_app(alerts_config(tmp_path, db_url), clock=clock)) as client:
        login(client)  # a province admin
        yield client


def evaluator_of(client: TestClient) -> AlertEvaluator:
    evaluator = fleet_state(client.app).services.alerts
    assert evaluator is not None
    return evaluator


@contextmanager
def statements(client: TestClient) -> Iterator[list[str]]:
    """The SQL statements the fleet's engine runs inside the block (to see what a pass writes)."""
    engine = state_of(client).engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.lstrip())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def send(client: TestClient, message: Message, received: datetime, channel: Channel | None = None, *,
         stored: int = 1) -> None:
    """One message through the fleet's ingest writer, received at ``received``; ``stored``: 0 for
    one the writer must refuse."""
    if channel is None:
        channel = {Status: Channel.STATUS, Telemetry: Channel.TELEMETRY}.get(type(message), Channel.EVENT)
    state = state_of(client)
    item = Incoming(topic(message.device_id, channel), encode(message), received_at=received)
    assert Writer(state.sessions, state.metrics).write([item]) == stored


def online(device: str, at: datetime, unit: str | None = "99001") -> Status:
    return Status(device_id=device, state="online", agent_version="0.2.0", unit=unit, ts=at)


def offline(device: str, at: datetime) -> Status:
    return Status(device_id=device, state="offline", ts=at)


def report(device: str, at: datetime, *, scanner: str = "ready", free: int = 10**10, total: int = 3 * 10**10,
           backlog: int = 0, accepting: bool = True) -> Telemetry:
    return Telemetry(device_id=device, ts=at, agent_version="0.2.0", uptime_s=100.0, cpu_percent=5.0,
                     memory_percent=30.0, disk_free_bytes=free, disk_total_bytes=total,
                     scanner=ScannerInfo(state=scanner, model="SANE test"),
                     camera=CameraInfo(state="ready", model="fake"),
                     outbox=OutboxDepth(events=backlog, files=0, bytes=0), accepting_scans=accepting)


def jam(device: str, at: datetime, kind: str = "scanner_jammed") -> ScannerFault:
    return ScannerFault(device_id=device, ts=at, type=kind, severity="warning",
                        message="Document feeder jammed")


def page(device: str, data: bytes, at: datetime, *, ok: bool | None = True, dossier: str | None = None,
         n: int = 1) -> PageCaptured:
    quality = None if ok is None else QualityVerdict(ok=ok, issues=[] if ok else ["blurry"])
    captured = Page(page_id=new_id(), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                    content_type="image/png", width=40, height=56, dpi=200, source="scanner", batch_id="b-1",
                    sequence=n, dossier_code=dossier, doctype="don_de_nghi", doctype_confidence=0.9,
                    quality=quality, captured_at=at)
    return PageCaptured(device_id=device, ts=at, page=captured)
