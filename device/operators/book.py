"""The operators a device knows, with their PIN and staff-card secrets as salted scrypt hashes.

The book is a JSON file in the state directory; nothing in it is a secret in the clear, and no
operator's name or ID number is in it (an operator is an opaque id and a kind). The hash form is
the wire contract's (:mod:`protocol.secrets`): the fleet makes the hashes, the device checks them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from device.durable import atomic_write
from device.errors import SohoaError
from protocol.messages import OperatorList
from protocol.secrets import check_secret, hash_secret

__all__ = ["OperatorBook", "OperatorBookError", "StaffOperator", "check_secret", "hash_secret", "parse_operator"]

log = logging.getLogger(__name__)

StaffKind = Literal["unit_staff", "postal_staff"]
"""A unit's clerk, or the public postal service's staff assigned to the counter (Decree 107/2021)."""

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class OperatorBookError(SohoaError, ValueError):
    """The operator book (or an entry of it) is not what it must be."""


@dataclass(frozen=True, slots=True)
class StaffOperator:
    """One operator: an opaque id (never a name or an ID number), a kind, and the hashes of the
    PIN and the staff card's token (either may be missing)."""

    id: str
    kind: StaffKind
    pin_hash: str | None = None
    card_hash: str | None = None

    def __repr__(self) -> str:  # the hashes stay out of logs and tracebacks
        return f"StaffOperator(id={self.id!r}, kind={self.kind!r})"


class OperatorBook:
    """The operators this device knows, read from ``path`` (None: empty until :meth:`replace`).

    >>> book = OperatorBook()
    >>> book.replace([StaffOperator("op-1", "unit_staff", pin_hash=hash_secret("2468"))])
    >>> book.get("op-1").kind
    'unit_staff'
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._operators: dict[str, StaffOperator] = {}
        self.version = 0
        """The fleet's list version held (0: none)."""
        if path is not None and path.exists():
            self._operators = {o.id: o for o in self._read(path)}
            self.version = self._read_version(path)

    @staticmethod
    def _read_version(path: Path) -> int:
        version = json.loads(path.read_text(encoding="utf-8")).get("version", 0)
        return version if isinstance(version, int) else 0

    @staticmethod
    def _read(path: Path) -> list[StaffOperator]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OperatorBookError(f"the operator book cannot be read ({type(exc).__name__})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("operators"), list):
            raise OperatorBookError("the operator book has no 'operators' list")
        return [parse_operator(item) for item in raw["operators"]]

    def replace(self, operators: list[StaffOperator], *, version: int = 0) -> None:
        """Take a new list (the fleet's), written to disk first when the book has a path."""
        if self.path is not None:
            data = {"version": version,
                    "operators": [{"id": o.id, "kind": o.kind, "pin_hash": o.pin_hash, "card_hash": o.card_hash}
                                  for o in operators]}
            atomic_write(self.path, json.dumps(data, sort_keys=True).encode())
        self._operators = {o.id: o for o in operators}
        self.version = version

    def take(self, pushed: OperatorList) -> bool:
        """Take the fleet's list (the retained ``operators`` message) unless it is older than the
        one held; True when taken. Written to disk before it is used."""
        if pushed.version < self.version:
            log.info("operator list version %d older than the one held (%d); ignored", pushed.version, self.version)
            return False
        self.replace([StaffOperator(o.id, o.kind, o.pin_hash, o.card_hash) for o in pushed.operators],
                     version=pushed.version)
        log.info("operator list %d taken (%d operators)", pushed.version, len(pushed.operators))
        return True

    def get(self, operator_id: str) -> StaffOperator | None:
        return self._operators.get(operator_id)

    def by_card(self, token: str) -> StaffOperator | None:
        """The operator whose staff card holds ``token`` (each card hash checked: a handful per unit)."""
        return next((o for o in self._operators.values() if o.card_hash and check_secret(token, o.card_hash)), None)

    def __len__(self) -> int:
        return len(self._operators)


def parse_operator(item: object) -> StaffOperator:
    """One entry of the book, checked (bad input is an :class:`OperatorBookError` naming the field)."""
    if not isinstance(item, dict):
        raise OperatorBookError("an operator entry is not an object")
    operator_id, kind = item.get("id"), item.get("kind")
    if not isinstance(operator_id, str) or not _ID.fullmatch(operator_id):
        raise OperatorBookError("an operator's id must be 1-64 letters, digits, '.', '_' or '-'")
    if kind not in ("unit_staff", "postal_staff"):
        raise OperatorBookError("an operator's kind must be unit_staff or postal_staff")
    hashes = []
    for field in ("pin_hash", "card_hash"):
        value = item.get(field)
        if value is not None and (not isinstance(value, str) or not value.startswith("scrypt$")):
            raise OperatorBookError(f"an operator's {field} must be a scrypt hash")
        hashes.append(value)
    staff_kind: StaffKind = "unit_staff" if kind == "unit_staff" else "postal_staff"
    return StaffOperator(operator_id, staff_kind, hashes[0], hashes[1])
