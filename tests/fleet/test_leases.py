"""Job leases and the shared nonce store on SQLite and the real PostgreSQL, each node with its
own engine (its own connections), as two fleet processes would have."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.db import make_engine, migrate, session_factory
from fleet.enroll.models import RequestNonce
from fleet.enroll.nonces import SqlNonces
from fleet.leases import LeaseKeeper, holders


@pytest.fixture
def two_nodes(db_url: str) -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session]]]:
    engines: list[Engine] = [make_engine(db_url), make_engine(db_url)]
    migrate(engines[0])
    try:
        yield session_factory(engines[0]), session_factory(engines[1])
    finally:
        for engine in engines:
            engine.dispose()


def test_a_lease_has_one_holder_and_moves_when_it_expires(
        two_nodes: tuple[sessionmaker[Session], sessionmaker[Session]]) -> None:
    first, second = two_nodes
    a = LeaseKeeper(first, node="node-a", ttl_s=1.5)
    b = LeaseKeeper(second, node="node-b", ttl_s=1.5)
    mine, theirs = a.lease("alerts"), b.lease("alerts")
    a.renew_all()
    b.renew_all()
    assert mine.held() and not theirs.held()
    b.renew_all()
    assert not theirs.held(), "a renewed lease stays where it is"
    a.renew_all()
    # node-a stops renewing (killed): within the ttl it stops believing it holds the lease, and
    # node-b, renewing on its own thread, takes it once it has expired by the database's clock.
    stop = threading.Event()
    b.start()
    try:
        assert theirs.wait_turn(stop, 3600), "node-b never took the expired lease"
        assert theirs.held() and not mine.held()
        with second() as session:
            assert holders(session)["alerts"][0] == "node-b"
    finally:
        b.stop()
    with second() as session:
        assert holders(session)["alerts"][1] == 0.0, "a clean stop releases"
    a.renew_all()
    assert mine.held()


def test_a_replayed_nonce_is_refused_by_the_other_node_and_old_ones_go(
        two_nodes: tuple[sessionmaker[Session], sessionmaker[Session]]) -> None:
    first, second = two_nodes
    a, b = SqlNonces(first), SqlNonces(second)
    assert a.remember("kiosk-0001", "n" * 16, 1_000, horizon=0)
    assert not b.remember("kiosk-0001", "n" * 16, 1_000, horizon=0)
    assert b.remember("kiosk-0002", "n" * 16, 2_000, horizon=0), "nonces are per device"
    later = SqlNonces(first)  # its first call prunes what is too old to be replayed (then once a minute)
    assert later.remember("kiosk-0001", "m" * 16, 5_000, horizon=4_000)
    with first() as session:
        assert list(session.scalars(select(RequestNonce.nonce))) == ["m" * 16]
