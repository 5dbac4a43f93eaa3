"""Encryption at rest of the outbox's files on a real file system: what lies on the card is
ciphertext bound to its name; a card read elsewhere, a missing key, another key and a damaged file
are each a clear error that deletes nothing; files survive ``kill -9`` in the middle of sealing
and are then delivered exactly once, verified by the sha256 of their plaintext at the receiver."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device.config import UploadConfig
from device.delivery.outbox import Outbox
from device.delivery.sealing import MAGIC, OVERHEAD, BoardKey, FileKey, Sealer, open_plain
from device.delivery.uploader import Uploader
from device.errors import OutboxFileDamaged, OutboxKeyError
from tests.device.agent_harness import REPO, FileReceiver

DEVICE = "kiosk-0001"
TOPIC = "sohoa/v1/kiosk-0001/event"


def _page(n: int, size: int = 4096) -> bytes:
    """A page-like body: a PNG signature, then bytes a search for plaintext can find."""
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(f"page {n}".encode()).digest() * (size // 32)


def _sealed_outbox(state: Path, board: Path, device: str = DEVICE) -> Outbox:
    return Outbox(state, sealer=Sealer.for_outbox(state, device, FileKey(board / "board.key")))


def _add(outbox: Outbox, data: bytes, n: int) -> str:
    return outbox.add_page(data, "image/png", lambda sha: (TOPIC, b"{}", f"message-{n}"))


def test_what_lies_on_the_card_is_ciphertext_bound_to_its_name(tmp_path: Path) -> None:
    """Queued and held pages are sealed on disk (no plaintext run in them, 44 bytes longer), the
    key file (0600) holds the data key only wrapped, and reading gives the page back."""
    state, board = tmp_path / "state", tmp_path / "board"
    pages = {n: _page(n) for n in range(3)}
    with _sealed_outbox(state, board) as outbox:
        shas = {n: _add(outbox, pages[n], n) for n in range(2)}
        shas[2] = outbox.hold_page("dossier", "page-2", pages[2], "image/png", lambda sha: (TOPIC, b"{}", "m-2"))
        for n, sha in shas.items():
            blob = outbox.file_path(sha).read_bytes()
            assert blob.startswith(MAGIC) and len(blob) == len(pages[n]) + OVERHEAD
            assert pages[n][8:40] not in blob and b"PNG" not in blob
            assert outbox.read_file(sha) == pages[n]
            assert sha == hashlib.sha256(pages[n]).hexdigest()
    key_file = state / "outbox.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"wrapped" in key_file.read_bytes()
    with _sealed_outbox(state, board) as outbox:  # a restart opens what the last run sealed
        assert [outbox.read_file(shas[n]) for n in range(2)] == [pages[0], pages[1]]


def test_a_card_read_elsewhere_opens_nothing_and_loses_nothing(tmp_path: Path) -> None:
    """The card copied and read with another board's key, or under another device id: a clear
    error naming the count of files waiting; the files are untouched and still open at home."""
    state, board = tmp_path / "state", tmp_path / "board"
    with _sealed_outbox(state, board) as outbox:
        sha = _add(outbox, _page(1), 1)
    stolen = tmp_path / "stolen"
    shutil.copytree(state, stolen)
    before = (stolen / "files" / sha).read_bytes()
    with pytest.raises(OutboxKeyError, match=r"does not open with this device's file key.*1 encrypted file"):
        Sealer.for_outbox(stolen, DEVICE, FileKey(tmp_path / "thief" / "board.key"))
    with pytest.raises(OutboxKeyError, match="does not open"):
        Sealer.for_outbox(stolen, "kiosk-0002", FileKey(board / "board.key"))
    with pytest.raises(OutboxKeyError, match="made with the file key"):
        Sealer.for_outbox(stolen, DEVICE, BoardKey([sys.executable, "-c", f"print('{'ab' * 32}')"]))
    assert (stolen / "files" / sha).read_bytes() == before
    with _sealed_outbox(state, board) as outbox:
        assert outbox.read_file(sha) == _page(1)


def test_a_missing_key_is_a_clear_error_while_files_wait(tmp_path: Path) -> None:
    """No key file but sealed files waiting: refused with the way out, nothing deleted; once the
    files are moved aside a new key is made, and again at each start with nothing waiting."""
    state, board = tmp_path / "state", tmp_path / "board"
    with _sealed_outbox(state, board) as outbox:
        sha = _add(outbox, _page(1), 1)
    (state / "outbox.key").unlink()
    with pytest.raises(OutboxKeyError, match=r"outbox key .* is missing and 1 encrypted file\(s\) wait"):
        _sealed_outbox(state, board)
    assert (state / "files" / sha).read_bytes().startswith(MAGIC)
    (state / "files").rename(tmp_path / "aside")
    with _sealed_outbox(state, board) as outbox:
        assert outbox.depth().files == 0  # the row whose file went aside is forgotten
        first = outbox.sealer.key_id if outbox.sealer else ""
    with _sealed_outbox(state, board) as outbox:  # nothing waits: a fresh data key
        assert outbox.sealer is not None and outbox.sealer.key_id != first
    (state / "outbox.key").unlink()
    with _sealed_outbox(state, board) as outbox:
        assert outbox.read_file(_add(outbox, _page(2), 2)) == _page(2)


def test_a_file_sealed_under_another_key_or_damaged_is_named_as_such() -> None:
    sealer, other = Sealer(os.urandom(32), "01" * 8), Sealer(os.urandom(32), "02" * 8)
    sha = hashlib.sha256(b"page").hexdigest()
    sealed = sealer.seal(sha, b"page")
    with pytest.raises(OutboxKeyError, match=f"sealed under key {'01' * 8}, this device holds key {'02' * 8}"):
        other.open(sha, sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(OutboxFileDamaged, match="authentication tag"):
        sealer.open(sha, flipped)
    with pytest.raises(OutboxFileDamaged):  # swapped for another page's file: the name is authenticated
        sealer.open(hashlib.sha256(b"other").hexdigest(), sealed)
    with pytest.raises(OutboxFileDamaged):  # the header itself damaged
        sealer.open(sha, b"X" + sealed[1:])
    with pytest.raises(OutboxKeyError, match="encrypted but this outbox has no key"):
        open_plain(sha, sealed)


def test_a_damaged_file_is_set_aside_and_the_others_are_delivered_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One byte of one sealed file flipped: it is moved to ``unreadable/`` as it was, with an
    error line; the other files reach a real HTTP receiver once each, verified by sha256."""
    receiver = FileReceiver()
    outbox = _sealed_outbox(tmp_path / "state", tmp_path / "board")
    uploader = Uploader(outbox, receiver.url, DEVICE, UploadConfig())
    try:
        shas = [_add(outbox, _page(n), n) for n in range(4)]
        damaged = outbox.file_path(shas[1])
        blob = bytearray(damaged.read_bytes())
        blob[len(blob) // 2] ^= 0x40
        damaged.write_bytes(bytes(blob))
        with caplog.at_level(logging.ERROR, logger="device.delivery.uploader"):
            assert uploader.upload_due() == 3
        assert set(receiver.files) == {shas[0], shas[2], shas[3]}
        assert receiver.puts == 3 and receiver.bad == 0
        assert all(hashlib.sha256(body).hexdigest() == sha for sha, body in receiver.files.items())
        assert (outbox.unreadable_dir / shas[1]).read_bytes() == bytes(blob)
        assert outbox.depth().files == 0 and not list(outbox.files_dir.iterdir())
        assert "fails its authentication tag" in caplog.text and "must be rescanned" in caplog.text
    finally:
        uploader.close()
        outbox.close()
        receiver.close()


def test_files_written_before_encryption_are_still_delivered(tmp_path: Path) -> None:
    """An agent upgraded with pages still queued in the clear sends them as they are."""
    receiver = FileReceiver()
    with Outbox(tmp_path / "state") as plain:
        sha = _add(plain, _page(1), 1)
    outbox = _sealed_outbox(tmp_path / "state", tmp_path / "board")
    uploader = Uploader(outbox, receiver.url, DEVICE, UploadConfig())
    try:
        assert uploader.upload_due() == 1 and receiver.files == {sha: _page(1)}
    finally:
        uploader.close()
        outbox.close()
        receiver.close()


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from device.delivery.outbox import Outbox
    from device.delivery.sealing import FileKey, Sealer
    state, board, first = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    outbox = Outbox(state, sealer=Sealer.for_outbox(state, "kiosk-0001", FileKey(board / "board.key")))
    n = first
    while True:
        data = n.to_bytes(4, "big") * 65536  # 256 KiB: long enough to be cut while written
        sha = outbox.add_page(data, "image/png", lambda s, n=n: ("sohoa/v1/kiosk-0001/event", b"{}", f"m-{n}"))
        print(n, sha, flush=True)
        n += 1
""")


def test_kill9_while_sealing_loses_nothing_committed_then_each_page_arrives_once(tmp_path: Path) -> None:
    """A real process sealing 256 KiB pages is ``kill -9``ed four times, at different moments
    (the first as it starts). After each kill every page it reported stored
    opens to its plaintext, nothing half-written remains; then all are delivered once each."""
    state, board = tmp_path / "state", tmp_path / "board"
    committed: dict[str, int] = {}
    first = 0
    for round_, pages_before_kill in enumerate((0, 3, 7, 12)):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(state), str(board), str(first)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(pages_before_kill):
            line = proc.stdout.readline()
            assert line, f"the writer died in round {round_}"
            n, sha = line.split()
            committed[sha] = int(n)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rest = proc.stdout.read()  # lines printed before the kill landed are committed too
        proc.stdout.close()
        for line in rest.splitlines():
            n, sha = line.split()
            committed[sha] = int(n)
        first = max(committed.values(), default=-1) + 1
        with _sealed_outbox(state, board) as outbox:
            assert not [p for p in outbox.files_dir.iterdir() if p.name.startswith(".tmp-")]
            assert not list(state.glob(".outbox.key.*"))
            stored = {f.sha256 for f in outbox.pending_files(limit=1000)}
            assert set(committed) <= stored
            for sha in stored:
                data = outbox.read_file(sha)
                assert hashlib.sha256(data).hexdigest() == sha
    assert len(committed) >= 22
    receiver = FileReceiver()
    outbox = _sealed_outbox(state, board)
    uploader = Uploader(outbox, receiver.url, DEVICE, UploadConfig())
    try:
        delivered = uploader.upload_due()
        assert set(committed) <= set(receiver.files) and receiver.puts == delivered == len(receiver.files)
        assert receiver.bad == 0 and outbox.depth().files == 0
    finally:
        uploader.close()
        outbox.close()
        receiver.close()


def _board_command(tmp_path: Path, output: str, code: int = 0) -> list[str]:
    """A stand-in for ``rpi-otp-private-key`` (the OTP is hardware we do not have here)."""
    script = tmp_path / f"otp-{hashlib.sha256(f'{output}{code}'.encode()).hexdigest()[:8]}.py"
    script.write_text(f"import sys\nprint({output!r})\nsys.exit({code})\n")
    return [sys.executable, str(script)]


def test_the_board_key_is_read_and_refused_when_unprogrammed(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert BoardKey(_board_command(tmp_path, key.hex())).key_encryption_key() == key
    with pytest.raises(OutboxKeyError, match="not programmed"):
        BoardKey(_board_command(tmp_path, "00" * 32)).key_encryption_key()
    with pytest.raises(OutboxKeyError, match="did not print a 256-bit key"):
        BoardKey(_board_command(tmp_path, "not hex")).key_encryption_key()
    with pytest.raises(OutboxKeyError, match="exited 3"):
        BoardKey(_board_command(tmp_path, "", code=3)).key_encryption_key()
    with pytest.raises(OutboxKeyError, match="cannot read the board's key"):
        BoardKey([str(tmp_path / "no-such-command")]).key_encryption_key()
    state = tmp_path / "state"
    board = BoardKey(_board_command(tmp_path, key.hex()))
    with Outbox(state, sealer=Sealer.for_outbox(state, DEVICE, board)) as outbox:
        sha = _add(outbox, _page(1), 1)
    with Outbox(state, sealer=Sealer.for_outbox(state, DEVICE, board)) as outbox:
        assert outbox.read_file(sha) == _page(1)
    with pytest.raises(OutboxKeyError, match="does not open"):  # the card in another board
        Sealer.for_outbox(state, DEVICE, BoardKey(_board_command(tmp_path, os.urandom(32).hex())))
