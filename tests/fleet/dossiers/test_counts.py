"""The counts per unit and month received (``dossier_counts``) against a fresh count of the
dossiers, on SQLite and PostgreSQL, after every step of a seeded random sequence of every kind
of write the fleet makes: received lists (new dossiers, corrections that move a dossier to
another unit or month, re-sent rows), pages through the ingest (components, results ``-KQ<n>``,
rejected pages, codes that match nothing, a dossier received after it was digitized),
``dossier_closed`` events (components, results, a supplement that reopens a dossier and is
renumbered), walk-ins named later, a units import, the full recount, and
bulk SQL writes that bypass the fleet's code (deleting and clearing dossiers, as a benchmark's
reset does). On PostgreSQL also two writers at once, as two fleet nodes: received imports and
the ingest's reconciliation on the same dossiers and the same (unit, month) rows.

The table is kept by the database, so a writer added later cannot forget it; the last test
shows the comparison fails when the table is not kept (a trigger dropped)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, text, update
from sqlalchemy.exc import OperationalError

from fleet.dossiers import counts, registry
from fleet.dossiers.models import Dossier
from protocol.messages import Message, Operator
from tests.fleet.conftest import state_of
from tests.fleet.dossiers.conftest import closed, load_units, page, send, status

H = "000.00.00.H99-"
UNITS = ("99001", "99003", "99004")
"""Valid throughout."""
BEFORE_REFORM = (*UNITS, "99002")
"""The units valid before 1/7/2025 (99002 ends on 30/6/2025)."""
FIRST = date(2025, 5, 1)
DAYS = 150  # May to September 2025, across 1/7/2025
KIOSKS = {"kiosk-a": "99001", "kiosk-c": "99003", "kiosk-d": "99004"}
NEW_UNIT = "000.00.12.H99,[THỬ - mã giả định] Sở Tư pháp,agency,99,2004-01-01,\n"


def _equal(client: TestClient, step: str) -> counts.Counts:
    with state_of(client).sessions() as session:
        connection = session.connection()
        kept, fresh = counts.kept(connection), counts.fresh(connection)
    assert kept == fresh, f"after {step}: kept {sorted(set(kept.items()) ^ set(fresh.items()))}"
    return kept


class Sequence:
    """Random writes of every kind, each followed by the comparison."""

    def __init__(self, client: TestClient, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.codes = [f"{H}{n:04d}" for n in range(60)]
        self.moment = datetime(2025, 5, 1, 3, tzinfo=UTC)
        self.walk_ins = 0

    def _when(self) -> datetime:
        return datetime.combine(FIRST + timedelta(days=self.rng.randrange(DAYS)), datetime.min.time(), UTC) \
            + timedelta(hours=self.rng.randrange(24))

    def _row(self, code: str) -> dict[str, str]:
        got = FIRST + timedelta(days=self.rng.randrange(DAYS))
        unit = self.rng.choice(BEFORE_REFORM if got < date(2025, 7, 1) else UNITS)
        return {"code": self.rng.choice([code, code.lower(), f" {code} "]), "procedure_code": "1.001",
                "unit_code": unit, "received_date": got.isoformat(), "due_date": (got + timedelta(days=15)).isoformat()}

    def receive(self) -> None:
        rows = {c: self._row(c) for c in self.rng.sample(self.codes, 12)}
        response = self.client.post("/api/v1/dossiers/received", json=list(rows.values()))
        assert response.status_code == 200, response.text
        again = self.client.post("/api/v1/dossiers/received", json=list(rows.values()))  # re-sent: nothing changes
        assert again.json()["inserted"] == again.json()["updated"] == 0

    def pages(self) -> None:
        messages: list[Message] = []
        for code in self.rng.sample(self.codes, 10):
            kiosk = self.rng.choice(sorted(KIOSKS))
            kind = self.rng.random()
            named = f"{code}-KQ{self.rng.randrange(1, 3)}" if kind < 0.3 else code
            if kind > 0.9:
                named = code.replace("H99", "H9G")  # a typo: matches nothing
            messages.append(page(kiosk, named, self._when(), ok=self.rng.random() > 0.2))
        send(self.client, messages)

    def documents(self) -> None:
        messages: list[Message] = []
        for code in self.rng.sample(self.codes, 4):
            names = [f"{code}.1.pdf"] if self.rng.random() < 0.6 else [f"{code}-KQ1.pdf"]
            operator = Operator(kind=self.rng.choice(["unit_staff", "postal_staff"]), id="op-0a0b0c0d0e")
            messages.append(closed(self.rng.choice(sorted(KIOSKS)), code, names, self._when(), operator=operator))
            if self.rng.random() < 0.5:  # a supplement: the dossier reopened, its number given again
                messages.append(closed(self.rng.choice(sorted(KIOSKS)), code, [f"{code}.1.pdf", f"{code}.2.pdf"],
                                       self._when()))
        send(self.client, messages)

    def walk_in(self) -> None:
        self.walk_ins += 1
        name = f"WALKIN-{self.walk_ins:08X}"
        send(self.client, [closed(self.rng.choice(sorted(KIOSKS)), None, [f"{name}.1.pdf"], self._when())])
        code = self.rng.choice(self.codes)
        response = self.client.post(f"/api/v1/dossiers/{name}/name", json={"code": code})
        assert response.status_code == 200, response.text

    def units(self) -> None:
        load_units(self.client, NEW_UNIT)

    def recount(self) -> None:
        assert self.client.post("/api/v1/dossiers/recount").status_code == 200

    def bulk_sql(self) -> None:
        gone = self.rng.sample(self.codes, 3)
        with state_of(self.client).sessions.begin() as session:
            session.execute(delete(Dossier).where(Dossier.code.in_(gone)))
            session.execute(update(Dossier).where(Dossier.code.in_(self.rng.sample(self.codes, 5)))
                            .values(component_at=None, result_at=None))

    def run(self, steps: int) -> counts.Counts:
        kinds = [self.receive, self.pages, self.documents, self.walk_in, self.units, self.recount, self.bulk_sql]
        for kind in kinds:  # each kind at least once, then at random
            kind()
            _equal(self.client, kind.__name__)
        for _ in range(steps):
            kind = self.rng.choices(kinds, weights=[4, 5, 3, 1, 1, 1, 1])[0]
            kind()
            _equal(self.client, kind.__name__)
        return _equal(self.client, "the sequence")


def _setup(client: TestClient) -> None:
    load_units(client)
    send(client, [status(kiosk, unit, datetime(2025, 4, 1, tzinfo=UTC)) for kiosk, unit in KIOSKS.items()])


def test_every_writer_keeps_the_counts_equal_to_a_fresh_count(api: TestClient) -> None:
    _setup(api)
    final = Sequence(api, seed=13).run(steps=25)
    # The sequence counted something of each kind (a check that cannot pass on an empty table).
    assert sum(n for n, _, _ in final.values()) > 20
    assert sum(d for _, d, _ in final.values()) > 0 and sum(r for _, _, r in final.values()) > 0
    assert len({p for _, p in final}) > 3 and "99002" in {u for u, _ in final}


def test_the_recount_rebuilds_a_damaged_table(api: TestClient) -> None:
    _setup(api)
    Sequence(api, seed=7).run(steps=3)
    with state_of(api).sessions.begin() as session:
        session.execute(text("UPDATE dossier_counts SET received = received + 5, digitized = 0"))
        session.execute(text("INSERT INTO dossier_counts VALUES ('99005', '2025-05', 3, 2, 1)"))
    with state_of(api).sessions() as session:
        assert counts.kept(session.connection()) != counts.fresh(session.connection())
    assert api.post("/api/v1/dossiers/recount").status_code == 200
    _equal(api, "the recount")


def test_the_comparison_fails_when_a_write_is_not_counted(api: TestClient) -> None:
    """The check above is not blind: with the update trigger gone, the ingest's reconciliation
    of a page (an update of a received dossier) leaves the table behind, and the comparison says so."""
    _setup(api)
    code = f"{H}9999"
    api.post("/api/v1/dossiers/received", json=[{"code": code, "unit_code": "99001", "received_date": "2025-08-02"}])
    _equal(api, "a received dossier")
    with state_of(api).sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        on = " ON dossiers" if dialect == "postgresql" else ""
        session.execute(text(f"DROP TRIGGER dossier_counts_update{on}"))
    send(api, [page("kiosk-a", code, datetime(2025, 8, 3, 3, tzinfo=UTC))])
    with pytest.raises(AssertionError, match="after a page"):
        _equal(api, "a page")


def _retrying(work: Any, deadlocks: list[int]) -> None:
    """A transaction PostgreSQL aborted to break a deadlock is tried again, as the ingest does."""
    while True:
        try:
            work()
            return
        except OperationalError as exc:
            if "deadlock" not in str(exc):
                raise
            deadlocks.append(1)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_nodes_writing_at_once_keep_the_counts(api: TestClient) -> None:
    """Two threads, each its own connection, as two fleet nodes: one imports received lists
    through the API (new dossiers and corrections moving them between units and months), the
    other folds pages and documents of the same dossiers in, many small transactions each,
    started together. Deadlocks between them are expected (each locks unit-month counts in its
    own order): the import route and the ingest run again what PostgreSQL undid, and every
    import answers 200."""
    _setup(api)
    sessions = state_of(api).sessions
    codes_ = [f"{H}{n:04d}" for n in range(400)]
    start = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []
    deadlocks: list[int] = []

    def received() -> None:
        local = random.Random(1)
        start.wait()
        for _ in range(30):
            chunk = local.sample(codes_, 40)
            items = []
            for code in chunk:
                got = date(2025, 7 + local.randrange(3), 1 + local.randrange(28))
                items.append({"code": code, "procedure_code": "1.001", "unit_code": local.choice(UNITS),
                              "received_date": got.isoformat()})
            # Through the API: the import route itself runs again what the database undid.
            response = api.post("/api/v1/dossiers/received", json=items)
            assert response.status_code == 200, response.text

    def ingest() -> None:
        local = random.Random(2)
        start.wait()
        for n in range(60):
            batch = []
            for code in sorted(local.sample(codes_, 15)):
                when = datetime(2025, 7, 1, tzinfo=UTC) + timedelta(hours=local.randrange(2000))
                named = f"{code}-KQ1" if local.random() < 0.3 else code
                batch.append({"page_id": f"p{n}-{code}", "device_id": "kiosk-a", "unit_code": "99001",
                              "dossier_code": named, "dropped": False, "quality": None, "captured_at": when})

            def work(batch: list[dict[str, Any]] = batch) -> None:
                with sessions.begin() as session:
                    registry.record_pages(session.connection(), batch)
            _retrying(work, deadlocks)

    def guarded(fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported by the test below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in (received, ingest)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    final = _equal(api, "two writers at once")
    assert sum(n for n, _, _ in final.values()) > 300 and sum(d for _, d, _ in final.values()) > 100
