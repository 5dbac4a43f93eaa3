"""Where documents go: one sender per configured target, each sending a document's signed file
and a dossier's manifest as the contract (:mod:`fleet.delivery.contract`) says.

- :class:`HttpSender`: ``PUT`` each file, then the manifest, to the receiver's endpoint, with
  mutual TLS or an OAuth2 client-credentials token; every request carries the idempotency key.
- :class:`FolderSender`: ``<dir>/<dossier code>/<file>`` for each file, then ``manifest.json``,
  each written to a temporary name, fsynced, renamed into place and its folder fsynced. A
  reader that waits for the manifest never sees half a dossier.

A failure raises :class:`TargetError`, which says whether trying again later may help.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol, Self

import httpx
from pydantic import ValidationError

from fleet.delivery.config import FolderTarget, HttpTarget, MutualTls, OAuth2ClientCredentials
from fleet.delivery.contract import (
    DOCUMENT_PATH,
    IDEMPOTENCY_HEADER,
    MANIFEST_FILE,
    MANIFEST_PATH,
    SHA256_HEADER,
    Acknowledgement,
    DocumentReceipt,
    Manifest,
    ManifestReceipt,
    file_name,
)
from fleet.durable import fsync_dir, make_dirs
from fleet.errors import FleetError

log = logging.getLogger(__name__)

SAFE_PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RETRYABLE_STATUS = frozenset({401, 403, 408, 425, 429, 500, 502, 503, 504})
"""Answers worth another attempt: the receiver's trouble, or credentials an admin may fix."""


