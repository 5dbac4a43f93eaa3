"""A known data set for the progress tests: the sample unit tree (fictitious codes), dossiers
received per unit, and devices that report pages through the fleet's real ingest writer."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.ingest import Incoming, Writer
from fleet.progress.units import sample_csv
from protocol.messages import (
    Message,
    OutboxDepth,
    Page,
    PageCaptured,
    QualityVerdict,
    ScannerInfo,
    Status,
    Telemetry,
    new_id,
)
from protocol.topics import Channel, topic
from tests.authn import login
from tests.fleet.conftest import make_config, state_of
from tests.services import free_port, wait_port

NOW = datetime(2026, 2, 28, 17, 0, tzinfo=UTC)  # 1 March 2026, 00:00 in Vietnam: January and February are over
ENROLLED = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)

OK = QualityVerdict(ok=True)
REJECTED = QualityVerdict(ok=False, issues=["blurry"])


def at(day: str, hour: int = 3) -> datetime:
    """A moment in UTC (03:00 UTC is 10:00 in Vietnam)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@dataclass(frozen=True)
class P:
    """A page: its dossier, capture time, verdict, dropped flag."""

    dossier: str | None
    when: datetime
    quality: QualityVerdict | None = OK
    dropped: bool = False


DEVICES: dict[str, str | None] = {"kiosk-p": "99", "kiosk-a": "99001", "kiosk-c": "99003", "kiosk-n": None}

PAGES: dict[str, list[P]] = {
    # Province's own counter: P1, P2 in January; P3 only rejected pages (not digitized);
    # P4 one rejected and one good page in February.
    "kiosk-p": [P("P1", at("2026-01-10")), P("P2", at("2026-01-11")), P("P2", at("2026-01-11"), dropped=True),
                P("P3", at("2026-02-05"), REJECTED), P("P4", at("2026-02-06"), REJECTED), P("P4", at("2026-02-06", 4))],
    # Commune 99001: A1..A8 in January (two pages each, counted once); A9 captured on 31 January
    # at 20:00 UTC = 1 February in Vietnam; A1 again in February (not counted again); A10 with
    # no verdict (never checked: counts).
    "kiosk-a": [p for i in range(1, 9) for p in (P(f"A{i}", at("2026-01-15")), P(f"A{i}", at("2026-01-15", 5)))]
               + [P("A9", at("2026-01-31", 20)), P("A1", at("2026-02-10")), P("A10", at("2026-02-11"), None),
                  P(None, at("2026-02-11"))],
    # Commune 99003: C1..C3 in January; C4 only a dropped page; A2 again (already counted at 99001).
    "kiosk-c": [P("C1", at("2026-01-20")), P("C2", at("2026-01-20")), P("C3", at("2026-01-21")),
                P("C4", at("2026-01-22"), dropped=True), P("A2", at("2026-02-01"))],
    # A device with no unit: its dossier is unattributed.
    "kiosk-n": [P("N1", at("2026-01-05"))],
}

RECEIVED = [("99", "2026-01", 4), ("99", "2026-02", 2), ("99001", "2026-01", 20), ("99003", "2026-01", 10),
            ("99004", "2026-01", 8)]

# Expected: own (received, digitized) for January..February.
EXPECTED = {"99": (6, 3), "99001": (20, 10), "99003": (10, 3), "99004": (8, 0)}
HOURS = 31 * 24 + 27 * 24 + 17  # 1 January 00:00 UTC (first heard) .. NOW
TELEMETRY_HOURS = {"kiosk-a": HOURS, "kiosk-p": 704}  # availability 100% and 704/1409 = 50.0%; kiosk-c 0%


def _page(device: str, n: int, p: P) -> PageCaptured:
    data = f"{device}-{n}".encode()
    page = Page(page_id=new_id(), sha256=hashlib.sha256(data).hexdigest(), size=len(data), content_type="image/png",
                width=1240, height=1754, dpi=200, source="scanner", batch_id=f"b-{device}", sequence=n + 1,
                dossier_code=f"000.00.00.H99-{p.dossier}" if p.dossier else None, quality=p.quality,
                dropped=p.dropped, captured_at=p.when)
    return PageCaptured(device_id=device, page=page, ts=p.when)


def _telemetry(device: str, when: datetime) -> Telemetry:
    return Telemetry(device_id=device, ts=when, agent_version="0.1.0", uptime_s=10.0, cpu_percent=1.0,
                     memory_percent=10.0, disk_free_bytes=10**10, disk_total_bytes=3 * 10**10,
                     scanner=ScannerInfo(state="ready", model="SANE test"),
                     outbox=OutboxDepth(events=0, files=0, bytes=0))


def fill(client: TestClient) -> None:
    """Units (CSV endpoint), dossiers received (JSON endpoint), pages and telemetry (ingest writer)."""
    assert client.post("/api/v1/units/import", content=sample_csv().encode(),
                       headers={"Content-Type": "text/csv"}).status_code == 200
    response = client.post("/api/v1/progress/received",
                           json=[{"unit_code": u, "period": m, "received": n} for u, m, n in RECEIVED])
    assert response.status_code == 200, response.text
    state = state_of(client)
    writer = Writer(state.sessions, state.metrics)
    items: list[Incoming] = []

    def add(channel: Channel, msg: Message, received: datetime) -> None:
        from protocol.messages import encode

        items.append(Incoming(topic(msg.device_id, channel), encode(msg), received_at=received))

    for device, unit in DEVICES.items():
        add(Channel.STATUS, Status(device_id=device, state="online", agent_version="0.1.0", unit=unit, ts=ENROLLED),
            ENROLLED)
        for n, p in enumerate(PAGES[device]):
            add(Channel.EVENT, _page(device, n, p), p.when + timedelta(seconds=5))
        for h in range(TELEMETRY_HOURS.get(device, 0)):
            when = ENROLLED + timedelta(hours=h, minutes=10)
            add(Channel.TELEMETRY, _telemetry(device, when), when)
    # kiosk-a is still heard from at NOW (online); the others fell silent long ago.
    add(Channel.TELEMETRY, _telemetry("kiosk-a", NOW - timedelta(seconds=30)), NOW - timedelta(seconds=30))
    assert writer.write(items) == len(items)


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="progress-uvicorn", daemon=True)
    thread.start()
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """The fleet app (no MQTT), its clock at NOW, on SQLite or PostgreSQL."""
    with TestClient(create_app(make_config(tmp_path, db_url), clock=lambda: NOW)) as client:
        login(client)  # a province admin
        yield client


@pytest.fixture
def filled(api: TestClient) -> TestClient:
    fill(api)
    return api
