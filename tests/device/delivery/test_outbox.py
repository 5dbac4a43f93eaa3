"""The outbox on a real file system: durable across reopening, crash leftovers tidied, files
named by their sha256, idempotent on ids, and a real ENOSPC on a tiny tmpfs handled without
damaging what was stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.delivery.outbox import Outbox
from device.errors import OutboxFull
from tests.services import tmpfs

TOPIC = "sohoa/v1/kiosk-0001/event"


def _message(n: int) -> tuple[str, bytes, str]:
    return TOPIC, f'{{"n": {n}}}'.encode(), f"message-{n:04d}"


def test_pages_and_messages_survive_reopening(tmp_path: Path) -> None:
    """Stored pages and messages are there after the outbox is closed and opened again (as
    after a restart); acknowledged ones are gone; depth counts what is left."""
    with Outbox(tmp_path) as outbox:
        sha = outbox.add_page(b"page-one", "image/png", lambda s: _message(1))
        assert sha == Outbox.sha256(b"page-one")
        assert outbox.file_path(sha).read_bytes() == b"page-one"
        outbox.add_message(*_message(2))
        outbox.add_message(*_message(2))  # the same id twice is stored once
        outbox.add_message(*_message(3))
        outbox.remove_messages(["message-0003"])
    with Outbox(tmp_path) as outbox:
        pending = outbox.pending_messages()
        assert [m.id for m in pending] == ["message-0001", "message-0002"]
        assert pending[0].topic == TOPIC
        assert outbox.depth().model_dump() == {"events": 2, "files": 1, "bytes": 8}
        assert [f.sha256 for f in outbox.pending_files()] == [sha]
        outbox.file_delivered(sha)
        assert not outbox.file_path(sha).exists()
        assert outbox.depth().files == 0


def test_crash_leftovers_are_tidied(tmp_path: Path) -> None:
    """A half-written temporary file and a renamed file whose row never committed (a crash
    between the two) are removed at the next open; a row whose file vanished is dropped."""
    with Outbox(tmp_path) as outbox:
        kept = outbox.add_page(b"kept", "image/png", lambda s: _message(1))
        lost = outbox.add_page(b"lost", "image/png", lambda s: _message(2))
    (tmp_path / "files" / ".tmp-deadbeef").write_bytes(b"half")
    orphan = tmp_path / "files" / Outbox.sha256(b"orphan")
    orphan.write_bytes(b"orphan")
    (tmp_path / "files" / lost).unlink()
    with Outbox(tmp_path) as outbox:
        assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [kept]
        assert [f.sha256 for f in outbox.pending_files()] == [kept]


def test_retry_backoff_and_commands_seen(tmp_path: Path) -> None:
    with Outbox(tmp_path) as outbox:
        sha = outbox.add_page(b"x", "image/png", lambda s: _message(1))
        outbox.file_retry(sha, 60)
        assert outbox.pending_files() == []
        due = outbox.next_file_due()
        assert due is not None
        assert [f.attempts for f in outbox.pending_files(now=due + 1)] == [1]
        assert outbox.first_time_command("cmd-1")
        assert not outbox.first_time_command("cmd-1")
        outbox.batch_started("batch-1", "scanner")
        outbox.batch_page("batch-1")
        outbox.add_page(b"y", "image/png", lambda s: _message(2), batch_id="batch-1")
        outbox.add_page(b"y", "image/png", lambda s: _message(2), batch_id="batch-1")  # a retry: once
        assert outbox.open_batches() == [("batch-1", "scanner", 2)]
        outbox.batch_finished("batch-1")
        assert outbox.open_batches() == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: an outbox whose disk really fills up."""
    with tmpfs(tmp_path / "disk", "2m") as mount_point:
        yield mount_point


def test_enospc_mid_write_keeps_what_was_stored(tiny_disk: Path) -> None:
    """With no floor, pages of 300 kB are written onto a 2 MB tmpfs until the kernel says
    ENOSPC: :class:`OutboxFull` is raised, no temporary or unrecorded file remains, every page
    stored before is whole, and once space is freed pages are stored again."""
    outbox = Outbox(tiny_disk / "state", min_free_bytes=0)
    stored: dict[str, bytes] = {}
    try:
        with pytest.raises(OutboxFull):
            for n in range(100):
                data = os.urandom(300_000)
                sha = outbox.add_page(data, "image/png", lambda s, n=n: _message(n))  # type: ignore[misc]
                stored[sha] = data
        assert len(stored) >= 3
        names = sorted(p.name for p in (tiny_disk / "state" / "files").iterdir())
        assert names == sorted(stored)
        for sha, data in stored.items():
            assert outbox.file_path(sha).read_bytes() == data
        assert outbox.depth().files == len(stored)
        assert outbox.low() is False  # no floor configured
        first = next(iter(stored))
        outbox.file_delivered(first)
        outbox.add_page(b"small page", "image/png", lambda s: _message(999))
        assert outbox.depth().files == len(stored)
    finally:
        outbox.close()
