"""Fixtures for the delivery outbox: signed documents in a real database and file store, the
reference receiver on a loopback port."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from fleet.delivery.config import DeliveryConfig, HttpTarget
from fleet.dossiers.models import DossierDocument
from fleet.handoff_receiver.server import Faults, Receiver, ReceiverServer
from fleet.models import Page
from fleet.storage import FileStorage, FileStore

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def pdf_bytes(label: str, size: int = 2048) -> bytes:
    """A small PDF-looking file, unique per label (the store and the receiver check only the magic)."""
    head = f"%PDF-1.7\n% {label}\n".encode()
    return head + hashlib.sha256(label.encode()).digest() * ((size - len(head)) // 32 + 1)


@dataclass(frozen=True)
class Doc:
    id: int
    dossier_code: str
    name: str
    signed_sha256: str


def add_documents(sessions: sessionmaker[Session], store: FileStorage, dossiers: int, per_dossier: int = 2, *,
                  unit: str = "99001", kind: str = "component", signed: bool = True, prefix: str = "H99.01",
                  pages: bool = False, size: int = 2048, signed_at: datetime = NOW) -> list[Doc]:
    """``dossiers`` dossiers of ``per_dossier`` documents each, with their files in the store
    (the device's PDF and, when ``signed``, a signed copy); with ``pages`` one page image each."""
    rows = []
    page_rows = []
    for d in range(dossiers):
        code = f"{prefix}-261207-{d:05d}"
        for n in range(1, per_dossier + 1):
            name = f"{code}.{n}" if kind == "component" else f"{code}-KQ{n}"
            original = pdf_bytes(f"{name} original", size)
            sha = hashlib.sha256(original).hexdigest()
            store.put_bytes(sha, original)
            signed_sha = None
            if signed:
                copy = pdf_bytes(f"{name} signed", size)
                signed_sha = hashlib.sha256(copy).hexdigest()
                store.put_bytes(signed_sha, copy)
            page_ids: list[str] = []
            if pages:
                image = b"\x89PNG\r\n\x1a\n" + f"{name} page".encode()
                image_sha = hashlib.sha256(image).hexdigest()
                store.put_bytes(image_sha, image)
                page_id = str(uuid.uuid4())
                page_ids.append(page_id)
                page_rows.append({"page_id": page_id, "device_id": "kiosk-1", "event_id": str(uuid.uuid4()),
                                  "batch_id": "b", "sequence": n, "side": "front", "dossier_code": code,
                                  "sha256": image_sha, "size": len(image), "content_type": "image/png",
                                  "width": 10, "height": 10, "dpi": 200, "source": "sane", "dropped": False,
                                  "captured_at": NOW, "received_at": NOW, "unit_code": unit})
            rows.append({"dossier_code": code, "name": name, "kind": kind, "sequence": n, "pages": 1,
                         "size": len(original), "sha256": sha, "device_id": "kiosk-1", "unit_code": unit,
                         "event_id": str(uuid.uuid4()), "session_id": "s", "page_ids": page_ids, "closed_at": NOW,
                         "operator_kind": "unit_staff", "signed_sha256": signed_sha,
                         "signed_size": size if signed else None, "signed_at": signed_at if signed else None,
                         "signing_level": "B-B" if signed else None,
                         "signing_certificate": "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"
                         if signed else None})
    with sessions.begin() as session:
        if page_rows:
            from fleet.models import Device

            if session.get(Device, "kiosk-1") is None:
                session.add(Device(id="kiosk-1", unit_code=unit, first_seen=NOW, last_seen=NOW))
                session.flush()
            session.execute(insert(Page), page_rows)
        session.execute(insert(DossierDocument), rows)
        docs = session.execute(DossierDocument.__table__.select().where(
            DossierDocument.name.in_([r["name"] for r in rows]))).all()
    return [Doc(r.id, r.dossier_code, r.name, r.signed_sha256) for r in docs]


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a fresh SQLite file (the fault runs: what they test is the sender and the
    receiver, which the database does not change; the outbox's statements run on both)."""
    from fleet.db import make_engine, migrate, session_factory

    engine = make_engine(f"sqlite:///{tmp_path}/fleet.db")
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files", fsync=False)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    """The reference receiver, no faults, on a free loopback port."""
    with ReceiverServer(Receiver(tmp_path / "received", fsync=False)) as server:
        yield server


def http_config(url: str, **overrides: object) -> DeliveryConfig:
    """One HTTP target at ``url``, quick retries (tests do not wait out real backoffs)."""
    fields: dict[str, object] = {"targets": [HttpTarget(name="motcua", url=url, timeout_s=5.0)],
                                 "backoff_s": 0.01, "backoff_max_s": 0.05, "lease_s": 30.0, "batch_size": 50,
                                 "max_attempts": 50}
    fields.update(overrides)
    return DeliveryConfig.model_validate(fields)


def faulty(tmp_path: Path, kinds: tuple[str, ...], rate: float, delay_s: float = 0.6, seed: int = 3) -> Receiver:
    return Receiver(tmp_path / "received", faults=Faults(kinds=kinds, rate=rate, delay_s=delay_s, seed=seed),
                    fsync=False)
