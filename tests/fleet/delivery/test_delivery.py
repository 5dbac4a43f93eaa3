"""The delivery outbox against the reference receiver on loopback (the outbox's own statements,
enqueue, claim and retention, on SQLite and PostgreSQL; the rest on SQLite): documents delivered and
acknowledged once each; the filter by unit and kind; a document not signed waits; retry and
cancel; backoff; a row left 'sending' by a dead worker is sent again and not filed twice."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from fleet.delivery import outbox
from fleet.delivery.config import DeliveryConfig, FolderTarget, HttpTarget
from fleet.delivery.models import Delivery
from fleet.delivery.worker import DeliveryWorker
from fleet.dossiers.models import DossierDocument
from fleet.handoff_receiver.server import ReceiverServer
from fleet.storage import FileStore
from tests.fleet.delivery.conftest import NOW, add_documents, http_config


def states(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        counts: dict[str, int] = {}
        for state in session.scalars(select(Delivery.state)):
            counts[state] = counts.get(state, 0) + 1
        return counts


def test_documents_delivered_and_acknowledged_once(sqlite_sessions: sessionmaker[Session], store: FileStore,
                                                   receiver: ReceiverServer) -> None:
    """Three dossiers of two documents: six files and three manifests at the receiver, every
    delivery acknowledged with the receiver's receipt; a second drain sends nothing."""
    docs = add_documents(sqlite_sessions, store, 3)
    config = http_config(receiver.url)
    with DeliveryWorker(config, sqlite_sessions, store) as worker:
        assert worker.drain(30)
        assert worker.run_once().claimed == 0
    assert states(sqlite_sessions) == {"acknowledged": 6}
    ledger = receiver.receiver.ledger
    assert dict(ledger.filings) == dict.fromkeys(ledger.filings, 1) and len(ledger.filings) == 6
    assert dict(ledger.first_acks) == dict.fromkeys(ledger.filings, 1)
    root = receiver.receiver.root
    for doc in docs:
        filed = root / doc.dossier_code / f"{doc.name}.pdf"
        assert filed.read_bytes() == store.path(doc.signed_sha256).read_bytes()
    manifest = json.loads((root / docs[0].dossier_code / "manifest.json").read_text())
    assert manifest["dossier_code"] == docs[0].dossier_code
    assert sorted(d["name"] for d in manifest["documents"]) == sorted(
        d.name for d in docs if d.dossier_code == docs[0].dossier_code)
    assert manifest["documents"][0]["signing_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert manifest["documents"][0]["operator_kind"] == "unit_staff"
    with sqlite_sessions() as session:
        receipts = set(session.scalars(select(Delivery.receipt)))
    assert receipts == {f.receipt for f in receiver.receiver.filed.values()}


def test_unsigned_waits_and_filters_apply(sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """Only signed documents are queued, each for the targets whose unit and kind filter takes it."""
    add_documents(sessions, store, 1, unit="99001", prefix="A")
    add_documents(sessions, store, 1, unit="99002", prefix="B", kind="result")
    add_documents(sessions, store, 1, unit="99001", prefix="C", signed=False)
    targets = [FolderTarget(name="all", dir=tmp_path / "all"),
               FolderTarget(name="results", dir=tmp_path / "r", kinds=["result"]),
               FolderTarget(name="unit1", dir=tmp_path / "u", units=["99001"]),
               FolderTarget(name="prefix", dir=tmp_path / "p", units=["9900*"])]
    with sessions.begin() as session:
        assert outbox.enqueue(session, targets, NOW, 100) == 4 + 2 + 2 + 4
    with sessions.begin() as session:
        assert outbox.enqueue(session, targets, NOW, 100) == 0  # once per document and target
        by_target: dict[str, set[str]] = {}
        for target, code in session.execute(select(Delivery.target, Delivery.dossier_code)):
            by_target.setdefault(target, set()).add(code[0])
    assert by_target == {"all": {"A", "B"}, "results": {"B"}, "unit1": {"A"}, "prefix": {"A", "B"}}


def test_enqueue_looks_only_at_documents_signed_since_its_last_complete_pass(
        sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """After a complete pass a target reads only documents signed since (less the slack): one
    signed long before and somehow not queued stays out; one signed since comes in; a target
    whose filter changed looks at everything again."""
    add_documents(sessions, store, 1, per_dossier=1, prefix="A")
    target = FolderTarget(name="share", dir=tmp_path / "s")
    later = NOW + timedelta(hours=2)
    with sessions.begin() as session:
        assert outbox.enqueue(session, [target], later, 100) == 1
    add_documents(sessions, store, 1, per_dossier=1, prefix="OLD", signed_at=NOW)
    add_documents(sessions, store, 1, per_dossier=1, prefix="NEW", signed_at=later + timedelta(minutes=1))
    with sessions.begin() as session:
        assert outbox.enqueue(session, [target], later + timedelta(minutes=2), 100) == 1
        assert {c[:3] for c in session.scalars(select(Delivery.dossier_code))} == {"A-2", "NEW"}
    widened = target.model_copy(update={"kinds": ["component"]})
    with sessions.begin() as session:
        assert outbox.enqueue(session, [widened], later + timedelta(minutes=3), 100) == 1  # OLD, at last


def test_folder_target_files_then_manifest(sqlite_sessions: sessionmaker[Session], store: FileStore,
                                           tmp_path: Path) -> None:
    """The folder drop: each PDF and then the manifest, no temporary file left behind."""
    docs = add_documents(sqlite_sessions, store, 2)
    config = DeliveryConfig(targets=[FolderTarget(name="share", dir=tmp_path / "share", fsync=True)])
    with DeliveryWorker(config, sqlite_sessions, store) as worker:
        assert worker.drain(30)
    assert states(sqlite_sessions) == {"acknowledged": 4}
    for doc in docs:
        folder = tmp_path / "share" / doc.dossier_code
        assert (folder / f"{doc.name}.pdf").read_bytes() == store.path(doc.signed_sha256).read_bytes()
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{d.name}.pdf" for d in docs if d.dossier_code == doc.dossier_code] + ["manifest.json"])


def test_dead_worker_row_sent_again_not_filed_twice(sessions: sessionmaker[Session], store: FileStore,
                                                    receiver: ReceiverServer) -> None:
    """A worker that claimed rows and sent one file then died (its rows stay 'sending'): once the
    lease runs out another worker sends them again, with the same keys; the receiver files each
    once and acknowledges each once."""
    docs = add_documents(sessions, store, 1)
    config = http_config(receiver.url, lease_s=60.0)
    dead = DeliveryWorker(config, sessions, store)
    with sessions.begin() as session:
        outbox.enqueue(session, config.targets, NOW, 100)
    with sessions.begin() as session:
        claimed = outbox.claim(session, config, NOW, ["motcua"])
    assert len(claimed) == 2
    first = claimed[0]
    dead.senders["motcua"].send_document(first.dossier_code, first.name, first.idempotency_key,
                                         first.signed_sha256, store.path(first.signed_sha256))
    dead.close()  # died before recording anything
    assert states(sessions) == {"sending": 2}
    clock = [NOW + timedelta(seconds=30)]
    with DeliveryWorker(config, sessions, store, clock=lambda: clock[0]) as worker:
        assert worker.run_once().claimed == 0  # the lease still runs
        clock[0] = NOW + timedelta(seconds=61)
        worker.run_once()
    assert states(sessions) == {"acknowledged": 2}
    ledger = receiver.receiver.ledger
    assert sorted(ledger.filings.values()) == [1, 1]
    assert ledger.duplicates[first.idempotency_key] == 1
    assert sorted(ledger.first_acks.values()) == [1, 1]
    assert {d.name for d in docs} == {c.name for c in claimed}


def test_permanent_failure_then_admin_retry_and_cancel(sqlite_sessions: sessionmaker[Session], store: FileStore,
                                                       receiver: ReceiverServer) -> None:
    """A 4xx the receiver will always give (a dossier code it cannot take as a path) fails at
    once with its reason; a retry queues it afresh; a cancel takes it out of the backlog."""
    add_documents(sqlite_sessions, store, 1, per_dossier=1, prefix="bad..code")
    config = http_config(receiver.url)
    with DeliveryWorker(config, sqlite_sessions, store) as worker:
        worker.run_once()
        with sqlite_sessions() as session:
            row = session.scalars(select(Delivery)).one()
            assert (row.state, row.attempts) == ("failed", 1)
            assert row.last_error == "dossier code is not usable as a file name"
        with sqlite_sessions.begin() as session:
            assert outbox.retry(session, row.id, NOW).state == "queued"
        with sqlite_sessions.begin() as session:
            with pytest.raises(outbox.DeliveryConflict):
                outbox.retry(session, row.id, NOW)
            assert outbox.cancel(session, row.id, NOW).state == "cancelled"
        assert worker.run_once().claimed == 0
        with sqlite_sessions() as session:
            assert outbox.backlog(session, ["motcua"])["motcua"].backlog == 0


def test_retryable_failures_back_off_then_give_up(sqlite_sessions: sessionmaker[Session], store: FileStore) -> None:
    """A receiver that is not there: each attempt waits about twice as long as the one before (with
    jitter, capped) and after max_attempts the delivery is failed with the reason."""
    add_documents(sqlite_sessions, store, 1, per_dossier=1)
    config = DeliveryConfig(targets=[HttpTarget(name="motcua", url="http://127.0.0.1:9", timeout_s=2)],
                            backoff_s=10, backoff_max_s=40, max_attempts=4)
    clock = [NOW]
    waits = []
    with DeliveryWorker(config, sqlite_sessions, store, clock=lambda: clock[0], rng=random.Random(5)) as worker:
        for _ in range(4):
            assert worker.run_once().claimed == 1
            with sqlite_sessions() as session:
                row = session.scalars(select(Delivery)).one()
            waits.append((row.next_attempt_at - clock[0]).total_seconds())
            clock[0] = row.next_attempt_at
    assert row.state == "failed" and row.last_error == "connection failed (ConnectError)"
    assert 5 <= waits[0] < 10 and 10 <= waits[1] < 20 and 20 <= waits[2] < 40 and waits[3] == 0


def test_retention_of_files_after_acknowledgement(sessions: sessionmaker[Session], store: FileStore,
                                                  tmp_path: Path) -> None:
    """Files go 90 days after the last target acknowledged, not before; a page image shared with
    a document still held stays; a document a target has not acknowledged keeps its files; the
    registry keeps every row with its names and hashes."""
    from fleet.retention import delete_delivered_files

    docs = add_documents(sessions, store, 2, per_dossier=1, pages=True)
    held = add_documents(sessions, store, 1, per_dossier=1, pages=True, prefix="K", signed=False)
    config = DeliveryConfig(targets=[FolderTarget(name="share", dir=tmp_path / "share", fsync=False)])
    with DeliveryWorker(config, sessions, store, clock=lambda: NOW) as worker:
        assert worker.drain(30)
    with sessions.begin() as session:  # the unsigned document shares a page image with the first
        first_pages = session.scalars(select(DossierDocument.page_ids).where(DossierDocument.id == docs[0].id)).one()
        shared = session.scalars(select(DossierDocument.page_ids).where(DossierDocument.id == held[0].id)).one()
        from fleet.models import Page

        image = session.scalars(select(Page.sha256).where(Page.page_id == first_pages[0])).one()
        session.execute(update(Page).where(Page.page_id == shared[0]).values(sha256=image))
    assert delete_delivered_files(sessions, store, 90, config, NOW + timedelta(days=89)).documents == 0
    done = delete_delivered_files(sessions, store, 90, config, NOW + timedelta(days=91))
    assert (done.documents, done.files, done.kept_shared) == (2, 5, 1)  # 2 x (PDF, signed) + 1 image
    assert store.has(image)
    with sessions() as session:
        rows = {d.name: d for d in session.scalars(select(DossierDocument))}
    for doc in docs:
        row = rows[doc.name]
        assert row.files_deleted_at is not None and row.signed_sha256 == doc.signed_sha256
        assert not store.has(row.sha256) and not store.has(doc.signed_sha256)
    assert rows[held[0].name].files_deleted_at is None and store.has(rows[held[0].name].sha256)
    assert delete_delivered_files(sessions, store, 90, config, NOW + timedelta(days=92)).documents == 0
