"""Shared knobs of the bad-input suite: how many generated inputs a surface gets (a bounded pass
in ``make test``, thousands in ``make fuzz``), and a tally of the inputs tried per surface,
written to ``test-artifacts/fuzz-tally.json`` at the end of the run for the figures we report."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

LONG = os.environ.get("SOHOA_FUZZ") == "long"
"""``make fuzz``: many more generated inputs per surface."""

_tally: Counter[str] = Counter()
_lock = threading.Lock()


def examples(bounded: int) -> int:
    """Generated inputs for one property: ``bounded`` in ``make test``, 40 times that in ``make fuzz``."""
    return bounded * 40 if LONG else bounded


def fuzz_settings(bounded: int) -> settings:
    """Hypothesis settings for a property over a real service: no deadline (the machine is shared),
    no database of past failures (the found ones become explicit cases), a fixed seed in the
    bounded pass so that ``make test`` is repeatable."""
    return settings(max_examples=examples(bounded), deadline=None, database=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def tried(surface: str, n: int = 1) -> None:
    """Count ``n`` hostile inputs tried against ``surface``."""
    with _lock:
        _tally[surface] += n


def tally() -> dict[str, int]:
    """This process's counts (a worker of a parallel run hands them to the controller)."""
    with _lock:
        return dict(_tally)


def add_tally(counts: dict[str, int]) -> None:
    """Fold in the counts a worker of a parallel run reported."""
    with _lock:
        _tally.update(counts)


def write_tally(directory: Path) -> Path | None:
    if not _tally:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fuzz-tally.json"
    path.write_text(json.dumps({"long": LONG, "inputs": dict(sorted(_tally.items()))}, indent=2) + "\n")
    return path
