"""The full recount, in SQL, on SQLite and PostgreSQL: from the pages and documents the ingest
stored, it rebuilds exactly what the ingest kept incrementally (a component's unit from the
earliest page among two devices, a result only, a code in lower case or ``-KQ(n)``, rejected
and dropped pages, documents with their operator, a walk-in); it clears a dossier nothing
digitizes, re-creates one only pages know, and a second run rewrites nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from fleet.dossiers.models import Dossier
from protocol.messages import Operator
from tests.fleet.conftest import state_of
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status

H = "000.00.00.H99-260110-"
COLUMNS = ("code", "walk_in", "component_at", "result_at", "digitized_unit", "device_id", "operator_kind",
           "operator_id")


def _rows(client: TestClient) -> dict[str, tuple[Any, ...]]:
    with state_of(client).sessions() as session:
        table = Dossier.__table__.c
        return {r[0]: tuple(r) for r in session.execute(select(*[table[c] for c in COLUMNS]))}


def _updated(client: TestClient) -> dict[str, Any]:
    with state_of(client).sessions() as session:
        return {code: stamp for code, stamp in session.execute(select(Dossier.code, Dossier.updated_at))}


def test_the_recount_rebuilds_what_the_ingest_kept(api: TestClient) -> None:
    load_units(api)
    received = [{"code": f"{H}{n:04d}", "unit_code": "99001", "received_date": "2026-01-10"} for n in (1, 2, 3, 9)]
    assert api.post("/api/v1/dossiers/received", json=received).status_code == 200
    postal = Operator(kind="postal_staff", id="op-7")
    send(api, [
        status("kiosk-a", "99001", at("2026-01-01")), status("kiosk-c", "99003", at("2026-01-01")),
        # 0001: kiosk-a at 10:00, kiosk-c earlier the same day in lower case: kiosk-c's unit counts.
        page("kiosk-a", f"{H}0001", at("2026-01-10", 3)), page("kiosk-c", f"{H}0001".lower(), at("2026-01-10", 1)),
        # 0002: only its result, written -KQ(2); a rejected and a dropped page of 0003 do not count.
        page("kiosk-a", f"{H}0002-KQ(2)", at("2026-01-11")), page("kiosk-a", f"{H}0003", at("2026-01-11"), ok=False),
        # 0004: never received (unmatched), a component and a result page.
        page("kiosk-c", f"{H}0004", at("2026-01-12")), page("kiosk-c", f"{H}0004-KQ1", at("2026-01-20")),
        # 0005: documents only, by postal staff; a walk-in's documents.
        closed("kiosk-a", f"{H}0005", [f"{H}0005.1.pdf", f"{H}0005-KQ1.pdf"], at("2026-01-13"), operator=postal),
        closed("kiosk-c", None, ["WALKIN-0A0B0C0D.1.pdf"], at("2026-01-14"), operator=Operator(kind="citizen")),
    ])
    before = _rows(api)
    assert before[f"{H}0001"][4:6] == ("99003", "kiosk-c")
    assert before[f"{H}0002"][2] is None and before[f"{H}0002"][3] is not None
    assert before[f"{H}0003"][2] is None
    assert before[f"{H}0005"][6:] == ("postal_staff", "op-7")
    assert before["WALKIN-0A0B0C0D"][1] is True

    # Bad state to repair: times and units wiped or wrong, a dossier only pages know deleted,
    # a received dossier nothing digitized marked digitized.
    with state_of(api).sessions() as session:
        session.execute(update(Dossier).where(Dossier.code == f"{H}0001")
                        .values(component_at=at("2026-03-01"), digitized_unit="99004", device_id="kiosk-x"))
        session.execute(update(Dossier).where(Dossier.code == f"{H}0002").values(result_at=None))
        session.execute(update(Dossier).where(Dossier.code == f"{H}0009")
                        .values(component_at=at("2026-01-15"), digitized_unit="99001"))
        session.execute(delete(Dossier).where(Dossier.code == f"{H}0004"))
        session.commit()

    response = api.post("/api/v1/dossiers/recount")
    assert response.status_code == 200, response.text
    after = _rows(api)
    assert after == before
    stamps = _updated(api)
    assert api.post("/api/v1/dossiers/recount").status_code == 200
    assert _updated(api) == stamps  # nothing changed, nothing rewritten
    assert _rows(api) == before
