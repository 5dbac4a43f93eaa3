"""Personal data out of the log lines the device ships (``collect_logs``).

The agent's own log calls name no dossier (they say "a dossier", "document 2"); this is the net
behind them, for a line that still carries one (a library's message, an exception's text, a
file name). Before a line enters the ring that ``collect_logs`` uploads, :class:`Scrubber`
replaces with ``[code]`` / ``[number]``:

- every dossier code the device has seen (the session tells it: :meth:`Scrubber.remember`),
  also inside file names (``<code>.1.pdf``) and as a result's ``<code>-KQ<n>``;
- anything shaped like a national dossier code (``000.00.12.H10-261102-0001``);
- runs of 9 or 12 digits (the old and the chip-based citizen ID numbers).

>>> scrub = Scrubber()
>>> scrub.remember("WALKIN-7F3A")
>>> scrub("wrote WALKIN-7F3A.1.pdf for 000.00.12.H10-261102-0001-KQ1, card 001203004567")
'wrote [code].1.pdf for [code], card [number]'
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

NATIONAL_CODE = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}-\d{6}-\d{4,6}(?:-KQ\d*)?", re.IGNORECASE)
ID_NUMBER = re.compile(r"(?<!\d)(?:\d{12}|\d{9})(?!\d)")
REMEMBERED = 256
"""Codes kept to scrub (the newest): far more than the log ring's lines can name."""


class Scrubber:
    """Replaces personal data in a log line; thread-safe (log records come from every thread)."""

    def __init__(self) -> None:
        self._codes: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def remember(self, code: str | None) -> None:
        """Scrub ``code`` (a dossier code the device handles) from every line from now on."""
        if not code or len(code) < 3:
            return
        with self._lock:
            self._codes[code] = None
            self._codes.move_to_end(code)
            while len(self._codes) > REMEMBERED:
                self._codes.popitem(last=False)
            # Longest first, so a code that contains another is replaced whole.
            alternatives = sorted(self._codes, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(c) for c in alternatives), re.IGNORECASE)

    def __call__(self, line: str) -> str:
        with self._lock:
            known = self._pattern
        if known is not None:
            line = known.sub("[code]", line)
        line = NATIONAL_CODE.sub("[code]", line)
        return ID_NUMBER.sub("[number]", line)
