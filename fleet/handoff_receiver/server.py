"""The reference receiver: the hand-off contract's other side (``docs/handoff.md``), for tests,
benchmarks and the demo. It files each document once per idempotency key under
``<dir>/<dossier code>/<file>``, writes each dossier's manifest beside them, acknowledges what
it holds, and can misbehave on purpose (:class:`Faults`):

- ``5xx``: answers 503 without filing anything;
- ``timeout``: files the document (or takes the manifest), then answers only after
  ``delay_s``, past the sender's timeout: the sender must retry and must not file it twice;
- ``slow_read``: reads the request body in small pieces with pauses (it still succeeds);
- ``cut``: reads half of the body and closes the connection (nothing filed);
- ``duplicate_ack``: answers a manifest with every acknowledgement twice, and those of the
  dossier's earlier manifests again.

It is a plain threaded HTTP/1.1 server (``http.server``) so that a fault can act on the socket
itself (a cut is a real cut, not an error page). What it filed survives its restart
(``receipts.jsonl``); its counters (:class:`Ledger`) are what tests count exactly-once with.

>>> import tempfile
>>> receiver = Receiver(Path(tempfile.mkdtemp()))
>>> receiver.ledger.filings
Counter()
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote

from pydantic import ValidationError

from fleet.delivery.contract import (
    BASE_PATH,
    IDEMPOTENCY_HEADER,
    MANIFEST_FILE,
    SHA256_HEADER,
    Acknowledgement,
    DocumentReceipt,
    Manifest,
    ManifestReceipt,
)
from fleet.durable import atomic_write, fsync_dir, make_dirs

log = logging.getLogger(__name__)

FAULTS = ("5xx", "timeout", "slow_read", "cut", "duplicate_ack")
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
_DOCUMENT = re.compile(rf"^{BASE_PATH}/dossiers/(?P<code>[^/]+)/documents/(?P<file>[^/]+)$")
_MANIFEST = re.compile(rf"^{BASE_PATH}/dossiers/(?P<code>[^/]+)/manifest$")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DRAIN_MAX = 1024 * 1024
"""A refused request's body up to this size is read before the answer (see ``_refuse``)."""
MAX_BODY = 256 * 1024 * 1024


def openapi_text() -> str:
    """The contract's OpenAPI document, as shipped beside this module."""
    return resources.files("fleet.handoff_receiver").joinpath("openapi.yaml").read_text(encoding="utf-8")


@dataclass
class Faults:
    """Which faults to inject, how often (``rate``: share of requests that get one) and how long a
    ``timeout`` holds the answer. Seeded: a run can be repeated. ``injected`` counts each kind.
    Every kind is injected once before any is repeated (a manifest, the only request that can be
    acknowledged twice, gets ``duplicate_ack`` first), then they are drawn at random.

    >>> faults = Faults(kinds=("5xx",), rate=1.0)
    >>> faults.pick(manifest=False), faults.injected["5xx"]
    ('5xx', 1)
    """

    kinds: tuple[str, ...] = ()
    rate: float = 0.0
    delay_s: float = 2.0
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self, *, manifest: bool) -> str | None:
        kinds = [k for k in self.kinds if manifest or k != "duplicate_ack"]
        with self._lock:
            if not kinds or self._rng.random() >= self.rate:
                return None
            # Each kind once before any repeats, and a manifest's only kind (duplicate_ack) first
            # on manifests: a short run still meets every fault it asked for.
            fresh = [k for k in kinds if not self.injected[k]]
            if manifest and "duplicate_ack" in fresh:
                fresh = ["duplicate_ack"]
            kind = self._rng.choice(fresh or kinds)
            self.injected[kind] += 1
            return kind


@dataclass
class Ledger:
    """What the receiver did, for tests to count: ``filings`` per idempotency key (a document
    filed twice would show 2), ``duplicates`` (requests for a key already filed), ``acknowledged``
    (keys acknowledged at least once) and ``first_acks`` per key (manifests that acknowledged it
    for the first time: exactly one each)."""

    filings: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    first_acks: Counter[str] = field(default_factory=Counter)
    manifests: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Filed:
    key: str
    dossier_code: str
    file: str
    sha256: str
    receipt: str


