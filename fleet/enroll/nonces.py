"""Signed requests' nonces in the database, so that every fleet node on it refuses a replay,
whichever node saw the request first.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> nonces = SqlNonces(session_factory(engine))
>>> nonces.remember("kiosk-1", "n" * 16, 100, horizon=0), nonces.remember("kiosk-1", "n" * 16, 100, horizon=0)
(True, False)
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from fleet.db import bulk_insert
from fleet.enroll.models import RequestNonce

PRUNE_EVERY_S = 60.0
"""How often a node deletes nonces too old to be replayed (a request that old is refused as stale)."""


class SqlNonces:
    """:class:`provisioning.requestauth.NonceStore` on the fleet's database: the row's primary key
    (device, nonce) refuses the second insert, atomically across nodes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._pruned = 0.0
        self._lock = threading.Lock()

    def remember(self, device_id: str, nonce: str, ts: int, horizon: float) -> bool:
        with self.sessions.begin() as session:
            fresh = bulk_insert(session.connection(), RequestNonce.__table__,
                                [{"device_id": device_id, "nonce": nonce, "ts": ts}]) == 1
        self._prune(horizon)
        return fresh

    def _prune(self, horizon: float) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._pruned < PRUNE_EVERY_S:
                return
            self._pruned = now
        with self.sessions.begin() as session:
            session.execute(delete(RequestNonce).where(RequestNonce.ts < horizon))
