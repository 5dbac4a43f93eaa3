"""Rates for a known data set (see conftest): digitized dossiers counted once with an accepted
page, in Vietnam's month, rolled up the tree; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, column, insert, select, table, text

from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Incoming, Writer
from fleet.models import Page
from fleet.progress.digitized import rebuild
from fleet.progress.models import DigitizedDossier
from fleet.progress.rates import progress
from fleet.progress.schemas import ProgressOut
from protocol.messages import PageCaptured, Status, encode
from protocol.topics import Channel, topic
from tests.fleet.conftest import state_of
from tests.fleet.progress.conftest import EXPECTED, NOW, P, _page, at, fill


def _units(client: TestClient, **params: str) -> dict[str, dict]:  # type: ignore[type-arg]
    response = client.get("/api/v1/progress", params=params)
    assert response.status_code == 200, response.text
    return {u["code"]: u for u in response.json()["units"]}


def _counts(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: figures[key] for key in ("received", "digitized", "rate")}


def test_rates_for_a_known_data_set(filled: TestClient) -> None:
    """Traps in the data: a dropped page, a dossier with only rejected pages, a dossier with a
    rejected and a good page, two pages of one dossier, a dossier seen again the next month and
    on another unit's device, a page at 20:00 UTC on 31 January (1 February in Vietnam), a page
    without a verdict, a page without a dossier code, a device with no unit."""
    body = filled.get("/api/v1/progress", params={"from": "2026-01", "to": "2026-02", "unit": "99"}).json()
    units = {u["code"]: u for u in body["units"]}
    assert list(units) == ["99", "99001", "99003", "99004"]  # the two-tier tree valid in 2026
    for code, (received, digitized) in EXPECTED.items():
        assert (units[code]["own"]["received"], units[code]["own"]["digitized"]) == (received, digitized), code
    assert units["99"]["own"]["rate"] == pytest.approx(0.5)
    assert [units[c]["status"] for c in ("99", "99001", "99003", "99004")] == ["met", "met", "behind", "behind"]
    assert [units[c]["target"] for c in ("99", "99001")] == [0.5, 0.35]
    # Rolled up: the province's total is every unit's own.
    assert _counts(units["99"]["total"]) == {"received": 44, "digitized": 16, "rate": pytest.approx(16 / 44)}
    # Monthly counts only (no dossier imported one per row): no results, nothing to match.
    assert {u["basis"] for u in units.values()} == {"counts"}
    assert (units["99"]["total"]["results"], units["99"]["total"]["unmatched"]) == (0, 0)
    assert body["total"]["received"] == 44 and body["total"]["digitized"] == 16
    assert body["unattributed"] == 1
    # Trend, month by month: A9 (20:00 UTC on 31 January) is February's.
    assert [_counts(m) for m in units["99001"]["trend"]] == [{"received": 20, "digitized": 8, "rate": 0.4},
                                                             {"received": 0, "digitized": 2, "rate": None}]
    assert [m["digitized"] for m in units["99"]["trend"]] == [13, 3]
    tiers = {t["tier"]: t for t in body["tiers"]}
    assert _counts(tiers["province"]["figures"]) == {"received": 6, "digitized": 3, "rate": 0.5}
    assert (tiers["commune"]["figures"]["received"], tiers["commune"]["figures"]["digitized"]) == (38, 13)
    assert (tiers["commune"]["units"], tiers["commune"]["met"], tiers["commune"]["behind"]) == (3, 1, 2)
    # One month only.
    january = _units(filled, **{"from": "2026-01", "unit": "99"})
    assert (january["99"]["own"]["digitized"], january["99001"]["own"]["digitized"]) == (2, 8)
    # February alone: A1 and A2 were seen again but first digitized in January; P3 is not digitized.
    february = _units(filled, **{"from": "2026-02", "unit": "99"})
    assert [february[c]["own"]["digitized"] for c in ("99", "99001", "99003")] == [1, 2, 0]
    # The answer is serialized from plain dicts: the same bytes as the documented model gives.
    with state_of(filled).sessions() as session:
        for root in ("99", None):
            found = progress(session, "2025-06", "2026-02", root)
            assert ProgressOut.json_of(found) == ProgressOut.of(found).model_dump_json().encode()


def test_three_tier_rollup_and_unit_history(api: TestClient) -> None:
    """Before 1/7/2025 the sample tree has districts: figures roll up commune -> district ->
    province. A unit abolished in the reform has no record in 2026 (a count for it is refused)."""
    fill(api)
    rows = [("991", "2025-03", 5), ("99001", "2025-03", 10), ("99002", "2025-03", 7), ("99004", "2025-03", 4)]
    response = api.post("/api/v1/progress/received", json=[{"unit_code": u, "period": m, "received": n}
                                                            for u, m, n in rows])
    assert response.status_code == 200, response.text
    units = _units(api, **{"from": "2025-03", "unit": "99"})
    assert list(units) == ["99", "991", "99001", "99002", "99003", "992", "99004", "99005"]
    assert units["991"]["total"]["received"] == 22 and units["991"]["own"]["received"] == 5
    assert units["992"]["total"]["received"] == 4
    assert units["99"]["total"]["received"] == 26
    assert units["991"]["target"] == 0.4 and units["99005"]["status"] == "no_data"
    assert "Huyện Đông Sơn" in units["991"]["name"]
    refused = api.post("/api/v1/progress/received", json=[{"unit_code": "99002", "period": "2026-01", "received": 1}])
    assert refused.status_code == 422
    assert refused.json()["detail"]["problems"] == [{"line": 2, "message": "unit 99002 is not valid in 2026-01"}]


def test_targets_are_data_with_unit_overrides(filled: TestClient) -> None:
    """A unit's own target overrides its tier's from its month on; a tier's new target applies
    from its month. Bad input tried: both tier and unit, neither, an unknown unit, a rate of 1.5,
    a month 2026-13."""
    def put(body: dict) -> int:  # type: ignore[type-arg]
        code: int = filled.put("/api/v1/progress/targets", json=body).status_code
        return code

    assert put({"unit_code": "99003", "period_from": "2026-02", "rate": 0.25}) == 200
    assert put({"tier": "commune", "period_from": "2026-03", "rate": 0.6}) == 200
    units = _units(filled, **{"from": "2026-01", "to": "2026-02", "unit": "99"})
    assert units["99003"]["target"] == 0.25 and units["99003"]["status"] == "met"  # 30% >= 25%
    assert units["99004"]["target"] == 0.35  # the 60% starts in March
    january = _units(filled, **{"from": "2026-01", "unit": "99"})
    assert january["99003"]["target"] == 0.35
    march = _units(filled, **{"from": "2026-03", "unit": "99"})
    assert march["99004"]["target"] == 0.6 and march["99003"]["target"] == 0.25
    for bad in ({"tier": "commune", "unit_code": "99003", "period_from": "2026-01", "rate": 0.3},
                {"period_from": "2026-01", "rate": 0.3},
                {"unit_code": "12345", "period_from": "2026-01", "rate": 0.3},
                {"tier": "commune", "period_from": "2026-01", "rate": 1.5},
                {"tier": "commune", "period_from": "2026-13", "rate": 0.3}):
        assert put(bad) == 422, bad
    assert len(filled.get("/api/v1/progress/targets").json()) == 5  # 3 seeded + 2 set


def test_bad_ranges_and_unknown_root(filled: TestClient) -> None:
    """Bad input tried: a month 2026-1, a range ending before it starts, a unit not in the tree."""
    assert filled.get("/api/v1/progress", params={"from": "2026-1"}).status_code == 422
    assert filled.get("/api/v1/progress", params={"from": "2026-03", "to": "2026-01"}).status_code == 422
    assert filled.get("/api/v1/progress", params={"from": "2026-01", "unit": "98"}).status_code == 404


def test_a_device_moved_to_another_unit_keeps_its_history(filled: TestClient) -> None:
    """Fault tried: kiosk-a (99001) is moved to 99003 after its pages came in and then scans a
    new dossier. Its January and February pages stay 99001's; only the new dossier is 99003's."""
    state = state_of(filled)
    moved = at("2026-02-20")
    page = _page("kiosk-a", 99, P("M1", at("2026-02-21")))
    items = [Incoming(topic("kiosk-a", Channel.STATUS),
                      encode(Status(device_id="kiosk-a", state="online", unit="99003", ts=moved)), received_at=moved),
             Incoming(topic("kiosk-a", Channel.EVENT), encode(page), received_at=page.ts)]
    assert Writer(state.sessions, state.metrics).write(items) == 2
    units = _units(filled, **{"from": "2026-01", "to": "2026-02", "unit": "99"})
    for code, (received, digitized) in {**EXPECTED, "99003": (10, 4)}.items():
        assert (units[code]["own"]["received"], units[code]["own"]["digitized"]) == (received, digitized), code
    assert units["99003"]["trend"][1]["digitized"] == 1  # M1, in February


def test_migration_gives_existing_pages_their_device_unit(db_url: str) -> None:
    """A database from before pages had a unit (0004): its pages get their device's unit on
    upgrade, and 0008 counts their dossiers digitized from the first accepted page. Bad input
    tried: a device with no unit, a dossier whose first page was rejected (its second counts), a
    dossier with only a dropped page (not digitized), a verdict without ``ok`` (counts)."""
    engine = make_engine(db_url)
    migrate(engine, "0004_operations")
    # The pages table as 0004 had it (the model has columns added since).
    old_pages = table("pages", *(column(n) for n in (
        "page_id", "device_id", "event_id", "batch_id", "sequence", "side", "sha256", "size", "content_type", "width",
        "height", "source", "dropped", "captured_at", "received_at", "dossier_code")), column("quality", JSON))
    rejected, good = {"ok": False, "issues": ["blurry"]}, {"ok": True, "issues": []}
    pages = [("p1", "kiosk-a", "H1", rejected, False, "2026-01-02"), ("p2", "kiosk-a", "H1", good, False, "2026-01-03"),
             ("p3", "kiosk-a", "H1", good, False, "2026-01-04"), ("p4", "kiosk-n", "H2", {"issues": []}, False,
             "2026-01-05"), ("p5", "kiosk-a", "H3", good, True, "2026-01-01")]
    with engine.begin() as conn:
        for device, unit in (("kiosk-a", "99001"), ("kiosk-n", None)):
            conn.execute(text("INSERT INTO devices (id, unit_code, first_seen, last_seen, status) "
                              "VALUES (:id, :unit, :ts, :ts, 'online')"),
                         {"id": device, "unit": unit, "ts": "2026-01-01 00:00:00.000000"})
        conn.execute(insert(old_pages), [
            {"page_id": page_id, "device_id": device, "event_id": "e", "batch_id": "b", "sequence": 1, "side": "front",
             "sha256": "0", "size": 1, "content_type": "image/png", "width": 1, "height": 1, "source": "scanner",
             "dropped": dropped, "captured_at": f"{day} 03:00:00.000000", "received_at": f"{day} 03:00:00.000000",
             "dossier_code": dossier, "quality": quality} for page_id, device, dossier, quality, dropped, day in pages])
    migrate(engine)
    with session_factory(engine)() as session:
        found = dict(session.execute(select(Page.page_id, Page.unit_code)).all())
        dossiers = session.execute(select(DigitizedDossier.dossier_code, DigitizedDossier.page_id,
                                          DigitizedDossier.unit_code).order_by(DigitizedDossier.dossier_code)).all()
    assert found == {"p1": "99001", "p2": "99001", "p3": "99001", "p4": None, "p5": "99001"}
    assert [tuple(d) for d in dossiers] == [("H1", "p2", "99001"), ("H2", "p4", None)]
    engine.dispose()


def test_a_late_earlier_page_moves_its_dossier_and_a_redelivery_changes_nothing(filled: TestClient) -> None:
    """Faults tried: a dossier's pages arrive out of order (the later page, at 99003 in February,
    first; then an earlier one from 99001 in January, delivered late by store-and-forward), the
    same page delivered twice, a later accepted page after that. The dossier counts once, in the
    month and unit of its first accepted page; the table the ingest keeps equals one rebuilt from
    every page."""
    state = state_of(filled)
    late = _page("kiosk-c", 300, P("L1", at("2026-02-15")))
    early = _page("kiosk-a", 301, P("L1", at("2026-01-20")))
    later = _page("kiosk-c", 302, P("L1", at("2026-02-16")))

    def deliver(*pages: PageCaptured) -> None:
        items = [Incoming(topic(p.device_id, Channel.EVENT), encode(p), received_at=NOW) for p in pages]
        assert Writer(state.sessions, state.metrics).write(items) == len(items)

    def counts() -> tuple[int, int, int, int]:
        units = _units(filled, **{"from": "2026-01", "to": "2026-02", "unit": "99"})
        return (units["99001"]["trend"][0]["digitized"], units["99001"]["trend"][1]["digitized"],
                units["99003"]["trend"][0]["digitized"], units["99003"]["trend"][1]["digitized"])

    before = counts()
    deliver(late)
    assert counts() == (before[0], before[1], before[2], before[3] + 1)
    deliver(early, early, later)
    assert counts() == (before[0] + 1, before[1], before[2], before[3])
    with state.sessions() as session:
        kept = sorted(session.execute(select(DigitizedDossier.__table__)).all(), key=str)
        rebuild(session.connection())
        rebuilt = sorted(session.execute(select(DigitizedDossier.__table__)).all(), key=str)
        session.rollback()
    assert kept == rebuilt and len(kept) == 18  # 16 of the data set, N1 (no unit), L1
