"""A staff card fed through the scanner (or shown to the camera while a dossier is open): the
sheet is the clerk's card, not a page. A counter box with buttons and no screen signs in this
way: the clerk puts their card on top of the stack and presses Scan.

* a card of this device's list, nobody else's dossier open -> that clerk is signed in;
* the card of the clerk signed in -> signed out (the same card again ends the shift);
* another clerk's card while the open dossier holds pages -> refused (``dossier_started``):
  a dossier's pages and its documents name one clerk; finish or cancel it first;
* a card no operator of the list holds -> a failed try (``wrong_card``), counted toward the
  lockout like a wrong PIN, once: the same card again counts nothing more (it guesses nothing
  new, and a card left in front of the camera is read at every shot); while locked, ``locked``.

The token is checked against the stored hashes only; it is never logged, never in an event,
and the sheet is never stored.

>>> from device.operators.book import OperatorBook, StaffOperator, hash_secret
>>> book = OperatorBook()
>>> book.replace([StaffOperator("op-3fa2c1d9e0", "unit_staff", card_hash=hash_secret("5e" * 16))])
>>> cards = ScannedCards(SignIn(book))
>>> card = [Qr("other", "5e" * 16)]
>>> cards.read(card, dossier_started=False).outcome, cards.read(card, dossier_started=True).outcome
('signed_in', 'signed_out')
>>> cards.read([Qr("dossier_receipt", None)], dossier_started=False) is None
True
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from device.dossier.sources import CardRead
from device.inference.verdict import CodeLike
from device.operators.book import check_secret
from device.operators.signin import LockedOut, SignIn, WrongCredentials
from protocol.secrets import is_card_token

log = logging.getLogger(__name__)

__all__ = ["Qr", "ScannedCards", "card_token"]


@dataclass(frozen=True, slots=True)
class Qr:
    """A code as the pipeline reads it (kind and text), for examples and tests."""

    kind: str
    text: str | None
    dossier_code: str | None = None


def card_token(codes: Sequence[CodeLike]) -> str | None:
    """The staff card token among a page's codes (:data:`protocol.secrets.CARD_TOKEN`), if any."""
    return next((c.text.strip() for c in codes if c.kind == "other" and c.text and is_card_token(c.text)), None)


class ScannedCards:
    """The session's :class:`~device.dossier.sources.StaffCards`: signs in or out with a card
    read on a captured sheet (see the module)."""

    def __init__(self, sign_in: SignIn) -> None:
        self.sign_in = sign_in
        self._lock = threading.Lock()
        self._refused: bytes | None = None

    def read(self, codes: Sequence[CodeLike], *, dossier_started: bool, sign_out: bool = True) -> CardRead | None:
        token = card_token(codes)
        if token is None:
            return None
        if len(self.sign_in.book) == 0:
            return CardRead("no_operators", self.sign_in.operator())
        current = self.sign_in.current
        if current is not None and current.card_hash is not None and check_secret(token, current.card_hash):
            if not sign_out:
                return CardRead("signed_in", self.sign_in.operator())
            self.sign_in.sign_out()
            log.info("operator signed out by their staff card")
            return CardRead("signed_out", None)
        if dossier_started:
            log.info("a staff card was fed while the open dossier holds pages; sign-in not changed")
            return CardRead("dossier_started", self.sign_in.operator())
        seen = hashlib.sha256(token.encode()).digest()
        with self._lock:
            if seen == self._refused and self.sign_in.locked_until is None:
                return CardRead("wrong_card", self.sign_in.operator())
        try:
            self.sign_in.with_card(token)
        except LockedOut:
            return CardRead("locked", self.sign_in.operator())
        except WrongCredentials:
            with self._lock:
                self._refused = seen
            locked = self.sign_in.locked_until is not None
            return CardRead("locked" if locked else "wrong_card", self.sign_in.operator())
        with self._lock:
            self._refused = None
        return CardRead("signed_in", self.sign_in.operator())
