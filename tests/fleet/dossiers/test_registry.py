"""The registry through the API on SQLite and PostgreSQL: a walk-in dossier named later moves
the counts (and a redelivered event after that changes nothing); a unit admin sees only their
subtree's dossiers, another unit's answering 404 exactly like a missing one; province-level
agencies as units; figures over 1/7/2025 rolled up the tree valid in each month."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.auth.models import AuditEntry
from protocol.messages import Operator
from tests.authn import login
from tests.fleet.conftest import state_of
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status

SPAN = {"from": "2026-01", "to": "2026-01"}
CODE = "000.00.00.H99-260110-0001"
WALK_IN = "WALKIN-1A2B3C4D"


def _received(client: TestClient, rows: list[tuple[str, str, str]]) -> None:
    items = [{"code": c, "procedure_code": "1.001", "unit_code": u, "received_date": d} for c, u, d in rows]
    response = client.post("/api/v1/dossiers/received", json=items)
    assert response.status_code == 200, response.text


def _own(client: TestClient, unit: str) -> dict[str, Any]:
    units = {u["code"]: u for u in client.get("/api/v1/progress", params=SPAN).json()["units"]}
    own: dict[str, Any] = units[unit]["own"]
    return own


def test_a_walk_in_named_later_moves_the_counts(api: TestClient) -> None:
    load_units(api)
    _received(api, [(CODE, "99003", "2026-01-10"), ("000.00.00.H99-260110-0002", "99003", "2026-01-10")])
    first, second = page("kiosk-c", None, at("2026-01-10")), page("kiosk-c", None, at("2026-01-10", 4), dpi=300)
    walk_in = closed("kiosk-c", None, [f"{WALK_IN}.1.pdf", f"{WALK_IN}.2.pdf"], at("2026-01-10", 5),
                     page_ids=[first.page.page_id, second.page.page_id],
                     operator=Operator(kind="postal_staff", id="op-17"))
    send(api, [status("kiosk-c", "99003", at("2026-01-01")), first, second, walk_in])

    listed = api.get("/api/v1/dossiers", params={"state": "walk_in"}).json()
    assert [(d["code"], d["digitized_unit"]) for d in listed] == [(WALK_IN, "99003")]
    assert (_own(api, "99003")["digitized"], _own(api, "99003")["unmatched"]) == (0, 0)  # no code: counts nowhere
    chase = api.get("/api/v1/dossiers/chase", params={**SPAN, "unit": "99003"}).json()["dossiers"]
    assert [d["code"] for d in chase] == [CODE, "000.00.00.H99-260110-0002"]

    # Bad input first: a code that is a result, an unknown walk-in, a dossier that is no walk-in.
    assert api.post(f"/api/v1/dossiers/{WALK_IN}/name", json={"code": f"{CODE}-KQ1"}).status_code == 409
    assert api.post("/api/v1/dossiers/WALKIN-FFFFFFFF/name", json={"code": CODE}).status_code == 404
    assert api.post(f"/api/v1/dossiers/{CODE}/name", json={"code": "X-1"}).status_code == 409  # received, no walk-in
    response = api.post(f"/api/v1/dossiers/{WALK_IN.lower()}/name", json={"code": CODE.lower()})
    assert response.status_code == 200, response.text
    assert response.json()["code"] == CODE and response.json()["state"] == "digitized"
    assert api.post(f"/api/v1/dossiers/{WALK_IN}/name", json={"code": CODE}).status_code == 409  # named already

    assert _own(api, "99003")["digitized"] == 1
    chase = api.get("/api/v1/dossiers/chase", params={**SPAN, "unit": "99003"}).json()["dossiers"]
    assert [d["code"] for d in chase] == ["000.00.00.H99-260110-0002"]
    detail = api.get(f"/api/v1/dossiers/{CODE}").json()
    assert [(d["name"], d["device_name"], d["dpi"]) for d in detail["documents"]] == [
        (f"{CODE}.{n}.pdf", f"{WALK_IN}.{n}.pdf", 200) for n in (1, 2)]
    assert {p["page_id"] for p in detail["pages"]} == {first.page.page_id, second.page.page_id}
    assert api.get(f"/api/v1/dossiers/{WALK_IN}").json()["state"] == "named"
    assert api.get(f"/api/v1/dossiers/{WALK_IN}").json()["named_code"] == CODE
    by_postal = api.get("/api/v1/dossiers", params={"operator_kind": "postal_staff"}).json()
    assert [(d["code"], d["operator_id"]) for d in by_postal] == [(CODE, "op-17"), (WALK_IN, "op-17")]
    assert {d["operator_kind"] for d in detail["documents"]} == {"postal_staff"}
    assert api.get("/api/v1/dossiers", params={"operator_kind": "unit_staff"}).json() == []
    assert api.get("/api/v1/dossiers", params={"operator_kind": "boss"}).status_code == 422

    send(api, [walk_in, first])  # redelivered after the naming: nothing changes
    assert len(api.get(f"/api/v1/dossiers/{CODE}").json()["documents"]) == 2
    assert api.get("/api/v1/dossiers", params={"state": "walk_in"}).json() == []
    assert _own(api, "99003")["digitized"] == 1
    with state_of(api).sessions() as session:
        actions = [a.action for a in session.scalars(select(AuditEntry).where(AuditEntry.outcome == "200"))]
    assert "POST /api/v1/dossiers/{walk_in}/name" in actions


def test_a_walk_in_named_into_a_dossier_with_documents_takes_its_next_numbers(api: TestClient) -> None:
    """The citizen came once with the slip (``.1`` digitized), then without it (a walk-in of two
    documents): named, the walk-in's documents become ``.2`` and ``.3`` of the code (the walk-in's
    names kept as the device's), never a second ``.1``. Redelivered afterwards, the walk-in's event
    adds nothing; a document the device closes later under the walk-in (a supplement, offline
    meanwhile) is stored under the code's next number."""
    load_units(api)
    _received(api, [(CODE, "99003", "2026-01-10")])
    visit = closed("kiosk-c", CODE, [f"{CODE}.1.pdf"], at("2026-01-10"))
    walk_in = closed("kiosk-c", None, [f"{WALK_IN}.1.pdf", f"{WALK_IN}.2.pdf"], at("2026-01-11"))
    send(api, [status("kiosk-c", "99003", at("2026-01-01")), visit, walk_in])
    assert api.post(f"/api/v1/dossiers/{WALK_IN}/name", json={"code": CODE}).status_code == 200

    def names() -> list[tuple[str, str | None]]:
        documents = api.get(f"/api/v1/dossiers/{CODE}").json()["documents"]
        return sorted((d["name"], d["device_name"]) for d in documents)

    expected = [(f"{CODE}.1.pdf", None), (f"{CODE}.2.pdf", f"{WALK_IN}.1.pdf"), (f"{CODE}.3.pdf", f"{WALK_IN}.2.pdf")]
    assert names() == expected
    send(api, [walk_in])
    assert names() == expected
    assert api.get(f"/api/v1/dossiers/{WALK_IN}").json()["documents"] == []
    send(api, [closed("kiosk-c", None, [f"{WALK_IN}.3.pdf"], at("2026-01-12"))])
    assert names() == [*expected, (f"{CODE}.4.pdf", f"{WALK_IN}.3.pdf")]
    assert api.get("/api/v1/dossiers", params={"state": "walk_in"}).json() == []


