"""Deliveries through every fault the reference receiver can inject (5xx, answers later than the
sender's timeout, slow reads, connections cut mid-upload, acknowledgements sent twice), then
counted at the receiver: every document filed once and acknowledged once, every delivery
acknowledged at the fleet. Also: mutual TLS and OAuth2 client credentials."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.delivery.config import DeliveryConfig, HttpTarget, MutualTls, OAuth2ClientCredentials
from fleet.delivery.models import Delivery
from fleet.delivery.worker import DeliveryWorker
from fleet.handoff_receiver.server import FAULTS, Auth, Receiver, ReceiverServer
from fleet.storage import FileStore
from tests.fleet.delivery.conftest import add_documents, faulty, http_config


def exactly_once(receiver: Receiver, sessions: sessionmaker[Session], expected: int) -> None:
    with sessions() as session:
        rows = list(session.execute(select(Delivery.state, Delivery.idempotency_key)))
    assert {state for state, _ in rows} == {"acknowledged"}
    keys = {key for _, key in rows}
    assert len(keys) == expected
    assert set(receiver.ledger.filings) == keys and set(receiver.ledger.filings.values()) == {1}
    assert set(receiver.ledger.first_acks) == keys and set(receiver.ledger.first_acks.values()) == {1}
    assert receiver.acknowledged == keys
    files = [p for p in receiver.root.rglob("*.pdf")]
    assert len(files) == expected  # nothing filed under a second name


def test_every_fault_exactly_once(sqlite_sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """Thirty documents of 64 KiB, four requests in ten faulty: each kind injected at least once,
    the backlog drained, every document filed and acknowledged exactly once."""
    receiver = faulty(tmp_path, FAULTS, rate=0.4, delay_s=0.6)
    add_documents(sqlite_sessions, store, 10, per_dossier=3, size=64 * 1024)
    with ReceiverServer(receiver) as server:
        config = http_config(server.url, batch_size=12)
        target = config.targets[0]
        assert isinstance(target, HttpTarget)
        config = config.model_copy(update={"targets": [target.model_copy(update={"timeout_s": 0.3})]})
        with DeliveryWorker(config, sqlite_sessions, store) as worker:
            assert worker.drain(60), "backlog not drained"
    assert set(receiver.faults.injected) == set(FAULTS), receiver.faults.injected
    assert sum(receiver.ledger.duplicates.values()) > 0  # timeouts made the sender ask again
    exactly_once(receiver, sqlite_sessions, 30)


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey]
                 | None = None, *, ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                                     x509.IPAddress(__import__("ipaddress")
                                                                                    .ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_mutual_tls(sqlite_sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """Over HTTPS with client certificates required: the fleet's certificate gets through; a
    fleet without one is refused at the handshake and its deliveries wait (retryable)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, ca=True)
    ca_path, _ = _write(tmp_path / "ca", ca, ca_key)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server_files = _write(tmp_path / "server", _certificate("receiver", server_key, (ca.subject, ca_key)), server_key)
    client_files = _write(tmp_path / "client", _certificate("fleet", client_key, (ca.subject, ca_key)), client_key)
    add_documents(sqlite_sessions, store, 1)
    receiver = Receiver(tmp_path / "received", fsync=False)
    with ReceiverServer(receiver, tls=server_files, client_ca=ca_path) as server:
        anonymous = DeliveryConfig(targets=[HttpTarget(name="motcua", url=server.url, ca_file=ca_path, timeout_s=5)],
                                   backoff_s=0.01, backoff_max_s=0.01)
        with DeliveryWorker(anonymous, sqlite_sessions, store) as worker:
            assert worker.run_once().failed_attempts == 2
        assert receiver.ledger.requests == 0
        config = http_config(server.url, backoff_s=0.01, backoff_max_s=0.01)
        config = config.model_copy(update={"targets": [HttpTarget(
            name="motcua", url=server.url, ca_file=ca_path, timeout_s=5,
            auth=MutualTls(cert_file=client_files[0], key_file=client_files[1]))]})
        with DeliveryWorker(config, sqlite_sessions, store) as worker:
            assert worker.drain(30)
    exactly_once(receiver, sqlite_sessions, 2)


def test_oauth2_client_credentials(sqlite_sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """The fleet fetches a token with its client id and secret (from a file) and sends it; a
    wrong secret leaves the deliveries waiting, with the reason."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    add_documents(sqlite_sessions, store, 1)
    receiver = Receiver(tmp_path / "received", fsync=False)
    with ReceiverServer(receiver, auth=Auth(oauth_clients={"sohoa-fleet": "s3cret"})) as server:
        def config(secret_file: Path) -> DeliveryConfig:
            return http_config(server.url).model_copy(update={"targets": [HttpTarget(
                name="motcua", url=server.url, timeout_s=5, auth=OAuth2ClientCredentials(
                    token_url=server.url + "/oauth2/token", client_id="sohoa-fleet", client_secret_file=secret_file))]})

        with DeliveryWorker(config(wrong), sqlite_sessions, store) as worker:
            result = worker.run_once()
        assert result.failed_attempts == 2 and result.errors == {"motcua": "token endpoint answered 401"}
        with DeliveryWorker(config(secret), sqlite_sessions, store) as worker:
            assert worker.drain(30)
    exactly_once(receiver, sqlite_sessions, 2)


def test_cut_alone(sqlite_sessions: sessionmaker[Session], store: FileStore, tmp_path: Path) -> None:
    """Half the requests cut mid-upload, nothing else: every document still filed once."""
    fault = "cut"
    receiver = faulty(tmp_path, (fault,), rate=0.5, delay_s=0.4, seed=11)
    add_documents(sqlite_sessions, store, 2, per_dossier=2)
    with ReceiverServer(receiver) as server:
        base = http_config(server.url)
        target = base.targets[0]
        assert isinstance(target, HttpTarget)
        config = base.model_copy(update={"targets": [target.model_copy(update={"timeout_s": 0.25})]})
        with DeliveryWorker(config, sqlite_sessions, store) as worker:
            assert worker.drain(60)
    assert receiver.faults.injected[fault] > 0
    exactly_once(receiver, sqlite_sessions, 4)
