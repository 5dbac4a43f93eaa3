"""The signing job on SQLite and PostgreSQL: each closed document whose file the store holds is
signed once, its signed copy stored by its own sha256 and recorded on the row; a document that
cannot be signed keeps its reason and does not stop the others; a failing key source stops the
pass and leaves the others untouched; a kill -9 in the middle of a run loses nothing and
re-signs nothing already recorded; in ``serve`` it runs as a service, ``/metrics`` shows the
backlog and a dossier's documents say whether they are signed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pikepdf
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.api.app import create_app
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig, StorageConfig
from fleet.config import load as load_fleet_config
from fleet.db import make_engine, migrate, session_factory
from fleet.dossiers.models import Dossier, DossierDocument
from fleet.models import StoredFile
from fleet.signing.config import SigningConfig
from fleet.signing.job import SIGNER, SWEEP_AFTER, SigningJob, SigningPass, unsigned_backlog
from fleet.signing.signer import Signer
from fleet.storage import FileStore
from tests.authn import login
from tests.fleet.conftest import state_of
from tests.fleet.signing.conftest import UNITS, Docs, Keys, pkcs11_config, pkcs12_config, validate

NOW = datetime(2026, 1, 10, 9, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _document(sessions: sessionmaker[Session], name: str, data: bytes, unit: str | None, *,
              code: str = "000.00.00.H99-260110-0001", sequence: int = 1, doctype: str | None = None) -> int:
    with sessions.begin() as session:
        row = DossierDocument(
            dossier_code=code, name=name, kind="component", sequence=sequence, doctype=doctype, pages=1,
            size=len(data), sha256=_sha(data), device_id="kiosk-1", unit_code=unit, event_id=f"e-{name}",
            session_id="s-1", page_ids=[], closed_at=NOW)
        session.add(row)
        session.flush()
        return row.id


def _rows(sessions: sessionmaker[Session]) -> dict[int, DossierDocument]:
    with sessions() as session:
        rows = {d.id: d for d in session.scalars(select(DossierDocument))}
        session.expunge_all()
        return rows


def _unit_keys(keys: Keys) -> SigningConfig:
    return pkcs12_config(keys, scope="unit", source={
        "type": "pkcs12", "passphrase_file": str(keys.units.passphrase_file)},
        units={unit: {"file": str(keys.units.p12_files[unit])} for unit in UNITS})


def test_each_held_document_is_signed_once(sessions: sessionmaker[Session], keys: Keys, docs: Docs,
                                           tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files", fsync=False)
    late = docs.plain + b"\n% arrives later\n"
    ids = {
        "a": _document(sessions, "a.1.pdf", docs.pdfa, "99001"),
        "b": _document(sessions, "b.1.pdf", docs.plain, "99002"),
        "png": _document(sessions, "c.1.pdf", PNG, "99001"),
        "no_key": _document(sessions, "d.1.pdf", docs.pdfa, "99003"),
        "late": _document(sessions, "e.1.pdf", late, "99001"),
    }
    for data in (docs.pdfa, docs.plain, PNG):
        store.put_bytes(_sha(data), data)
    backlog: list[int] = []
    job = SigningJob(Signer(_unit_keys(keys)), sessions, store, clock=lambda: NOW,
                     on_pass=lambda _done, left: backlog.append(left))

    assert job.run_once() == SigningPass(signed=2, failed=2, waiting=1, stopped=None)
    rows = _rows(sessions)
    for key, unit in (("a", "99001"), ("b", "99002")):
        row = rows[ids[key]]
        assert row.signed_sha256 is not None and row.signed_sha256 != row.sha256
        signed = store.path(row.signed_sha256).read_bytes()
        assert _sha(signed) == row.signed_sha256 and row.signed_size == len(signed)
        assert signed.startswith(store.path(row.sha256).read_bytes())
        assert row.signed_at == NOW and row.signing_level == "B-B" and row.signing_error is None
        assert row.signing_certificate is not None and row.signing_certificate.startswith("-----BEGIN CERTIFICATE")
        status = validate(signed, keys.units.ca_cert)
        assert status.intact and status.valid and status.trusted
        assert f"Don vi {unit}" in status.signing_cert.subject.human_friendly
    assert rows[ids["png"]].signed_sha256 is None and "not a PDF" in (rows[ids["png"]].signing_error or "")
    assert rows[ids["no_key"]].signed_sha256 is None and "99003" in (rows[ids["no_key"]].signing_error or "")
    assert rows[ids["late"]].signed_sha256 is None and rows[ids["late"]].signing_error is None
    assert backlog == [3]

    # Again: nothing signed twice, the two bad ones are not retried by this process.
    assert job.run_once() == SigningPass(signed=0, failed=0, waiting=1, stopped=None)
    assert {i: r.signed_sha256 for i, r in _rows(sessions).items()} == {i: r.signed_sha256 for i, r in rows.items()}

    store.put_bytes(_sha(late), late)  # the last document's file arrives
    assert job.run_once() == SigningPass(signed=1, failed=0, waiting=0, stopped=None)
    assert _rows(sessions)[ids["late"]].signed_sha256 is not None
    assert backlog == [3, 3, 2]
    job.close()


def test_signed_under_the_fleets_name_and_a_walk_in_waits_for_its_code(
        sessions: sessionmaker[Session], keys: Keys, docs: Docs, tmp_path: Path) -> None:
    """A document the fleet renumbered is signed with the fleet's name in its metadata (the
    device's PDF says number 1); a walk-in's document is not signed (nor counted in the backlog)
    until an admin names it: it has no name the one-stop system could file it under."""
    store = FileStore(tmp_path / "files", fsync=False)
    store.put_bytes(_sha(docs.pdfa), docs.pdfa)
    code = "000.00.00.H99-260110-0001"
    renumbered = _document(sessions, f"{code}.2.pdf", docs.pdfa, "99001", sequence=2, doctype="birth_certificate")
    walk_in = _document(sessions, "WALKIN-1A2B3C4D.1.pdf", docs.pdfa, "99001", code="WALKIN-1A2B3C4D")
    job = SigningJob(Signer(pkcs12_config(keys)), sessions, store, clock=lambda: NOW)
    assert unsigned_backlog(sessions) == 1
    assert job.run_once() == SigningPass(signed=1, failed=0, waiting=0, stopped=None)
    rows = _rows(sessions)
    assert rows[walk_in].signed_sha256 is None and rows[walk_in].signing_error is None
    signed_sha = rows[renumbered].signed_sha256
    assert signed_sha is not None
    with pikepdf.open(store.path(signed_sha)) as pdf:
        assert str(pdf.docinfo.Title) == f"{code}.2 birth_certificate"
        assert 'sohoa:sequence="2"' in bytes(pdf.Root.Metadata.read_bytes()).decode()
    assert unsigned_backlog(sessions) == 0
    job.close()


class _Killed(BaseException):
    """The process ends here (as under ``kill -9``): nothing after it runs, no handler sees it."""


class _DiesAfterWriting(FileStore):
    """The store of a fleet killed right after it wrote a file: the window between storing a
    signed copy and naming it on its document."""

    def put_bytes(self, sha256: str, data: bytes) -> bool:
        super().put_bytes(sha256, data)
        raise _Killed


def _signer_rows(sessions: sessionmaker[Session]) -> dict[str, StoredFile]:
    with sessions() as session:
        rows = {r.sha256: r for r in session.scalars(select(StoredFile).where(StoredFile.uploaded_by == SIGNER))}
        session.expunge_all()
        return rows


def test_a_signed_copy_left_unnamed_by_a_kill_is_forgotten(sessions: sessionmaker[Session], keys: Keys,
                                                           docs: Docs, tmp_path: Path) -> None:
    """Each signed copy has its row in the store's table. A pass that dies between writing a copy
    and naming it leaves a recorded copy that no document names; the next pass signs the document
    again, and once that copy is older than the sweep's delay the job forgets it, file and row,
    touching nothing else."""
    store = FileStore(tmp_path / "files", fsync=False)
    doc = _document(sessions, "a.1.pdf", docs.pdfa, "99001")
    store.put_bytes(_sha(docs.pdfa), docs.pdfa)
    dying = SigningJob(Signer(_unit_keys(keys)), sessions, _DiesAfterWriting(tmp_path / "files", fsync=False),
                       clock=lambda: NOW)
    with pytest.raises(_Killed):
        dying.run_once()
    [orphan] = _signer_rows(sessions)
    assert store.has(orphan) and _rows(sessions)[doc].signed_sha256 is None

    now = [NOW]
    job = SigningJob(Signer(_unit_keys(keys)), sessions, store, clock=lambda: now[0])
    assert job.run_once().signed == 1
    signed = _rows(sessions)[doc].signed_sha256
    assert signed is not None and signed != orphan
    rows = _signer_rows(sessions)
    assert set(rows) == {orphan, signed}, "too young to be forgotten, the new copy recorded"
    assert rows[signed].size == len(store.path(signed).read_bytes()) and rows[signed].content_type == "application/pdf"
    now[0] = NOW + SWEEP_AFTER + timedelta(seconds=1)
    assert job.sweep() == 1
    assert set(_signer_rows(sessions)) == {signed} and not store.has(orphan)
    assert store.has(signed) and store.has(_sha(docs.pdfa))
    assert job.sweep() == 0
    job.close()
    dying.close()


def test_a_failing_key_source_stops_the_pass(sessions: sessionmaker[Session], softhsm: Path, docs: Docs,
                                             tmp_path: Path) -> None:
    """A wrong PIN fails every document alike: the pass stops at the first (its reason kept for
    the admin), the others stay untouched, and the token is not asked again with that PIN (a real
    HSM would lock it); with the right PIN (a restart) the next run signs them all."""
    store = FileStore(tmp_path / "files", fsync=False)
    store.put_bytes(_sha(docs.plain), docs.plain)
    ids = [_document(sessions, f"{n}.1.pdf", docs.plain, "99001") for n in range(3)]
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("111111\n")
    config = pkcs11_config(softhsm)
    bad = config.model_copy(update={"source": config.source.model_copy(update={"pin_file": wrong})})  # type: ignore[union-attr]

    with Signer(bad) as signer:
        done = SigningJob(signer, sessions, store).run_once()
        again = SigningJob(signer, sessions, store).run_once()
    assert (done.signed, done.failed) == (0, 1) and done.stopped is not None and "PIN" in done.stopped
    # An HSM locks its PIN after a few wrong ones: the refused PIN is not presented again.
    assert again.stopped is not None and "not tried again" in again.stopped
    rows = _rows(sessions)
    assert "refused the PIN" in (rows[ids[0]].signing_error or "")
    assert [rows[i].signing_error for i in ids[1:]] == [None, None]

    job = SigningJob(Signer(config), sessions, store)
    assert job.run_once() == SigningPass(signed=3, failed=0, waiting=0, stopped=None)
    job.close()
    rows = _rows(sessions)
    assert all(rows[i].signed_sha256 and rows[i].signing_error is None for i in ids)
    assert len({rows[i].signed_sha256 for i in ids}) == 3  # one signature each (its own signing time)


def test_kill_9_in_the_middle_loses_and_doubles_nothing(keys: Keys, docs: Docs, tmp_path: Path) -> None:
    """``sohoa-fleet signing run`` killed with SIGKILL once a few documents are signed: what was
    recorded stays exactly as it was, the next run signs only the rest, every signed file is held."""
    url = f"sqlite:///{tmp_path}/fleet.db"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    store = FileStore(tmp_path / "files")
    originals: dict[int, bytes] = {}
    for n in range(12):
        data = docs.plain + f"\n% copy {n}\n".encode()
        store.put_bytes(_sha(data), data)
        originals[_document(sessions, f"k{n}.1.pdf", data, "99001")] = data
    config = {
        "database": {"url": url},
        "storage": {"dir": str(tmp_path / "files")},
        "signing": {"enabled": True, "source": {"type": "pkcs12", "file": str(keys.province.p12_files[None]),
                                                "passphrase_file": str(keys.province.passphrase_file)}},
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "fleet", "signing", "run", "--config", str(tmp_path / "fleet.yaml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}

    def signed() -> dict[int, str]:
        return {i: r.signed_sha256 for i, r in _rows(sessions).items() if r.signed_sha256}

    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(signed()) < 2 and time.monotonic() < deadline:
            try:
                process.wait(timeout=0.05)
                break  # it ended by itself: the assertion below says so
            except subprocess.TimeoutExpired:
                continue
        assert process.poll() is None, "the run ended before it could be killed: give it more documents"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    before = signed()
    assert 2 <= len(before) < len(originals)

    # The fleet back up: its job (here in this process, the same code `serve` runs) does the rest.
    job = SigningJob(Signer(load_fleet_config(tmp_path / "fleet.yaml").signing), sessions, store)
    done = job.run_once()
    job.close()
    assert (done.signed, done.failed, done.stopped) == (len(originals) - len(before), 0, None)
    after = signed()
    assert len(after) == len(originals)
    assert {i: after[i] for i in before} == before, "a document recorded before the kill was signed again"
    assert all(store.has(sha) and store.path(sha).read_bytes().startswith(originals[i]) for i, sha in after.items())
    engine.dispose()


def test_serve_signs_in_the_background_and_metrics_show_the_backlog(keys: Keys, docs: Docs, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fleet.db"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    store = FileStore(tmp_path / "files")
    store.put_bytes(_sha(docs.pdfa), docs.pdfa)
    _document(sessions, "s.1.pdf", docs.pdfa, "99001")
    _document(sessions, "t.1.pdf", b"%PDF-1.7 never uploaded", "99001")
    with sessions.begin() as session:
        session.add(Dossier(code="000.00.00.H99-260110-0001", walk_in=False, component_at=NOW,
                            digitized_unit="99001", updated_at=NOW))
    engine.dispose()
    config = FleetConfig(database=DatabaseConfig(url=url), storage=StorageConfig(dir=tmp_path / "files"),
                         ingest=IngestConfig(enabled=False), signing=pkcs12_config(keys))
    with TestClient(create_app(config)) as client:
        job = state_of(client).services.signing
        assert job is not None
        assert job.wait_passes(1, 60), "no signing pass ended"
        metrics = client.get("/metrics").text
        assert "sohoa_fleet_documents_unsigned 1.0" in metrics
        assert 'sohoa_fleet_documents_signed_total{outcome="signed"} 1.0' in metrics
        login(client)
        detail = client.get("/api/v1/dossiers/000.00.00.H99-260110-0001").json()
        state = {d["name"]: (d["signing_level"], d["signed_sha256"] is not None, d["signing_error"])
                 for d in detail["documents"]}
        assert state == {"s.1.pdf": ("B-B", True, None), "t.1.pdf": (None, False, None)}
    assert state_of(client).services.signing is None
