"""The dossier registry's tests: the fleet app on SQLite or PostgreSQL with the sample unit tree,
and devices whose pages and ``dossier_closed`` events go through the fleet's real ingest writer."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from fleet.ingest import Incoming, Writer
from fleet.progress.units import sample_csv
from protocol.messages import (
    DossierClosed,
    DossierDocument,
    Message,
    Operator,
    Page,
    PageCaptured,
    QualityVerdict,
    Status,
    encode,
    new_id,
)
from protocol.topics import Channel, topic
from tests.fleet.conftest import state_of
from tests.fleet.progress.conftest import api, at

__all__ = ["api", "at", "closed", "load_units", "page", "send", "status"]

_seq = itertools.count(1)


def load_units(client: TestClient, extra: str = "") -> None:
    csv = sample_csv() + extra
    response = client.post("/api/v1/units/import", content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text


def status(device: str, unit: str | None, when: datetime) -> Status:
    return Status(device_id=device, state="online", agent_version="0.1.0", unit=unit, ts=when)


def page(device: str, dossier: str | None, when: datetime, *, ok: bool = True, page_id: str | None = None,
         dpi: int = 200, operator: Operator | None = None) -> PageCaptured:
    n = next(_seq)
    data = f"{device}-{n}".encode()
    quality = QualityVerdict(ok=ok, issues=[] if ok else ["blurry"])
    return PageCaptured(device_id=device, ts=when, page=Page(
        page_id=page_id or new_id(), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        content_type="image/png", width=1240, height=1754, dpi=dpi, source="scanner", batch_id=f"b-{device}-{n}",
        sequence=1, dossier_code=dossier, quality=quality, captured_at=when, operator=operator))


def closed(device: str, dossier: str | None, names: Iterable[str], when: datetime,
           page_ids: Iterable[str] = (), operator: Operator | None = None) -> DossierClosed:
    docs = [DossierDocument(sha256=hashlib.sha256(name.encode()).hexdigest(), name=name, pages=1, size=100)
            for name in names]
    return DossierClosed(device_id=device, ts=when, dossier_code=dossier, session_id=new_id(),
                         page_ids=list(page_ids), documents=docs, operator=operator)


def send(client: TestClient, messages: Iterable[Message]) -> None:
    """Through the ingest writer, as the MQTT ingest would, in one batch."""
    state = state_of(client)
    writer = Writer(state.sessions, state.metrics)
    items = []
    for msg in messages:
        channel = Channel.STATUS if isinstance(msg, Status) else Channel.EVENT
        items.append(Incoming(topic(msg.device_id, channel), encode(msg), received_at=msg.ts + timedelta(seconds=5)))
    assert writer.write(items) == len(items)
