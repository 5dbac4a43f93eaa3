"""Publishing the CRL: sign it from the database's revocations, write the file the broker reads,
SIGHUP the broker, keep the bytes the API serves. After every revocation and on a timer (a CRL is
valid 7 days, and the broker refuses *every* client once it lapses).

>>> publisher = CrlPublisher(ca, store, crl_file=Path("broker/crl.pem"),
...                          broker_pid_file=Path("/run/mosquitto.pid"))          # doctest: +SKIP
>>> publisher.publish()                                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fleet.enroll.store import SqlEnrollmentStore
from provisioning.ca import CertificateAuthority, reload_broker
from provisioning.files import write_public

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """One CRL written: how many serials it lists, and whether the broker was told."""

    revoked: int
    written: Path | None
    broker_reloaded: bool
    at: datetime


class CrlPublisher:
    """Signs and writes the CRL; thread-safe (a revocation and the timer may meet)."""

    def __init__(self, ca: CertificateAuthority, store: SqlEnrollmentStore, *, crl_file: Path | None,
                 broker_pid_file: Path | None, clock: Callable[[], datetime] | None = None) -> None:
        self.ca = ca
        self.store = store
        self.crl_file = crl_file
        self.broker_pid_file = broker_pid_file
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._pem: bytes | None = None
        self._file_mtime: int | None = None

    def current_pem(self) -> bytes:
        """The CRL last published (what the broker holds); signed now if none was yet. With a
        ``crl_file``, that file as it is now: ``sohoa-fleet device revoke`` rewrites it from
        another process, and this copy must not lag behind the broker's."""
        with self._lock:
            if self.crl_file is not None:
                try:
                    mtime = self.crl_file.stat().st_mtime_ns
                    if mtime != self._file_mtime:
                        self._pem, self._file_mtime = self.crl_file.read_bytes(), mtime
                except OSError:
                    pass  # not written yet (or gone): the copy in memory, or a fresh one
            if self._pem is None:
                self._pem = self.ca.crl(self.store.revoked(), now=self.clock())
            return self._pem

    def publish(self) -> Published:
        """Sign a fresh CRL, replace the file atomically, SIGHUP the broker."""
        with self._lock:
            revoked = self.store.revoked()
            now = self.clock()
            pem = self.ca.crl(revoked, now=now)
            if self.crl_file is not None:
                write_public(self.crl_file, pem)
            self._pem = pem
            reloaded = self._reload_broker()
            log.info("CRL published: %d revoked certificate(s)%s", len(revoked),
                     ", broker reloaded" if reloaded else "")
            return Published(len(revoked), self.crl_file, reloaded, now)

    def _reload_broker(self) -> bool:
        if self.broker_pid_file is None:
            return False
        try:
            pid = int(self.broker_pid_file.read_text().strip())
            reload_broker(pid)
        except (OSError, ValueError) as exc:
            # The file is written and the broker reads it at its next start or reload: say so loudly.
            log.error("could not signal the broker to reload its CRL (pid file %s): %s", self.broker_pid_file,
                      type(exc).__name__)
            return False
        return True
