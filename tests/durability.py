"""Which files and folders a piece of code fsyncs: the only way to see, without cutting the power,
whether a new name will survive a cut."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """From now on (until the test ends), every ``os.fsync`` still happens and the path of what
    it synced is appended to the returned list."""
    synced: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(f"/proc/self/fd/{fd}").readlink())
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced
