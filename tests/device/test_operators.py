"""Operators at the counter: PINs and staff-card tokens kept only as salted scrypt hashes, sign-in
by PIN or card, the lockout after five failed tries that a restart does not lift, nothing secret
in the logs, and each dossier recording who digitized it (the signed-in clerk through the
buttons on MockFactory pins, the citizen on the kiosk)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.buttons import ButtonsConfig, CounterButtons
from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from device.operators.book import OperatorBook, OperatorBookError, StaffOperator, hash_secret
from device.operators.signin import LockedOut, SignIn, WrongCredentials
from tests.device.dossier.doubles import ListSource, RecordingSink, page_image

PIN, CARD = "731905", "card-7f3a9c1e5b"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _book(path: Path | None = None) -> OperatorBook:
    book = OperatorBook(path)
    book.replace([StaffOperator("op-7", "postal_staff", pin_hash=hash_secret(PIN), card_hash=hash_secret(CARD)),
                  StaffOperator("op-2", "unit_staff", pin_hash=hash_secret("000111"))])
    return book


def test_only_hashes_are_stored(tmp_path: Path) -> None:
    _book(tmp_path / "operators.json")
    text = (tmp_path / "operators.json").read_text()
    assert PIN not in text and CARD not in text and text.count("scrypt$") == 3
    again = OperatorBook(tmp_path / "operators.json")  # read back after a restart
    assert len(again) == 2 and repr(again.get("op-7")) == "StaffOperator(id='op-7', kind='postal_staff')"
    assert hash_secret(PIN) != hash_secret(PIN)  # salted


def test_bad_books_are_refused(tmp_path: Path) -> None:
    """Bad input: not JSON, no list, a PIN in the clear, an unknown kind, an id with a slash."""
    path = tmp_path / "operators.json"
    entries = ('{"id": "op-1", "kind": "unit_staff", "pin_hash": "1234"}', '{"id": "op-1", "kind": "boss"}',
               '{"id": "a/b", "kind": "unit_staff"}')
    for bad in ("{not json", '{"people": []}', *(f'{{"operators": [{e}]}}' for e in entries)):
        path.write_text(bad)
        with pytest.raises(OperatorBookError):
            OperatorBook(path)


def test_pin_card_and_lockout_across_a_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock, state = Clock(), tmp_path / "signin.json"
    book = _book()
    desk = SignIn(book, state, max_tries=5, lockout_s=300, clock=clock)
    assert desk.with_pin("op-7", PIN).kind == "postal_staff"
    signed = desk.operator()
    assert signed is not None and signed.model_dump() == {"kind": "postal_staff", "id": "op-7"}
    desk.sign_out()
    assert desk.with_card(CARD).id == "op-7"
    for wrong in ("000000", "731906", "1", ""):
        with pytest.raises(WrongCredentials):
            desk.with_pin("op-7", wrong)
    with pytest.raises(WrongCredentials):
        desk.with_pin("op-99", PIN)  # an unknown operator fails exactly like a wrong PIN: the fifth try
    with pytest.raises(LockedOut):
        desk.with_pin("op-7", PIN)  # locked: even the right PIN is refused
    restarted = SignIn(book, state, max_tries=5, lockout_s=300, clock=clock)
    with pytest.raises(LockedOut):
        restarted.with_card(CARD)
    assert json.loads(state.read_text())["locked_until"] == pytest.approx(clock.now + 300)
    clock.now += 301
    assert restarted.with_pin("op-2", "000111").kind == "unit_staff"
    assert restarted.locked_until is None
    assert PIN not in caplog.text and CARD not in caplog.text and "731906" not in caplog.text


def test_a_damaged_lockout_file_locks(tmp_path: Path) -> None:
    state = tmp_path / "signin.json"
    state.write_text("[1, 2")
    clock = Clock()
    with pytest.raises(LockedOut):
        SignIn(_book(), state, clock=clock).with_pin("op-7", PIN)


def test_dossiers_record_who_digitized_them(mock_factory: Any) -> None:
    """The Scan button's dossier carries the signed-in clerk; the kiosk's carries the citizen;
    no one signed in: no operator (as before)."""
    desk = SignIn(_book())
    desk.with_pin("op-7", PIN)
    sink = RecordingSink()
    session = DossierSession(sink=sink, pdf_builder=None)
    config = ButtonsConfig(enabled=True, debounce_s=0.0, long_press_s=1.0, feedback_time_scale=0.05)
    buttons = CounterButtons(config, session, lambda kind: ListSource([page_image(1)]), pin_factory=mock_factory,
                             operator=desk.operator)
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session)).start()
    try:
        scan, done = mock_factory.pin(config.scan_pin), mock_factory.pin(config.done_pin)
        for pin in (scan, done):
            pin.drive_low()
            pin.drive_high()
            buttons.wait_idle(10)
        clerk = sink.dossiers[-1].to_event("kiosk-1").operator
        assert clerk is not None and clerk.model_dump() == {"kind": "postal_staff", "id": "op-7"}
        session.reset()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            http.post("/api/start", json={})
            http.post("/api/open", json={"code": "000.00.12.H10-260101-0999"})
            session.add_image(page_image(2))
            http.post("/api/finish", json={})
        citizen = sink.dossiers[-1].to_event("kiosk-1").operator
        assert citizen is not None and citizen.model_dump() == {"kind": "citizen", "id": None}
        session.reset()
        desk.sign_out()
        for pin in (scan, done):
            pin.drive_low()
            pin.drive_high()
            buttons.wait_idle(10)
        assert len(sink.dossiers) == 3 and sink.dossiers[-1].to_event("kiosk-1").operator is None
    finally:
        server.close()
        buttons.close()
        session.close()


def test_the_fleets_list_reaches_the_book_through_the_inbox(tmp_path: Path) -> None:
    """The retained ``operators`` message, handled by the agent's inbox (the real decode), fills
    the book on disk; an older list redelivered after a newer one is ignored; a clerk signs in
    with the pushed PIN hash."""
    from device.commands import Commands
    from device.config import AgentConfig
    from protocol.messages import OperatorEntry, OperatorList, encode
    from protocol.topics import Channel, topic

    book = OperatorBook(tmp_path / "operators.json")
    config = AgentConfig.model_validate({"device_id": "kiosk-0001", "unit": "99001", "state_dir": tmp_path})
    inbox = Commands(device_id="kiosk-0001", config=lambda: config, outbox=None, publisher=None,  # type: ignore[arg-type]
                     scans=None, spawn=lambda *_: None, status=lambda: {}, on_operators=book.take)  # type: ignore[arg-type]
    newer = OperatorList(device_id="kiosk-0001", version=20, operators=[
        OperatorEntry(id="op-7", kind="postal_staff", pin_hash=hash_secret(PIN))])
    older = OperatorList(device_id="kiosk-0001", version=10, operators=[])
    inbox.handle_message(topic("kiosk-0001", Channel.OPERATORS), encode(newer))
    inbox.handle_message(topic("kiosk-0001", Channel.OPERATORS), encode(older))
    assert len(book) == 1 and book.version == 20
    restarted = OperatorBook(tmp_path / "operators.json")
    assert restarted.version == 20 and SignIn(restarted).with_pin("op-7", PIN).kind == "postal_staff"
    inbox.handle_message(topic("kiosk-0001", Channel.OPERATORS), b'{"schema_version": 1, "nonsense": true}')
    assert len(book) == 1 and sum(inbox.rejected.values()) == 1  # bad input: refused, the book kept
