"""Document numbers: the ``n`` of ``<code>.<n>`` (a component) and ``<code>-KQ<n>`` (a result).

A number is never given twice for one dossier on one device: the :class:`NumberBook` keeps,
per dossier code and kind, the last number given, on disk (written atomically before the
dossier's documents are built), so a reopened dossier (a supplement, a second visit, another
day, after a restart) goes on from where it stopped. Numbers are taken when the dossier closes
and never handed back: a dossier the outbox refused (disk full) leaves a gap, never a reuse.

Two devices scanning parts of one dossier while offline cannot know each other's numbers: the
fleet is the authority. It keeps every document under the name its device gave unless that
name's number is already held by another document of the dossier, and then renames the newcomer
to the dossier's next free number (``fleet.dossiers.registry``, the rename logged and kept with
the document). The device's name is provisional; the fleet's is the one reports and downloads use.

>>> book = NumberBook()
>>> book.reserve("H10-1", "component", 2), book.reserve("H10-1", "component", 1)
(1, 3)
>>> book.reserve("H10-1", "result", 1), book.last("H10-1", "component")
(1, 3)
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from device.durable import atomic_write
from device.errors import SohoaError

log = logging.getLogger(__name__)

DocumentKind = Literal["component", "result"]
"""A dossier's input documents (thành phần hồ sơ) or the procedure's result (kết quả)."""


class NumberBookError(SohoaError, OSError):
    """The number book cannot be written: no number is given (the dossier stays open)."""


class Numbering(Protocol):
    """Gives fresh document numbers for a dossier (:class:`NumberBook`)."""

    def reserve(self, code: str, kind: DocumentKind, count: int) -> int:
        """The first of ``count`` numbers never given before for ``code`` and ``kind``."""
        ...

    def last(self, code: str, kind: DocumentKind) -> int:
        """The last number given for ``code`` and ``kind`` (0: none yet)."""
        ...


class NumberBook:
    """The last document number given per dossier code and kind, kept in a JSON file (``path``)
    or in memory (None: tests, a session without a state directory). Entries unused for
    ``keep_days`` are forgotten (a dossier reopened after more than a year is left to the fleet's
    reconciliation). Thread-safe.

    >>> NumberBook().reserve("H10-1", "result", 1)
    1
    """

    def __init__(self, path: Path | None = None, *, keep_days: int = 400) -> None:
        self.path = path
        self.keep = timedelta(days=keep_days)
        self._lock = threading.Lock()
        self._book: dict[str, dict[str, int | str]] = self._load() if path is not None else {}

    def _load(self) -> dict[str, dict[str, int | str]]:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # an unreadable book must not stop the counter: the fleet renames what collides
            log.error("document number book unreadable (%s); starting a new one", type(exc).__name__)
            return {}
        return {str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}

    def last(self, code: str, kind: DocumentKind) -> int:
        """The last number given for ``code`` and ``kind`` (0: none yet)."""
        with self._lock:
            value = self._book.get(code, {}).get(kind, 0)
            return value if isinstance(value, int) else 0

    def reserve(self, code: str, kind: DocumentKind, count: int) -> int:
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            now = datetime.now(UTC)
            entry = dict(self._book.get(code, {}))
            last = entry.get(kind, 0)
            first = (last if isinstance(last, int) else 0) + 1
            entry[kind] = first + count - 1
            entry["used"] = now.date().isoformat()
            book = {**self._forget_old(now), code: entry}
            self._save(book)
            self._book = book
            return first

    def _forget_old(self, now: datetime) -> dict[str, dict[str, int | str]]:
        horizon = (now - self.keep).date().isoformat()
        return {c: e for c, e in self._book.items() if str(e.get("used", "")) >= horizon}

    def _save(self, book: dict[str, dict[str, int | str]]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(book, sort_keys=True).encode())
        except OSError as exc:
            raise NumberBookError(f"the document number book cannot be written ({type(exc).__name__})") from exc