def test_a_unit_admin_sees_only_their_subtree(api: TestClient) -> None:
    load_units(api)
    _received(api, [("H99-A", "99001", "2026-01-05"), ("H99-C", "99003", "2026-01-05")])
    send(api, [status("kiosk-a", "99001", at("2026-01-01")), status("kiosk-c", "99003", at("2026-01-01")),
               page("kiosk-a", "H99-X", at("2026-01-06")),  # digitized by 99001, received nowhere
               page("kiosk-c", "H99-A", at("2026-01-06", 4)),  # 99001's dossier, digitized at 99003
               closed("kiosk-a", None, ["WALKIN-00000001.1.pdf"], at("2026-01-07"))])
    login(api, role="unit_admin", unit_code="99003")

    assert sorted(d["code"] for d in api.get("/api/v1/dossiers").json()) == ["H99-A", "H99-C"]
    missing = api.get("/api/v1/dossiers/H99-NOPE")
    other = api.get("/api/v1/dossiers/H99-X")
    assert missing.status_code == other.status_code == 404 and missing.json() == other.json()
    assert api.get("/api/v1/dossiers/H99-A").status_code == 200  # digitized here
    assert api.get("/api/v1/dossiers", params={"unit": "99001"}).status_code == 403
    assert api.get("/api/v1/dossiers/chase", params={**SPAN, "unit": "99001"}).status_code == 403
    assert [d["code"] for d in api.get("/api/v1/dossiers/chase", params=SPAN).json()["dossiers"]] == ["H99-C"]
    assert api.post("/api/v1/dossiers/WALKIN-00000001/name", json={"code": "H99-Z"}).status_code == 404
    refused = api.post("/api/v1/dossiers/received", json=[
        {"code": "H99-B", "unit_code": "99001", "received_date": "2026-01-05"}])
    assert refused.status_code == 403
    assert api.post("/api/v1/dossiers/recount").status_code == 403
    login(api, role="viewer", unit_code="99003")
    assert api.post("/api/v1/dossiers/received", json=[
        {"code": "H99-B", "unit_code": "99003", "received_date": "2026-01-05"}]).status_code == 403
    with state_of(api).sessions() as session:
        refusals = list(session.scalars(select(AuditEntry).where(AuditEntry.target == "/api/v1/dossiers/H99-X")))
    assert [r.detail for r in refusals] == ["outside the user's units"]