class TargetError(FleetError, IOError):
    """One attempt at a target failed; ``retryable`` says whether a later one may succeed."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


def safe_part(text: str, what: str) -> str:
    """``text`` as one path segment (a dossier code, a file name), or a permanent error: a
    name with a slash or a leading dot never becomes a path on the share or the receiver."""
    if not SAFE_PATH_PART.match(text) or ".." in text:
        raise TargetError(f"{what} is not usable as a file name", retryable=False)
    return text


class Sender(Protocol):
    """What the worker asks of a target."""

    name: str

    def send_document(self, dossier_code: str, name: str, key: str, sha256: str, path: Path) -> DocumentReceipt: ...

    def send_manifest(self, manifest: Manifest) -> ManifestReceipt: ...

    def close(self) -> None: ...


class FolderSender:
    """A folder drop on a mounted share.

    >>> import hashlib, tempfile
    >>> from fleet.delivery.contract import ManifestDocument, document_key
    >>> root = Path(tempfile.mkdtemp()); pdf = root / "in.pdf"; _ = pdf.write_bytes(b"%PDF-1.7 signed")
    >>> sha = hashlib.sha256(pdf.read_bytes()).hexdigest(); key = document_key("D1", "D1.1", sha)
    >>> sender = FolderSender(FolderTarget(name="share", dir=root / "share"))
    >>> sender.send_document("D1", "D1.1", key, sha, pdf).duplicate
    False
    >>> sender.send_document("D1", "D1.1", key, sha, pdf).duplicate
    True
    >>> doc = ManifestDocument(name="D1.1", file="D1.1.pdf", kind="component", sha256=sha, size=15, pages=1,
    ...                        idempotency_key=key, operator_kind=None, signing_level=None, signing_certificate=None)
    >>> len(sender.send_manifest(Manifest(dossier_code="D1", procedure_code=None, unit_code=None,
    ...                                   documents=[doc])).acknowledged)
    1
    >>> sorted(p.name for p in (root / "share" / "D1").iterdir())
    ['D1.1.pdf', 'manifest.json']
    """

    def __init__(self, target: FolderTarget) -> None:
        self.name = target.name
        self.root = target.dir
        self.fsync = target.fsync

    def _write(self, final: Path, source: Path | None, data: bytes | None) -> None:
        make_dirs(final.parent, fsync=self.fsync)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                if source is not None:
                    with source.open("rb") as src:
                        shutil.copyfileobj(src, out, 1024 * 1024)
                else:
                    out.write(data or b"")
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            Path(tmp).replace(final)
            if self.fsync:
                fsync_dir(final.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def send_document(self, dossier_code: str, name: str, key: str, sha256: str, path: Path) -> DocumentReceipt:
        final = self.root / safe_part(dossier_code, "dossier code") / safe_part(file_name(name), "document name")
        receipt = f"{final.parent.name}/{final.name}"
        try:
            if final.is_file() and final.stat().st_size == path.stat().st_size and _same_file(final, path):
                return DocumentReceipt(idempotency_key=key, receipt=receipt, duplicate=True)
            self._write(final, path, None)
        except FileNotFoundError as exc:
            raise TargetError(f"file missing: {exc.filename and Path(exc.filename).name}", retryable=True) from None
        except OSError as exc:  # the share unmounted, full, read-only: an admin can fix it
            raise TargetError(f"share not writable ({exc.strerror or type(exc).__name__})", retryable=True) from None
        return DocumentReceipt(idempotency_key=key, receipt=receipt, duplicate=False)

    def send_manifest(self, manifest: Manifest) -> ManifestReceipt:
        folder = self.root / safe_part(manifest.dossier_code, "dossier code")
        try:
            self._write(folder / MANIFEST_FILE, None, manifest.canonical())
        except OSError as exc:
            raise TargetError(f"share not writable ({exc.strerror or type(exc).__name__})", retryable=True) from None
        return ManifestReceipt(dossier_code=manifest.dossier_code, acknowledged=[
            Acknowledgement(name=d.name, sha256=d.sha256, idempotency_key=d.idempotency_key,
                            receipt=f"{folder.name}/{d.file}") for d in manifest.documents])

    def close(self) -> None:
        return None


def _same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1024 * 1024), fb.read(1024 * 1024)
            if x != y:
                return False
            if not x:
                return True


class _OAuth2Token:
    """A client-credentials bearer token, fetched when missing or about to expire."""

    def __init__(self, auth: OAuth2ClientCredentials, client: httpx.Client) -> None:
        self.auth = auth
        self.client = client
        self.secret = auth.client_secret_file.read_text(encoding="utf-8").strip()
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def header(self, *, fresh: bool = False) -> str:
        with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._expires:
                self._fetch()
            return f"Bearer {self._token}"

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self.auth.scope:
            form["scope"] = self.auth.scope
        try:
            answer = self.client.post(self.auth.token_url, data=form, auth=(self.auth.client_id, self.secret))
        except httpx.HTTPError as exc:
            raise TargetError(f"token endpoint unreachable ({type(exc).__name__})", retryable=True) from None
        if answer.status_code != 200:
            raise TargetError(f"token endpoint answered {answer.status_code}", retryable=True)
        try:
            body = answer.json()
            self._token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise TargetError("token endpoint answered without an access_token", retryable=True) from None
        self._expires = time.monotonic() + max(lifetime - 30.0, lifetime / 2)


class HttpSender:
    """The contract's HTTP endpoint. One keep-alive client per target.

    Not here: following redirects (a receiver that moved is an admin's change to the config)."""

    def __init__(self, target: HttpTarget) -> None:
        self.name = target.name
        self.base = target.url.rstrip("/")
        tls = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file is not None else None)
        if isinstance(target.auth, MutualTls):
            tls.load_cert_chain(str(target.auth.cert_file), str(target.auth.key_file))
        self.client = httpx.Client(timeout=target.timeout_s, verify=tls, follow_redirects=False)
        self.token = (_OAuth2Token(target.auth, self.client)
                      if isinstance(target.auth, OAuth2ClientCredentials) else None)

    def _put(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        for fresh in (False, True):
            if self.token is not None:
                headers["Authorization"] = self.token.header(fresh=fresh)
            try:
                answer = self.client.put(self.base + path, content=content, headers=headers)
            except httpx.TimeoutException:
                raise TargetError("timed out", retryable=True) from None
            except httpx.HTTPError as exc:  # refused, reset, cut mid-upload
                raise TargetError(f"connection failed ({type(exc).__name__})", retryable=True) from None
            if answer.status_code != 401 or self.token is None or fresh:
                return answer
        raise TargetError("unauthorized", retryable=True)  # pragma: no cover - the loop returns

    @staticmethod
    def _check(answer: httpx.Response) -> None:
        if answer.status_code in (200, 201):
            return
        raise TargetError(f"HTTP {answer.status_code}", retryable=answer.status_code in RETRYABLE_STATUS)

    def send_document(self, dossier_code: str, name: str, key: str, sha256: str, path: Path) -> DocumentReceipt:
        url = DOCUMENT_PATH.format(dossier_code=safe_part(dossier_code, "dossier code"),
                                   name=safe_part(file_name(name), "document name"))
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise TargetError("signed file missing from the store", retryable=True) from None
        answer = self._put(url, content, {IDEMPOTENCY_HEADER: key, SHA256_HEADER: sha256,
                                          "Content-Type": "application/pdf"})
        self._check(answer)
        try:
            receipt = DocumentReceipt.model_validate_json(answer.content)
        except ValidationError:
            raise TargetError("receiver's answer does not fit the contract", retryable=True) from None
        if receipt.idempotency_key != key:
            raise TargetError("receiver acknowledged another key", retryable=True)
        return receipt

    def send_manifest(self, manifest: Manifest) -> ManifestReceipt:
        url = MANIFEST_PATH.format(dossier_code=safe_part(manifest.dossier_code, "dossier code"))
        answer = self._put(url, manifest.canonical(), {IDEMPOTENCY_HEADER: manifest.key(),
                                                       "Content-Type": "application/json"})
        self._check(answer)
        try:
            return ManifestReceipt.model_validate_json(answer.content)
        except ValidationError:
            raise TargetError("receiver's answer does not fit the contract", retryable=True) from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def sender_for(target: HttpTarget | FolderTarget) -> Sender:
    """The sender of a configured target."""
    if isinstance(target, HttpTarget):
        return HttpSender(target)
    return FolderSender(target)
