"""A stand-in fleet API over real HTTPS and a real mutual-TLS mosquitto, built only from
``provisioning`` pieces, for tests on both sides until (and besides) the fleet's own routes.

The stand-in shows the wiring the fleet uses: the server certificate from the CA,
:class:`EnrollmentService` for ``/enroll`` (202 + ``Retry-After`` while pending),
:class:`RequestVerifier` for device calls (renewal, page files), the CA and the CRL. It records
what it received (enrollment bodies, files, refusals) so tests can check what went over the wire.

>>> with standin_fleet(tmp_path, broker_url=f"mqtts://127.0.0.1:{port}") as fleet:   # doctest: +SKIP
...     fleet.store.tokens[token.token_id] = token
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from provisioning.broker import BrokerConfig, write_broker_config
from provisioning.ca import FLEET_INGEST, CertificateAuthority, reload_broker
from provisioning.enrollment import EnrollAnswer, EnrollmentService, EnrollRequest, MemoryStore, RenewRequest
from provisioning.errors import CertificateRejected, CSRRejected, InvalidTransition, ProvisioningError, TokenRejected
from provisioning.requestauth import CONTENT_SHA256, EMPTY_SHA256, RequestVerifier
from tests.services import ConfiguredMosquitto, free_port, wait_port

STATUS = {TokenRejected: 403, CSRRejected: 422, InvalidTransition: 409, CertificateRejected: 401}


@dataclass
class Fleet:
    """The running stand-in: its URL, CA, store and service, and what it saw."""

    url: str
    ca: CertificateAuthority
    store: MemoryStore
    service: EnrollmentService
    crl: Path
    enroll_bodies: list[bytes] = field(default_factory=list)
    """Raw bodies of every ``POST /api/v1/enroll`` (tests check no private key is in them)."""
    answers: list[int] = field(default_factory=list)
    """Status codes of the enrollment answers (refusals included), in order."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Page files stored by ``PUT /api/v1/files/{sha256}``, by sha256."""
    file_uploaders: dict[str, str] = field(default_factory=dict)
    """Which verified device stored each file."""
    file_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    """The request headers of the PUT that stored each file (lower-case names)."""
    refusals: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of every device request refused."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke(self, device_id: str) -> None:
        """What the fleet does on revocation: mark it, rewrite the CRL (the broker needs a SIGHUP)."""
        self.service.revoke(device_id, by="admin-1")
        self.crl.write_bytes(self.service.crl_pem())


def make_app(service: EnrollmentService, verifier: RequestVerifier, store: MemoryStore,
             fleet: Fleet | None = None) -> FastAPI:
    app = FastAPI()

    def refused(path: str, reason: str) -> None:
        if fleet is not None:
            with fleet.lock:
                fleet.refusals.append((path, reason))

    @app.exception_handler(ProvisioningError)
    async def provisioning_error(request: Request, exc: ProvisioningError) -> JSONResponse:
        code = next((c for t, c in STATUS.items() if isinstance(exc, t)), 400)
        refused(request.url.path, exc.reason)
        if fleet is not None and request.url.path == "/api/v1/enroll":
            fleet.answers.append(code)
        return JSONResponse({"detail": exc.reason}, status_code=code)

    @app.post("/api/v1/enroll")
    async def enroll(request: Request) -> JSONResponse:
        raw = await request.body()
        if fleet is not None:
            fleet.enroll_bodies.append(raw)
        answer = service.enroll(EnrollRequest.model_validate_json(raw))
        code = {"accepted": 200, "pending": 202, "rejected": 403}[answer.state]
        headers = {"Retry-After": str(answer.retry_after_s)} if answer.retry_after_s else None
        if fleet is not None:
            fleet.answers.append(code)
        return JSONResponse(answer.model_dump(mode="json"), status_code=code, headers=headers)

    @app.get("/api/v1/pki/ca.crt")
    def ca_crt() -> PlainTextResponse:
        return PlainTextResponse(service.ca.certificate_pem.decode(), media_type="application/x-pem-file")

    def device(request: Request, body_sha256: str) -> str:
        header = request.headers.get("authorization")
        claimed = header.split("id=", 1)[1].split(",", 1)[0] if header and "id=" in header else ""
        current = store.latest_certificate(claimed)
        query = f"?{request.url.query}" if request.url.query else ""
        peer = verifier.verify(header, request.method, request.url.path + query, body_sha256,
                               certificate_pem=current.pem if current else None, revoked=store.revoked_serials())
        return peer.name

    @app.get("/api/v1/devices/{device_id}/pages")
    async def pages(device_id: str, request: Request) -> dict[str, str]:
        caller = device(request, EMPTY_SHA256)
        if caller != device_id:
            raise HTTPException(403, "a device reads only its own pages")
        return {"device": caller}

    @app.post("/api/v1/devices/{device_id}/certificate")
    async def renew(device_id: str, request: Request) -> EnrollAnswer:
        body = await request.body()
        caller = device(request, hashlib.sha256(body).hexdigest())
        if caller != device_id:
            raise HTTPException(403, "a device renews only its own certificate")
        current = store.latest_certificate(caller)
        assert current is not None
        return service.renew(caller, RenewRequest.model_validate_json(body), current.pem)

    @app.head("/api/v1/files/{sha256}")
    async def has_file(sha256: str, request: Request) -> Response:
        device(request, EMPTY_SHA256)
        return Response(status_code=200 if fleet is not None and sha256 in fleet.files else 404)

    @app.put("/api/v1/files/{sha256}")
    async def put_file(sha256: str, request: Request) -> Response:
        # The signature covers the path's sha256; the stored bytes must then hash to it.
        if request.headers.get(CONTENT_SHA256, "").lower() != sha256:
            refused(request.url.path, "body_hash_mismatch")
            raise HTTPException(400, "the signed body hash is not the file's")
        caller = device(request, sha256)
        body = await request.body()
        if hashlib.sha256(body).hexdigest() != sha256:
            refused(request.url.path, "body_mismatch")
            raise HTTPException(400, "the body does not match its sha256")
        assert fleet is not None
        with fleet.lock:
            known = sha256 in fleet.files
            fleet.files[sha256] = body
            fleet.file_uploaders[sha256] = caller
            fleet.file_headers[sha256] = dict(request.headers)
        return Response(status_code=200 if known else 201)

    return app