AGENCIES = ("000.00.12.H99,[THỬ - mã giả định] Sở Tư pháp,agency,99,2025-07-01,\n"
            "000.00.30.H99,[THỬ - mã giả định] Trung tâm Phục vụ hành chính công,sở,99,2025-07-01,\n")


def test_province_agencies_are_units_under_their_province(api: TestClient) -> None:
    bad = api.post("/api/v1/units/import", headers={"Content-Type": "text/csv"}, content=(
        "code,name,tier,parent_code,valid_from,valid_to\n99,Tỉnh,province,,2004-01-01,\n"
        "H99.12,Sở,agency,99,2025-07-01,\n000.00.13.H99,Sở,agency,,2025-07-01,\n").encode())
    assert bad.status_code == 422
    assert [p["line"] for p in bad.json()["detail"]["problems"]] == [3, 4]
    load_units(api, AGENCIES)
    agency = "000.00.12.H99"
    _received(api, [("H99-S1", agency, "2026-01-05"), ("H99-S2", agency, "2026-01-06")])
    send(api, [status("kiosk-s", agency, at("2026-01-01")), page("kiosk-s", "H99-S1", at("2026-01-05"))])
    body = api.get("/api/v1/progress", params={**SPAN, "unit": "99"}).json()
    units = {u["code"]: u for u in body["units"]}
    assert units[agency]["tier"] == "agency" and units[agency]["parent_code"] == "99"
    assert (units[agency]["own"]["received"], units[agency]["own"]["digitized"]) == (2, 1)
    assert units[agency]["target"] == 0.5 and units[agency]["status"] == "met"
    assert units["99"]["total"]["digitized"] == 1 and body["unattributed"] == 0
    assert {t["tier"] for t in body["tiers"]} >= {"agency"}
    login(api, role="unit_admin", unit_code=agency)  # a unit admin of an agency
    assert [d["code"] for d in api.get("/api/v1/dossiers").json()] == ["H99-S1", "H99-S2"]


