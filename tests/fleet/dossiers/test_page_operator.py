"""Who captured each page, on SQLite and PostgreSQL: the page's event names its operator (kind
and opaque id), the fleet stores it with the page, the dossier is attributed from its first
accepted page before any document arrives, the dossier's page answers it per page and per
document; a page from an agent that does not say (no ``operator``) stays unattributed and
changes nothing already known; an older fleet's contract takes the new field as unknown."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.models import Page
from protocol.messages import Operator, PageCaptured, decode, encode
from tests.fleet.conftest import state_of
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status

CODE = "000.00.00.H99-260112-0031"
POSTAL = Operator(kind="postal_staff", id="op-7a7a7a7a7a")


def test_pages_name_their_operator(api: TestClient) -> None:
    load_units(api)
    older = page("kiosk-o", CODE, at("2026-01-12", 2))  # an agent that does not say
    first = page("kiosk-o", CODE, at("2026-01-12", 3), operator=POSTAL)
    send(api, [status("kiosk-o", "99001", at("2026-01-01")), older, first])

    found = api.get(f"/api/v1/dossiers/{CODE}").json()
    assert (found["operator_kind"], found["operator_id"]) == ("postal_staff", POSTAL.id)  # no document yet
    by_page = {p["page_id"]: (p["operator_kind"], p["operator_id"]) for p in found["pages"]}
    assert by_page == {older.page.page_id: (None, None), first.page.page_id: ("postal_staff", POSTAL.id)}
    with state_of(api).sessions() as session:
        stored = session.scalar(select(Page).where(Page.page_id == first.page.page_id))
        assert stored is not None and (stored.operator_kind, stored.operator_id) == ("postal_staff", POSTAL.id)

    later = page("kiosk-o", CODE, at("2026-01-12", 4))  # more pages from an older agent: still the clerk's
    done = closed("kiosk-o", CODE, [f"{CODE}.1.pdf"], at("2026-01-12", 5),
                  page_ids=[older.page.page_id, first.page.page_id, later.page.page_id], operator=POSTAL)
    send(api, [later, done])
    found = api.get(f"/api/v1/dossiers/{CODE}").json()
    assert (found["operator_kind"], found["operator_id"]) == ("postal_staff", POSTAL.id)
    assert [(d["operator_kind"], d["operator_id"]) for d in found["documents"]] == [("postal_staff", POSTAL.id)]
    listed = api.get("/api/v1/dossiers", params={"operator_kind": "postal_staff"}).json()
    assert [d["code"] for d in listed] == [CODE]


def test_the_field_is_additive() -> None:
    """A page event with an operator decodes in full; one whose operator an older fleet would not
    know is still taken, the field named as ignored (the contract's rule for additive changes)."""
    event = page("kiosk-o", CODE, at("2026-01-12"), operator=POSTAL)
    topic = f"sohoa/v1/{event.device_id}/event"
    full = decode(topic, encode(event)).message
    assert isinstance(full, PageCaptured) and full.page.operator == POSTAL
    decoded = decode(topic, encode(event).replace(b'"operator":', b'"operator_badge":'))
    assert isinstance(decoded.message, PageCaptured) and decoded.message.page.operator is None
    assert decoded.ignored == ("page.operator_badge",)
