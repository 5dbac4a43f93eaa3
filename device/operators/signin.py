"""Signing in at the counter: an operator id and a PIN typed on the screen, or a staff card's
token read from its QR. After ``max_tries`` failures in a row, signing in is locked for
``lockout_s`` (the count and the lock are kept on disk: a restart does not reset them). Neither
the PIN nor the token is ever logged; a wrong id and a wrong PIN fail the same way.

>>> from device.operators.book import OperatorBook, StaffOperator, hash_secret
>>> book = OperatorBook()
>>> book.replace([StaffOperator("op-1", "postal_staff", pin_hash=hash_secret("2468"))])
>>> desk = SignIn(book)
>>> desk.with_pin("op-1", "2468").kind
'postal_staff'
>>> desk.current.id
'op-1'
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device.durable import atomic_write
from device.errors import SohoaError
from device.operators.book import OperatorBook, StaffOperator, check_secret
from protocol.messages import Operator
from protocol.secrets import operator_id_as_typed

log = logging.getLogger(__name__)


class SignInError(SohoaError, PermissionError):
    """Signing in failed (the screen says so; nothing about which part was wrong)."""


class WrongCredentials(SignInError):
    """No operator with that id and PIN, or no operator with that card."""


class LockedOut(SignInError):
    """Too many failed tries: signing in is locked until :attr:`until` (seconds since the epoch)."""

    def __init__(self, until: float) -> None:
        super().__init__("too many failed sign-in tries; try again later")
        self.until = until


class SignIn:
    """Who is signed in at this counter, and the lockout. Thread-safe."""

    def __init__(
        self,
        book: OperatorBook,
        state_path: Path | None = None,
        *,
        max_tries: int = 5,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.state_path = state_path
        self.max_tries = max_tries
        self.lockout_s = lockout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current: StaffOperator | None = None
        self._failures = 0
        self._locked_until = 0.0
        self._load()

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
            self._failures = int(raw.get("failures", 0))
            self._locked_until = float(raw.get("locked_until", 0.0))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # a damaged file locks, it does not unlock: the safe side
            log.error("sign-in state unreadable (%s); locked for one period", type(exc).__name__)
            self._failures, self._locked_until = self.max_tries, self._clock() + self.lockout_s

    def _save(self) -> None:
        if self.state_path is not None:
            data = {"failures": self._failures, "locked_until": self._locked_until}
            atomic_write(self.state_path, json.dumps(data).encode())

    @property
    def current(self) -> StaffOperator | None:
        with self._lock:
            return self._current

    @property
    def locked_until(self) -> float | None:
        """When signing in opens again, while it is locked."""
        with self._lock:
            return self._locked_until if self._locked_until > self._clock() else None

    @property
    def tries_left(self) -> int:
        """Failed tries still allowed before signing in locks."""
        with self._lock:
            return max(0, self.max_tries - self._failures)

    def with_pin(self, operator_id: str, pin: str) -> StaffOperator:
        """Sign in with an operator id and PIN; :class:`WrongCredentials` or :class:`LockedOut`.
        The id is taken as the book has it or in the fleet's form as typed (``OP-3FA2…``, the 10
        digits without ``op-``: :func:`protocol.secrets.operator_id_as_typed`)."""
        return self._try(lambda: self._by_pin(operator_id, pin))

    def with_card(self, token: str) -> StaffOperator:
        """Sign in with the token of a staff card's QR; :class:`WrongCredentials` or :class:`LockedOut`."""
        return self._try(lambda: self.book.by_card(token))

    def _by_pin(self, operator_id: str, pin: str) -> StaffOperator | None:
        operator = self.book.get(operator_id) or self.book.get(operator_id_as_typed(operator_id))
        if operator is None or operator.pin_hash is None:
            return None
        return operator if check_secret(pin, operator.pin_hash) else None

    def _try(self, check: Callable[[], StaffOperator | None]) -> StaffOperator:
        with self._lock:
            now = self._clock()
            if self._locked_until > now:
                raise LockedOut(self._locked_until)
            operator = check()
            if operator is None:
                self._failures += 1
                if self._failures >= self.max_tries:
                    self._locked_until = now + self.lockout_s
                    self._failures = 0
                    log.warning("sign-in locked for %.0f s after %d failed tries", self.lockout_s, self.max_tries)
                self._save()
                raise WrongCredentials("no operator with these credentials")
            self._failures = 0
            self._locked_until = 0.0
            self._save()
            self._current = operator
        log.info("operator signed in (%s)", operator.kind)
        return operator

    def operator(self) -> Operator | None:
        """The signed-in operator as dossiers record it (``CounterButtons(operator=desk.operator)``)."""
        current = self.current
        return None if current is None else Operator(kind=current.kind, id=current.id)

    def sign_out(self) -> None:
        with self._lock:
            self._current = None
