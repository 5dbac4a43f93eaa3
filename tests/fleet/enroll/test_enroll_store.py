"""SqlEnrollmentStore on SQLite and PostgreSQL: the token's device count under a race, serials
larger than any SQL integer, revocation."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from fleet.db import make_engine, migrate, session_factory
from fleet.enroll.store import SqlEnrollmentStore
from provisioning.ca import IssuedCertificate
from provisioning.errors import CertificateRejected
from provisioning.tokens import Enrollment, issue_token


def test_consume_token_race_and_big_serials(db_url: str) -> None:
    """Bad input: 12 threads spending a 3-device token at once (exactly 3 may win), spending a
    withdrawn token; a serial of 2**159 - 1 (159 bits: no BIGINT holds it) must come back intact."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        store = SqlEnrollmentStore(session_factory(engine))
        _, token = issue_token("00001", ttl=dt.timedelta(hours=1), max_devices=3)
        store.add_token(token)
        start = threading.Barrier(12)
        wins: list[bool] = []
        lock = threading.Lock()

        def spend() -> None:
            start.wait(10)
            won = store.consume_token(token.token_id)
            with lock:
                wins.append(won)

        threads = [threading.Thread(target=spend) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(wins) == [False] * 9 + [True] * 3
        stored = store.token(token.token_id)
        assert stored is not None and stored.used == 3

        _, other = issue_token("00001", ttl=dt.timedelta(hours=1), max_devices=5)
        store.add_token(other)
        assert store.revoke_token(other.token_id, dt.datetime.now(dt.UTC)) is not None
        assert store.consume_token(other.token_id) is False

        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        big = 2**159 - 1
        store.add_certificate(IssuedCertificate("kiosk-a", "device", big, now, now + dt.timedelta(days=1), "ab" * 32,
                                                "cd" * 32, b"pem"))
        latest = store.latest_certificate("kiosk-a")
        assert latest is not None and latest.serial == big
        assert big not in store.revoked_serials()
        assert [r.serial for r in store.revoke_device("kiosk-a", now)] == [big]
        assert big in store.revoked_serials() and big - 1 not in store.revoked_serials()
        assert [r.serial for r in store.revoked()] == [big]
        assert store.revoke_device("kiosk-a", now) == []  # already revoked: nothing new
    finally:
        engine.dispose()


def test_renewal_racing_a_revocation_never_outlives_it(db_url: str) -> None:
    """Fault tried: certificates of a device are stored (renewals) while an admin revokes it, from
    threads at once, 20 rounds. Whatever the order, afterwards no certificate of the device is
    left unrevoked: each store either lands before the revocation (and is revoked with the rest)
    or is refused with 'revoked'. On SQLite and PostgreSQL."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        store = SqlEnrollmentStore(session_factory(engine))
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        refused: list[str] = []
        _, token = issue_token("00001", ttl=dt.timedelta(hours=1), max_devices=20)
        for round_ in range(20):
            device = f"kiosk-r{round_}"
            store.save_enrollment(Enrollment.start(token, device_id=device, public_key_sha256="ab" * 32), "csr")
            store.add_certificate(IssuedCertificate(device, "device", 10_000 + round_, now,
                                                    now + dt.timedelta(days=1), "ab" * 32, "cd" * 32, b"pem"))
            start = threading.Barrier(2)

            def renew(device: str = device, serial: int = 20_000 + round_,
                      start: threading.Barrier = start) -> None:
                start.wait(10)
                try:
                    store.add_certificate(IssuedCertificate(device, "device", serial, now,
                                                            now + dt.timedelta(days=1), "ab" * 32, "cd" * 32, b"pem"))
                except CertificateRejected as exc:
                    refused.append(exc.reason)

            def revoke(device: str = device, start: threading.Barrier = start) -> None:
                start.wait(10)
                store.revoke_device(device, now)

            threads = [threading.Thread(target=renew), threading.Thread(target=revoke)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            revoked = store.revoked_serials()
            left = [c.serial for c in store.recent_certificates(device, limit=5) if c.serial not in revoked]
            assert left == [], f"round {round_}: certificate {left} outlived the revocation"
        assert set(refused) <= {"revoked"}
        # After a revocation, a late store is refused outright.
        with pytest.raises(CertificateRejected) as late:
            store.add_certificate(IssuedCertificate("kiosk-r0", "device", 99, now, now + dt.timedelta(days=1),
                                                    "ab" * 32, "cd" * 32, b"pem"))
        assert late.value.reason == "revoked"
    finally:
        engine.dispose()