class Receiver:
    """The receiver's state (what is filed) behind a lock; :class:`ReceiverServer` serves it."""

    def __init__(self, root: Path, *, faults: Faults | None = None, fsync: bool = True) -> None:
        self.root = root
        self.faults = faults or Faults()
        self.fsync = fsync
        self.ledger = Ledger()
        self.filed: dict[str, Filed] = {}
        self.acknowledged: set[str] = set()
        self._lock = threading.Lock()
        make_dirs(root / ".tmp", fsync=fsync)
        self._journal = root / "receipts.jsonl"
        if self._journal.exists():
            for line in self._journal.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry.get("ack"):
                    self.acknowledged.add(entry["key"])
                else:
                    self.filed[entry["key"]] = Filed(**entry)

    def _journal_append(self, entry: dict[str, Any]) -> None:
        with self._journal.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())

    def file_document(self, code: str, file: str, key: str, sha256: str, body: bytes) -> tuple[int, DocumentReceipt]:
        """File ``body`` unless ``key`` is filed already. Returns (status, receipt)."""
        with self._lock:
            self.ledger.requests += 1
            known = self.filed.get(key)
            if known is not None:
                if known.sha256 != sha256:
                    raise Refused(HTTPStatus.CONFLICT, "this idempotency key was filed with other content")
                self.ledger.duplicates[key] += 1
                return 200, DocumentReceipt(idempotency_key=key, receipt=known.receipt, duplicate=True)
            final = self.root / code / file
            make_dirs(final.parent, fsync=self.fsync)
            fd, tmp = tempfile.mkstemp(dir=self.root / ".tmp", suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(body)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            Path(tmp).replace(final)
            if self.fsync:
                fsync_dir(final.parent)
            filed = Filed(key=key, dossier_code=code, file=file, sha256=sha256,
                          receipt=f"R-{hashlib.sha256(key.encode()).hexdigest()[:20]}")
            self._journal_append(filed.__dict__)
            self.filed[key] = filed
            self.ledger.filings[key] += 1
            return 201, DocumentReceipt(idempotency_key=key, receipt=filed.receipt, duplicate=False)

    def take_manifest(self, manifest: Manifest, *, duplicate_acks: bool) -> ManifestReceipt:
        """Acknowledge every document of ``manifest`` this receiver holds with that content;
        name the others ``missing``. The manifest is written beside the files."""
        with self._lock:
            self.ledger.manifests += 1
            acks: list[Acknowledgement] = []
            missing: list[str] = []
            for doc in manifest.documents:
                filed = self.filed.get(doc.idempotency_key)
                if filed is None or filed.sha256 != doc.sha256 or filed.dossier_code != manifest.dossier_code:
                    missing.append(doc.name)
                    continue
                acks.append(Acknowledgement(name=doc.name, sha256=doc.sha256, idempotency_key=doc.idempotency_key,
                                            receipt=filed.receipt))
            if acks:
                atomic_write(self.root / manifest.dossier_code / MANIFEST_FILE, manifest.canonical())
            for ack in acks:
                if ack.idempotency_key not in self.acknowledged:
                    self.acknowledged.add(ack.idempotency_key)
                    self.ledger.first_acks[ack.idempotency_key] += 1
                    self._journal_append({"key": ack.idempotency_key, "ack": True})
            if duplicate_acks:
                earlier = [Acknowledgement(name=f.file.removesuffix(".pdf"), sha256=f.sha256, idempotency_key=f.key,
                                           receipt=f.receipt) for f in self.filed.values()
                           if f.dossier_code == manifest.dossier_code and f.key in self.acknowledged]
                acks = acks + acks + earlier
            return ManifestReceipt(dossier_code=manifest.dossier_code, acknowledged=acks, missing=missing)


class Refused(Exception):
    """A request the contract refuses (answered with ``status`` and ``detail``)."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Auth:
    """How callers authenticate. Mutual TLS is the server's (``client_ca``); with ``oauth_clients``
    (client id → secret) every contract request needs a bearer token from ``/oauth2/token``."""

    oauth_clients: dict[str, str] = field(default_factory=dict)
    token_lifetime_s: int = 300


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle holds the body back until the
    # client's delayed acknowledgement of the headers (40 ms a request on Linux).
    disable_nagle_algorithm = True
    server: ReceiverServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:  # said, so that a client does not send its next request down it
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._answer(status, json.dumps(payload).encode())

    def _refuse(self, status: HTTPStatus, detail: str, *, unread: bool = True) -> None:
        """Answer ``status`` and close. A small ``unread`` body is read first: closing a socket with
        unread bytes makes the kernel send a reset, which can throw the answer away before the
        client reads it ("server disconnected without sending a response")."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "")
        if unread and length.isdigit() and int(length) <= DRAIN_MAX:
            with contextlib.suppress(OSError):
                self.rfile.read(int(length))
        self._json(status, {"detail": detail})

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self, fault: str | None) -> bytes | None:
        """The request body (None: the connection was cut on purpose)."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        length = int(length_text)
        if length > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too large")
        if fault == "cut":
            self.rfile.read(length // 2)
            self._cut()
            return None
        if fault == "slow_read":
            parts: list[bytes] = []
            left = length
            step = max(1024, length // 8)
            while left > 0:
                chunk = self.rfile.read(min(step, left))
                if not chunk:
                    break
                parts.append(chunk)
                left -= len(chunk)
                time.sleep(0.01)  # the fault itself: a receiver that reads slowly
            return b"".join(parts)
        return self.rfile.read(length)

    def _authorized(self) -> bool:
        clients = self.server.auth.oauth_clients
        if not clients:
            return True
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        return self.server.token_valid(token)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == f"{BASE_PATH}/health":
            self._json(200, {"status": "ok"})
        elif path == f"{BASE_PATH}/openapi.yaml":
            self._answer(200, openapi_text().encode(), "application/yaml")
        else:
            self._json(404, {"detail": "not found"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != TOKEN_PATH or not self.server.auth.oauth_clients:
            self._refuse(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            body = self._read_body(None) or b""
        except Refused as exc:
            self._refuse(exc.status, exc.detail, unread=False)
            return
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii", "replace")).items()}
        client_id, secret = _basic(self.headers.get("Authorization", ""))
        if client_id is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        expected = self.server.auth.oauth_clients.get(client_id or "")
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type"})
        elif expected is None or secret is None or not hmac.compare_digest(expected, secret):
            self._json(401, {"error": "invalid_client"})
        else:
            token = self.server.issue_token()
            self._json(200, {"access_token": token, "token_type": "Bearer",
                             "expires_in": self.server.auth.token_lifetime_s})

    def do_PUT(self) -> None:
        path = unquote(self.path.split("?", 1)[0])
        document, manifest = _DOCUMENT.match(path), _MANIFEST.match(path)
        unread = True
        try:
            if document is None and manifest is None:
                raise Refused(HTTPStatus.NOT_FOUND, "not found")
            if not self._authorized():
                raise Refused(HTTPStatus.UNAUTHORIZED, "a bearer token from /oauth2/token is required")
            key = self.headers.get(IDEMPOTENCY_HEADER, "")
            if not _KEY.match(key):
                raise Refused(HTTPStatus.BAD_REQUEST, f"{IDEMPOTENCY_HEADER} must be 64 lower-case hex digits")
            fault = self.server.receiver.faults.pick(manifest=manifest is not None)
            if fault == "5xx":
                raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "injected fault: unavailable")
            unread = False
            body = self._read_body(fault)
            if body is None:
                return
            if document is not None:
                status, payload = self._document(document.group("code"), document.group("file"), key, body)
            else:
                assert manifest is not None
                status, payload = self._manifest(manifest.group("code"), key, body, fault == "duplicate_ack")
        except Refused as exc:
            self._refuse(exc.status, exc.detail, unread=unread)
            return
        if fault == "timeout":
            time.sleep(self.server.receiver.faults.delay_s)  # the fault itself: done, but answered too late
        try:
            self._answer(status, payload)
        except OSError:  # the sender gave up waiting (the timeout fault): it will ask again
            self.close_connection = True

    def _document(self, code: str, file: str, key: str, body: bytes) -> tuple[int, bytes]:
        if not _PART.match(code) or not _PART.match(file) or ".." in code + file or not file.endswith(".pdf"):
            raise Refused(HTTPStatus.BAD_REQUEST, "dossier code or file name not usable")
        claimed = self.headers.get(SHA256_HEADER, "")
        actual = hashlib.sha256(body).hexdigest()
        if claimed != actual:
            raise Refused(HTTPStatus.BAD_REQUEST, f"{SHA256_HEADER} does not match the body")
        if not body.startswith(b"%PDF-"):
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "not a PDF")
        status, receipt = self.server.receiver.file_document(code, file, key, actual, body)
        return status, receipt.model_dump_json().encode()

    def _manifest(self, code: str, key: str, body: bytes, duplicate_acks: bool) -> tuple[int, bytes]:
        try:
            manifest = Manifest.model_validate_json(body)
        except ValidationError as exc:
            raise Refused(HTTPStatus.UNPROCESSABLE_ENTITY, f"manifest does not fit the contract "
                          f"({exc.error_count()} errors)") from None
        if manifest.dossier_code != code or not _PART.match(code):
            raise Refused(HTTPStatus.BAD_REQUEST, "the manifest's dossier code is not the path's")
        if hashlib.sha256(manifest.canonical()).hexdigest() != key:
            raise Refused(HTTPStatus.BAD_REQUEST, f"{IDEMPOTENCY_HEADER} of a manifest is its content's sha256")
        receipt = self.server.receiver.take_manifest(manifest, duplicate_acks=duplicate_acks)
        return 200, receipt.model_dump_json().encode()


def _basic(header: str) -> tuple[str | None, str | None]:
    if not header.startswith("Basic "):
        return None, None
    try:
        user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return user, secret


class ReceiverServer(ThreadingHTTPServer):
    """The receiver on ``host:port`` (0: a free port, see :attr:`port`), plain HTTP or HTTPS
    (``tls``: certificate and key; ``client_ca``: mutual TLS, client certificates required).
    ``start()`` serves from a thread; use it as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0, *, auth: Auth | None = None,
                 tls: tuple[Path, Path] | None = None, client_ca: Path | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.receiver = receiver
        self.auth = auth or Auth()
        self._tokens: dict[str, float] = {}
        self._token_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(client_ca))
            # The handshake happens in the request's thread (finish_request): one client that fails
            # it (no certificate) is closed at once and holds up no other.
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake refused (%s)", type(exc).__name__)
                request.close()
                return
        super().finish_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._token_lock:
            self._tokens[token] = time.monotonic() + self.auth.token_lifetime_s
        return token

    def token_valid(self, token: str) -> bool:
        with self._token_lock:
            expires = self._tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name="handoff-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