@contextmanager
def standin_fleet(workdir: Path, ca: CertificateAuthority | None = None, *,
                  broker_url: str = "mqtts://127.0.0.1:8883", poll_s: int = 30,
                  port: int | None = None) -> Iterator[Fleet]:
    """The stand-in fleet on loopback over HTTPS (server certificate from ``ca``, a new CA in
    ``workdir/ca`` if none) on ``port`` (a free one if None); ``poll_s`` is the ``Retry-After``
    of a pending answer."""
    if ca is None:
        ca = CertificateAuthority.create(workdir / "ca")
    cert, key = ca.issue_server(["localhost", "127.0.0.1"], workdir / "api", name="api")
    store = MemoryStore()
    port = port or free_port()
    service = EnrollmentService(ca, store, broker_url=broker_url, fleet_url=f"https://127.0.0.1:{port}")
    service.POLL_SECONDS = poll_s
    fleet = Fleet(f"https://127.0.0.1:{port}", ca, store, service, ca.write_crl(workdir / "api" / "crl.pem", []))
    app = make_app(service, RequestVerifier(ca), store, fleet)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=str(cert),
                                           ssl_keyfile=str(key), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield fleet
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class TlsBroker:
    """mosquitto with the generated mutual-TLS configuration, its ingest identity and its CRL."""

    mosquitto: ConfiguredMosquitto
    port: int
    ingest_cert: Path
    ingest_key: Path
    crl: Path

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def publish_crl(self, crl_pem: bytes) -> None:
        """Rewrite the CRL and SIGHUP the broker, as the fleet does after a revocation."""
        proc = self.mosquitto.proc
        assert proc is not None
        self.crl.write_bytes(crl_pem)
        reloads = self.mosquitto.log_text().count("Reloading config")
        reload_broker(proc.pid)
        self.mosquitto.wait_log("Reloading config", reloads + 1)


@contextmanager
def tls_mosquitto(ca: CertificateAuthority, workdir: Path) -> Iterator[TlsBroker]:
    """A real mosquitto on a free loopback port, running what ``provisioning.broker`` generates
    (every packet logged), with the ingest identity ``fleet.ingest``."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker_cert, broker_key = ca.issue_server(["localhost", "127.0.0.1"], workdir / "tls", name="broker")
    ingest_cert, ingest_key = ca.issue_service(FLEET_INGEST, workdir / "ingest")
    crl = ca.write_crl(workdir / "tls" / "crl.pem", [])
    cfg = BrokerConfig(
        tls_port=free_port(), tls_bind="127.0.0.1", cafile=ca.cert_path or Path(), certfile=broker_cert,
        keyfile=broker_key, crlfile=crl, acl_file=workdir / "acl", persistence_dir=workdir,
        log_file=workdir / "mosquitto.log", log_debug=True,
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read our 0600 keys.
        run_as_user="root" if os.geteuid() == 0 else None)
    conf, _ = write_broker_config(cfg, workdir / "mosquitto.conf")
    broker = ConfiguredMosquitto(conf, cfg.tls_port, workdir / "mosquitto.log")
    broker.start()
    try:
        yield TlsBroker(broker, cfg.tls_port, ingest_cert, ingest_key, crl)
    finally:
        broker.stop()