def test_a_range_over_1_july_2025_rolls_each_month_up_the_tree_of_that_month(api: TestClient) -> None:
    """Communes under their districts until 30/6/2025, under the province from 1/7/2025."""
    load_units(api)
    counts = [("99001", "2025-06", 10), ("99001", "2025-07", 20), ("99004", "2025-06", 5), ("99004", "2025-07", 7)]
    response = api.post("/api/v1/progress/received",
                        json=[{"unit_code": u, "period": m, "received": n} for u, m, n in counts])
    assert response.status_code == 200, response.text
    _received(api, [("H99-J1", "99003", "2025-06-20"), ("H99-J2", "99003", "2025-07-02")])
    send(api, [status("kiosk-c", "99003", at("2025-06-01")), page("kiosk-c", "H99-J1", at("2025-07-03")),
               page("kiosk-c", "H99-J2", at("2025-07-03"))])
    body = api.get("/api/v1/progress", params={"from": "2025-06", "to": "2025-07"}).json()
    units = {u["code"]: u for u in body["units"]}
    trend = {code: [(m["received"], m["digitized"]) for m in u["trend"]] for code, u in units.items()}
    assert trend["991"] == [(11, 1), (0, 0)]  # 99001 and 99003 in June only
    assert trend["992"] == [(5, 0), (0, 0)]
    assert trend["99"] == [(16, 1), (28, 1)]
    assert (units["991"]["total"]["received"], units["99"]["total"]["received"]) == (11, 44)
    district = api.get("/api/v1/progress", params={"from": "2025-06", "to": "2025-07", "unit": "991"}).json()
    assert [(m["received"], m["digitized"]) for m in district["units"][0]["trend"]] == [(11, 1), (0, 0)]


def _hold(client: TestClient, data: bytes) -> str:
    """Put ``data`` in the fleet's file store, as an upload would."""
    import hashlib

    from fleet.models import StoredFile

    state = state_of(client)
    sha = hashlib.sha256(data).hexdigest()
    state.store.put_bytes(sha, data)
    with state.sessions() as session:
        session.add(StoredFile(sha256=sha, size=len(data), content_type="application/pdf", stored_at=at("2026-01-10"),
                               uploaded_by="kiosk-c"))
        session.commit()
    return sha


def test_documents_say_whether_they_have_a_text_layer_and_download_under_their_name(api: TestClient) -> None:
    from fpdf import FPDF

    from protocol.messages import DossierDocument

    with_text = FPDF()
    with_text.add_page()
    with_text.set_font("helvetica", size=12)
    with_text.cell(text="Don de nghi")
    text_pdf = bytes(with_text.output())
    image_only = b"%PDF-1.4\n1 0 obj << /Type /XObject /Subtype /Image /Width 1 /Height 1 >> endobj\n%%EOF\n"
    load_units(api)
    docs = [DossierDocument(sha256=_hold(api, text_pdf), name="H99-T.1.pdf", pages=1, size=len(text_pdf)),
            DossierDocument(sha256=_hold(api, image_only), name="H99-T.2.pdf", pages=1, size=len(image_only)),
            DossierDocument(sha256="ab" * 32, name="H99-T.3.pdf", pages=1, size=10)]  # not uploaded yet
    event = closed("kiosk-c", "H99-T", [], at("2026-01-10")).model_copy(update={"documents": docs})
    send(api, [status("kiosk-c", "99003", at("2026-01-01")), event])
    detail = api.get("/api/v1/dossiers/H99-T").json()
    assert [(d["name"], d["text_layer"], d["file_held"]) for d in detail["documents"]] == [
        ("H99-T.1.pdf", True, True), ("H99-T.2.pdf", False, True), ("H99-T.3.pdf", None, False)]
    response = api.get(detail["documents"][0]["download_url"])
    assert response.status_code == 200 and response.content == text_pdf
    assert 'filename="H99-T.1.pdf"' in response.headers["content-disposition"]
    assert api.get(detail["documents"][2]["download_url"]).status_code == 404
    assert api.get("/api/v1/dossiers/H99-T/documents/H99-T.9.pdf").status_code == 404
    with state_of(api).sessions() as session:
        actions = [a.action for a in session.scalars(select(AuditEntry))]
    assert "download /api/v1/dossiers/{code}/documents/{name}" in actions
