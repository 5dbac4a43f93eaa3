"""Staff cards met by the dossier session through the real page pipeline: a card shown to the
kiosk's camera while a citizen's dossier waits for its first page signs the clerk in and the
dossier becomes theirs, is never a page, and held there for the next shot does not sign them out;
a card of no operator counts one failed try however often it is fed; a sheet whose QR is no
card's (a receipt slip) stays a page; while signing in is locked a card says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from device.dossier.model import SessionEvent
from device.dossier.session import DossierSession, StaffCardPage
from device.inference import synthetic
from device.operators.book import OperatorBook, StaffOperator, hash_secret
from device.operators.cards import ScannedCards
from device.operators.signin import SignIn
from protocol.messages import Operator
from tests.device.dossier.doubles import ListSource, RecordingSink

CARD = "c4" * 16
CLERK = Operator(kind="unit_staff", id="op-c4c4c4c4c4")
CITIZEN = Operator(kind="citizen")
SLIP = "000.00.12.H10-260101-0321|1.000001|001234567890|Giấy tiếp nhận"


def _counter(tmp_path: Path, pipeline: Any) -> tuple[DossierSession, SignIn, list[SessionEvent]]:
    book = OperatorBook()
    book.replace([StaffOperator(str(CLERK.id), "unit_staff", card_hash=hash_secret(CARD))])
    sign_in = SignIn(book, tmp_path / "signin.json", max_tries=3)
    session = DossierSession(processor=pipeline, sink=RecordingSink(), pdf_builder=None,
                             cards=ScannedCards(sign_in))
    events: list[SessionEvent] = []
    session.add_listener(events.append)
    return session, sign_in, events


def _cards(events: list[SessionEvent]) -> list[str | None]:
    return [e.card for e in events if e.kind == "staff_card"]


def test_a_card_at_the_camera_signs_in_once_and_is_no_page(tmp_path: Path, pipeline: Any) -> None:
    session, sign_in, events = _counter(tmp_path, pipeline)
    with session:
        session.open(operator=CITIZEN)  # a citizen's self-scan on the kiosk, no page yet
        card = synthetic.staff_card(CARD, str(CLERK.id), dpi=200)
        for _ in range(2):  # the card stays in front of the camera for the next shot
            with pytest.raises(StaffCardPage):
                session.add_image(card, source="camera", dpi=200)
        snap = session.snapshot()
        assert snap.pages == () and snap.state == "open" and snap.operator == CLERK
        assert sign_in.operator() == CLERK and _cards(events) == ["signed_in", "signed_in"]
        assert not [e for e in events if e.kind == "page_added"]

        slip = synthetic.text_page(seed=3, dpi=200, qr_text=SLIP)  # a QR, but no card's
        assert session.add_image(slip, source="camera", dpi=200).sequence == 1
        assert session.snapshot().dossier_code == SLIP.split("|")[0]


def test_a_stranger_card_counts_one_try_and_a_lock_is_said(tmp_path: Path, pipeline: Any) -> None:
    session, sign_in, events = _counter(tmp_path, pipeline)
    stranger = synthetic.staff_card("5f" * 16, "op-0000000000", dpi=200)
    with session:
        session.open()
        outcome = session.capture(ListSource([stranger, stranger], dpi=200))
        assert outcome.pages == () and outcome.fault is None and _cards(events) == ["wrong_card", "wrong_card"]
        assert json.loads((tmp_path / "signin.json").read_text())["failures"] == 1
        for _ in range(2):  # two other wrong tries lock (three in all)
            with pytest.raises(PermissionError):
                sign_in.with_pin(str(CLERK.id), "000000")
        session.capture(ListSource([synthetic.staff_card(CARD, str(CLERK.id), dpi=200)], dpi=200))
        assert _cards(events)[-1] == "locked" and sign_in.operator() is None
        assert session.snapshot().pages == ()
