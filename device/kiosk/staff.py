"""The screen's staff sign-in: a clerk signs in at the counter with their operator id and PIN,
or by showing their staff card's QR to the camera (read on the same path as the receipt slip's
QR), and signs out; while signing in is locked after failed tries the screen says until when.
The dossiers opened on the screen then record that clerk; with nobody signed in, the citizen.
The operator id is the one the fleet's admin page shows (``op-`` and 10 hex digits), taken as
typed with capitals or spaces or without its ``op-``; something of another form is said so
(with an example) and counts no failed try, since it can be no operator's.

What the screen shows never holds a PIN or a card token; neither is logged. A card whose token
was just refused is not tried again while it stays in front of the camera (each look would
otherwise count one more failure and lock signing in within seconds).

>>> from device.operators.book import OperatorBook, StaffOperator, hash_secret
>>> book = OperatorBook()
>>> book.replace([StaffOperator("op-3fa2c1d9e0", "unit_staff", pin_hash=hash_secret("246810"))])
>>> desk = StaffDesk(SignIn(book))
>>> desk.with_pin("OP-3FA2C1D9E0", "246810")
>>> desk.operator()
Operator(kind='unit_staff', id='op-3fa2c1d9e0')
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from device.errors import SohoaError
from device.inference.verdict import CodeLike
from device.operators.cards import card_token
from device.operators.signin import LockedOut, SignIn, WrongCredentials
from protocol.messages import Operator
from protocol.secrets import OPERATOR_ID, operator_id_as_typed

log = logging.getLogger(__name__)

CITIZEN = Operator(kind="citizen")
"""A dossier opened on the screen with no clerk signed in is the citizen's self-scan."""

NOTICES: dict[str, tuple[str, str]] = {
    "wrong_credentials": ("Mã cán bộ hoặc mã PIN không đúng, vui lòng nhập lại (còn {tries} lần thử "
                          "trước khi tạm khóa)",
                          "The operator id or the PIN is not right, please try again ({tries} tries left "
                          "before signing in locks)"),
    "operator_id_form": ("Mã cán bộ gồm 'op-' và 10 chữ số hoặc chữ cái a–f, ví dụ op-3fa2c1d9e0, như trong "
                         "danh sách cán bộ của quản trị viên",
                         "An operator id is 'op-' and 10 digits or letters a–f, e.g. op-3fa2c1d9e0, as in "
                         "the administrator's list of operators"),
    "wrong_card": ("Thẻ cán bộ này không dùng được trên máy này, vui lòng nhập mã cán bộ và mã PIN "
                   "hoặc liên hệ quản trị viên",
                   "This staff card does not work on this device: type your operator id and PIN, "
                   "or ask the administrator"),
    "locked": ("Đăng nhập tạm khóa do nhập sai quá nhiều lần, vui lòng thử lại sau {minutes} phút",
               "Signing in is locked after too many failed tries: try again in {minutes} minutes"),
    "signin_missing": ("Vui lòng nhập mã cán bộ và mã PIN", "Please type your operator id and PIN"),
    "signin_dossier_open": ("Đang có hồ sơ mở, hồ sơ được ghi cho cán bộ đã mở nó. Bấm “Hoàn tất” để gửi hồ sơ "
                            "(hoặc “Hủy hồ sơ”), rồi cán bộ khác đăng nhập",
                            "A dossier is open and is recorded for the clerk who opened it. Press “Finish” to "
                            "send it (or “Cancel the dossier”), then the other clerk signs in"),
    "no_operators": ("Máy chưa nhận được danh sách cán bộ, vui lòng liên hệ quản trị viên",
                     "This device has no operator list yet: please ask the administrator"),
}
"""Notice code -> (Vietnamese, English); ``{minutes}`` and ``{tries}`` are filled in."""


