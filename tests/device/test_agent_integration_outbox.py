"""The outbox's "held until the dossier closes" state, on a real SQLite outbox in a temporary
directory: held pages are durable but not sent, survive a reopen (a restart after a crash), are
sent by ``deliver_held`` exactly once, and are forgotten (files too) when released."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from device.delivery.outbox import Outbox

TOPIC = "sohoa/v1/kiosk-test/event"


def message(tag: str) -> Callable[[str], tuple[str, bytes, str]]:
    return lambda sha: (TOPIC, f'{{"page":"{tag}","sha":"{sha}"}}'.encode(), f"msg-{tag}")


def test_held_pages_survive_a_restart_and_go_once(tmp_path: Path) -> None:
    """Bad input tried: the outbox is closed without releasing (a crash) and reopened; a stray
    temporary file is left beside the held files (it must go, the held files must stay);
    ``deliver_held`` is called twice (the second finds nothing)."""
    pages = {"p1": b"first page bytes", "p2": b"second page bytes"}
    with Outbox(tmp_path) as outbox:
        shas = {pid: outbox.hold_page("dossier-1", pid, data, "image/png", message(pid))
                for pid, data in pages.items()}
        assert outbox.pending_messages() == [] and outbox.pending_files() == []
        assert outbox.held() == {"dossier-1": 2}
    (tmp_path / "files" / ".tmp-stray").write_bytes(b"half written")
    with Outbox(tmp_path) as outbox:  # the restart
        assert not (tmp_path / "files" / ".tmp-stray").exists()
        assert outbox.held() == {"dossier-1": 2}
        assert all(outbox.file_path(sha).read_bytes() == pages[pid] for pid, sha in shas.items())
        assert outbox.deliver_held() == 2
        assert outbox.deliver_held() == 0
        assert outbox.held() == {}
        assert sorted(m.id for m in outbox.pending_messages()) == ["msg-p1", "msg-p2"]
        assert {f.sha256 for f in outbox.pending_files()} == set(shas.values())


def test_release_forgets_held_pages_but_not_queued_files(tmp_path: Path) -> None:
    """Bad input tried: a cancelled dossier whose page has the same bytes as a page already queued
    for delivery (the queued file must stay), and a delivered file that an open dossier still
    holds (the held copy must stay)."""
    with Outbox(tmp_path) as outbox:
        shared = outbox.add_page(b"same bytes", "image/png", message("queued"))
        held_shared = outbox.hold_page("d1", "a", b"same bytes", "image/png", message("a"))
        only = outbox.hold_page("d1", "b", b"only held", "image/png", message("b"))
        assert held_shared == shared
        assert outbox.release_held("d1", ["b"]) == 1
        assert not outbox.file_path(only).exists()
        outbox.file_delivered(shared)  # the queued copy reached the fleet; d1 still holds it
        assert outbox.file_path(shared).exists()
        assert outbox.release_held("d1") == 1
        assert not outbox.file_path(shared).exists()
        assert outbox.held() == {} and [m.id for m in outbox.pending_messages()] == ["msg-queued"]
