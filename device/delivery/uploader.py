"""Page files to the fleet over HTTP, idempotent by sha256 (see the device <-> fleet contract):
``HEAD {fleet}/api/v1/files/{sha256}`` (200: already held), else ``PUT`` the raw bytes with
``Content-Type``. The local copy is deleted only after 200/201. A file encrypted at rest is
decrypted in memory just before it is sent; one that cannot be opened (damaged, or sealed under
a key this device no longer holds) is set aside with a clear error and the others go on.

An enrolled device (``identity``) talks HTTPS trusting only the fleet CA and signs every request
with its key (:class:`device.http_auth.DeviceAuth`; a PUT's body hash is the file's sha256): the
signature says which device it is. Unsigned (development, no identity), the PUT names the device
in ``X-Sohoa-Device`` instead: only a development stand-in takes that; the fleet answers 401 to
unsigned uploads, so the files stay in the outbox and are retried with backoff. A 401 saying
``revoked`` or ``expired`` stops the uploader for good (:attr:`Uploader.revoked`, ``on_revoked``):
files stay in the outbox and nobody retries forever.

>>> uploader = Uploader(outbox, "http://127.0.0.1:8000", "kiosk-0001", UploadConfig())  # doctest: +SKIP
>>> uploader.upload_due()  # doctest: +SKIP
3
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import httpx

from device.config import UploadConfig
from device.delivery.outbox import Outbox, PendingFile
from device.enroll import REVOKED_REASONS, fleet_base
from device.errors import OutboxFileDamaged, OutboxKeyError
from device.http_auth import DeviceAuth
from provisioning.identity import DeviceIdentity

log = logging.getLogger(__name__)


class Uploader:
    """Delivers the outbox's files; call :meth:`run` in a thread, :meth:`stop` to end it."""

    def __init__(self, outbox: Outbox, fleet_url: str | None, device_id: str, config: UploadConfig, *,
                 identity: DeviceIdentity | None = None, on_revoked: Callable[[str], None] | None = None) -> None:
        """``identity``: sign requests as this enrolled device (its enrollment answer's fleet
        URL wins over ``fleet_url``, which may then be None); ``on_revoked(reason)`` runs once
        when the fleet refuses it."""
        if fleet_url is None and identity is None:
            raise ValueError("an uploader needs a fleet URL or an identity whose enrollment names one")
        self.outbox = outbox
        self._fleet_url = (fleet_url or "").rstrip("/")
        self.device_id = device_id
        self.config = config
        self.identity = identity
        self._on_revoked = on_revoked
        self._stop = threading.Event()
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.uploaded = 0
        self.failures = 0
        self.revoked: str | None = None
        """Why the fleet refuses this device's certificate ("revoked", "expired"), once it did."""

    @property
    def fleet_url(self) -> str:
        """Where files go ("" for an identity not enrolled yet and no configured URL)."""
        if self.identity is None:
            return self._fleet_url
        return fleet_base(self.identity, self._fleet_url or None) or ""

    def _http(self) -> httpx.Client:
        """The HTTP client, made on first use (an identity is read once enrolled)."""
        with self._lock:
            if self._client is None:
                if self.identity is not None:
                    self._client = httpx.Client(timeout=self.config.timeout_s, verify=self.identity.ssl_context(),
                                                auth=DeviceAuth(self.identity))
                else:
                    self._client = httpx.Client(timeout=self.config.timeout_s)
            return self._client

    def renewed(self) -> None:
        """The certificate changed: the next request builds a client with the new one."""
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            old.close()

    def url(self, sha256: str) -> str:
        return f"{self.fleet_url}/api/v1/files/{sha256}"

    def _refused_for_good(self, response: httpx.Response) -> bool:
        """A 401 revoked/expired: stop uploading, say so once; True when that happened."""
        if response.status_code != 401 or self.identity is None:
            return False
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if detail not in REVOKED_REASONS:
            return False
        if self.revoked is None:
            self.revoked = str(detail)
            log.error("the fleet refuses this device's certificate (%s): uploads stop; files stay here", detail)
            self.stop()
            if self._on_revoked is not None:
                self._on_revoked(self.revoked)
        return True

    def _backoff(self, attempts: int) -> float:
        return float(min(self.config.retry_max_s, self.config.retry_min_s * (2 ** min(attempts, 20))))

    def upload_one(self, item: PendingFile) -> bool:
        """Try one file; True when the fleet holds it (and the local copy is gone)."""
        url = self.url(item.sha256)
        if self.revoked is not None:
            return False
        try:
            client = self._http()
            head = client.head(url)
            if self._refused_for_good(head):
                return False
            if head.status_code == 200:
                self.outbox.file_delivered(item.sha256)
                return True
            try:
                data = self.outbox.read_file(item.sha256)
            except FileNotFoundError:
                # Deleted after delivery while its row could not go (full disk), yet the fleet
                # does not hold it: nothing left to send.
                log.error("an outbox file is missing and the fleet does not hold it; it must be rescanned")
                self.outbox.file_delivered(item.sha256)
                return False
            except (OutboxFileDamaged, OutboxKeyError) as exc:
                log.error("%s: it is kept in %s and must be rescanned", exc, self.outbox.unreadable_dir)
                self.outbox.set_aside(item.sha256)
                return False
            if self.identity is not None:
                # Signed with the file's name as the body hash: a damaged copy cannot pass as the page.
                # The signature names the device; a header claiming it would prove nothing.
                response = client.put(url, content=data, headers={"Content-Type": item.content_type},
                                      auth=DeviceAuth(self.identity, item.sha256))
            else:
                response = client.put(url, content=data, headers={"Content-Type": item.content_type,
                                                                  "X-Sohoa-Device": self.device_id})
        except httpx.HTTPError as exc:
            self._retry(item, f"fleet unreachable ({type(exc).__name__})")
            return False
        except OSError as exc:
            log.error("cannot read an outbox file: %s", exc.strerror)
            self._retry(item, "local read failed")
            return False
        if self._refused_for_good(response):
            return False
        if response.status_code in (200, 201):
            self.outbox.file_delivered(item.sha256)
            self.uploaded += 1
            return True
        self._retry(item, f"fleet answered {response.status_code}")
        return False

    def _retry(self, item: PendingFile, why: str) -> None:
        self.failures += 1
        delay = self._backoff(item.attempts)
        level = logging.WARNING if item.attempts in (0, 5, 10) else logging.DEBUG
        log.log(level, "file upload postponed %.0f s: %s", delay, why)
        self.outbox.file_retry(item.sha256, delay)

    def upload_due(self) -> int:
        """Upload every file that is due now; returns how many the fleet now holds."""
        done = 0
        while not self._stop.is_set():
            due = self.outbox.pending_files()
            if not due:
                break
            progress = 0
            for item in due:
                if self._stop.is_set():
                    break
                if self.upload_one(item):
                    progress += 1
            done += progress
            if progress == 0:
                break
        return done

    def run(self) -> None:
        while not self._stop.is_set() and self.revoked is None:
            try:
                self.upload_due()
            except (OSError, sqlite3.Error) as exc:  # e.g. a full disk while recording a retry
                log.warning("uploader: %s; retrying", exc)
                self._stop.wait(1.0)
            next_due = self.outbox.next_file_due()
            wait = 5.0 if next_due is None else min(5.0, max(0.05, next_due - time.time()))
            with self.outbox.changed:
                if not self._stop.is_set():
                    self.outbox.changed.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        with self.outbox.changed:
            self.outbox.changed.notify_all()

    def close(self) -> None:
        self.stop()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
