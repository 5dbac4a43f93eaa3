"""Counter operators at the fleet, on SQLite and PostgreSQL: an admin adds a unit's clerk with
a PIN and a postal staff member with a card; only salted scrypt hashes are stored (the ones the
device checks: :mod:`protocol.secrets`), the card token is answered once; a unit admin manages
only their units' operators; bad input is refused without echoing a PIN; every change is
audited without a secret."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.auth.models import AuditEntry
from fleet.operators.models import CounterOperator
from protocol.secrets import check_secret
from tests.authn import login
from tests.fleet.conftest import state_of
from tests.fleet.dossiers.conftest import load_units
from tests.fleet.progress.conftest import api

__all__ = ["api"]

PIN = "731905"


def test_operators_are_managed_hashed_scoped_and_audited(api: TestClient) -> None:
    load_units(api)
    clerk = api.post("/api/v1/operators", json={"unit_code": "99003", "kind": "unit_staff", "label": "CB-03",
                                                "pin": PIN})
    assert clerk.status_code == 201, clerk.text
    assert clerk.json()["has_pin"] and not clerk.json()["has_card"] and clerk.json()["card_token"] is None
    postal = api.post("/api/v1/operators", json={"unit_code": "99001", "kind": "postal_staff", "label": "BĐ-1",
                                                 "card": True}).json()
    token = postal["card_token"]
    assert token and len(token) == 32
    listed = api.get("/api/v1/operators").json()
    assert [(o["label"], o["kind"]) for o in listed] == [("BĐ-1", "postal_staff"), ("CB-03", "unit_staff")]
    assert all(o["card_token"] is None for o in listed)  # answered once
    with state_of(api).sessions() as session:
        rows = {r.label: r for r in session.scalars(select(CounterOperator))}
    assert rows["CB-03"].pin_hash is not None and check_secret(PIN, rows["CB-03"].pin_hash)
    assert rows["BĐ-1"].card_hash is not None and check_secret(token, rows["BĐ-1"].card_hash)
    assert PIN not in str(rows["CB-03"].pin_hash)

    # Bad input: a 4-digit PIN, letters, neither PIN nor card, an unknown kind, an unknown field
    for bad in ({"pin": "1234"}, {"pin": "12ab56"}, {}, {"pin": PIN, "kind": "boss"}, {"pin": PIN, "name": "x"}):
        response = api.post("/api/v1/operators", json={"unit_code": "99003", "kind": "unit_staff", "label": "X",
                                                       **bad})
        assert response.status_code == 422 and "1234" not in response.text and PIN not in response.text

    changed = api.patch(f"/api/v1/operators/{clerk.json()['id']}", json={"pin": "55554444", "new_card": True})
    assert changed.status_code == 200 and changed.json()["has_card"] and changed.json()["card_token"]
    retired = api.patch(f"/api/v1/operators/{postal['id']}", json={"active": False}).json()
    assert retired["active"] is False

    login(api, role="unit_admin", unit_code="99003")
    assert [o["label"] for o in api.get("/api/v1/operators").json()] == ["CB-03"]
    assert api.get("/api/v1/operators", params={"unit": "99001"}).status_code == 403
    assert api.patch(f"/api/v1/operators/{postal['id']}", json={"active": True}).status_code == 404  # not theirs
    assert api.post("/api/v1/operators", json={"unit_code": "99001", "kind": "unit_staff", "label": "Y",
                                               "pin": PIN}).status_code == 403
    login(api, role="viewer", unit_code="99003")
    assert api.patch(f"/api/v1/operators/{clerk.json()['id']}", json={"active": False}).status_code == 403

    with state_of(api).sessions() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action.like("operator.%"))))
    assert sorted(e.action for e in entries) == ["operator.create", "operator.create", "operator.update",
                                                 "operator.update"]
    assert {e.detail for e in entries if e.action == "operator.update"} == {"pin, card", "retired"}
    with state_of(api).sessions() as session:
        everything = " ".join(f"{a.action} {a.target} {a.detail}" for a in session.scalars(select(AuditEntry)))
    assert PIN not in everything and "55554444" not in everything and token not in everything