class SignInRefused(SohoaError, PermissionError):
    """Signing in from the screen failed; ``code`` is the notice the screen shows."""

    def __init__(self, code: str, locked_until: float | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.locked_until = locked_until


class StaffDesk:
    """The screen's side of :class:`~device.operators.signin.SignIn` (see the module). Thread-safe."""

    def __init__(self, sign_in: SignIn, *, sign_out_after_s: float = 1800.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.sign_in = sign_in
        self.sign_out_after_s = sign_out_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._refused_card: bytes | None = None

    def operator(self) -> Operator:
        """Who a dossier opened on the screen records: the clerk signed in, else the citizen."""
        return self.sign_in.operator() or CITIZEN

    def with_pin(self, operator_id: object, pin: object) -> None:
        """Sign in from the form; :class:`SignInRefused` with the notice to show."""
        if not isinstance(operator_id, str) or not isinstance(pin, str) or not operator_id.strip() or not pin:
            raise SignInRefused("signin_missing")
        if len(operator_id) > 64 or len(pin) > 64:
            raise SignInRefused("wrong_credentials")
        typed = operator_id.strip()
        if self.sign_in.book.get(typed) is None and not OPERATOR_ID.fullmatch(operator_id_as_typed(typed)):
            if len(self.sign_in.book) == 0:
                raise SignInRefused("no_operators")
            if self.sign_in.locked_until is not None:
                raise SignInRefused("locked", self.sign_in.locked_until)
            raise SignInRefused("operator_id_form")  # no operator's id: not a guess at anyone's PIN
        self._try(lambda: self.sign_in.with_pin(typed, pin), "wrong_credentials")

    def look_at(self, codes: Sequence[CodeLike]) -> str | None:
        """A page the camera took on the sign-in screen: a staff card's QR on it signs in. Returns
        the notice to show (None: nothing to say, or signed in)."""
        token = card_token(codes)
        if token is None:
            return None
        seen = hashlib.sha256(token.encode()).digest()
        with self._lock:
            if seen == self._refused_card:
                return None  # the same refused card, still held up: not one more failure
        try:
            self._try(lambda: self.sign_in.with_card(token), "wrong_card")
        except SignInRefused as exc:
            with self._lock:
                self._refused_card = seen
            return exc.code
        return None

    def _try(self, attempt: Callable[[], object], wrong: str) -> None:
        if len(self.sign_in.book) == 0:
            raise SignInRefused("no_operators")
        try:
            attempt()
        except LockedOut as exc:
            raise SignInRefused("locked", exc.until) from None
        except WrongCredentials:
            until = self.sign_in.locked_until
            raise SignInRefused("locked" if until else wrong, until) from None
        with self._lock:
            self._refused_card = None

    def sign_out(self) -> None:
        self.sign_in.sign_out()
        log.info("operator signed out at the screen")

    def left_idle(self, idle_s: float) -> None:
        """Sign out a clerk who left the screen untouched for ``sign_out_after_s``."""
        if idle_s >= self.sign_out_after_s and self.sign_in.current is not None:
            self.sign_in.sign_out()
            log.info("operator signed out after %.0f s without a touch", idle_s)

    def leave_screen(self) -> None:
        """The sign-in screen was left: a card refused there may be tried again next time."""
        with self._lock:
            self._refused_card = None

    def notice(self, code: str, locked_until: float | None = None) -> dict[str, str]:
        """The notice ``code`` as the screen shows it, the lock's minutes filled in."""
        until = locked_until if locked_until is not None else self.sign_in.locked_until
        minutes = max(1, math.ceil(((until or 0.0) - self._clock()) / 60))
        tries = self.sign_in.tries_left
        vi, en = NOTICES[code]
        return {"code": code, "vi": vi.format(minutes=minutes, tries=tries),
                "en": en.format(minutes=minutes, tries=tries)}

    def state(self) -> dict[str, Any]:
        """The screen's staff part: who is signed in (id and kind: no name is known here) and
        whether signing in is locked, for how long."""
        current = self.sign_in.current
        until = self.sign_in.locked_until
        return {
            "available": len(self.sign_in.book) > 0,
            "operator": None if current is None else {"id": current.id, "kind": current.kind},
            "locked_for_s": None if until is None else max(0, round(until - self._clock())),
            "lock_notice": None if until is None else self.notice("locked", until),
        }


__all__ = ["CITIZEN", "NOTICES", "SignInRefused", "StaffDesk"]
