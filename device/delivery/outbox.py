"""Store-and-forward: every page file and every message is on disk before a capture is
acknowledged, and leaves only when the other side holds it.

* Messages (events, command acks, reported config) sit in SQLite (WAL, ``synchronous=FULL``)
  until the fleet confirms it stored them (``stored``, see :mod:`device.delivery.publisher`) or,
  with a fleet that does not confirm, until the broker's PUBACK. A message the broker took and
  the fleet has not confirmed yet is marked ``sent`` and ``due`` for another send. After a crash
  they are published again: receivers deduplicate on the message id.
* Page files sit in ``files/<sha256>``, written to a temporary name, fsynced, renamed, and the
  directory fsynced, before the row that names them is committed. They are deleted after the
  fleet answers 200/201 for that sha256. With a :class:`~device.delivery.sealing.Sealer` (the
  agent always has one) they are encrypted before they touch the disk and decrypted only to be
  sent (:meth:`Outbox.read_file`); a file that cannot be opened is moved to ``unreadable/``
  (:meth:`Outbox.set_aside`) so that it stops nothing else and nothing is lost.
* Pages of an open dossier are *held*: their files and the ``page_captured`` message that will
  describe them are on disk from the moment they are captured (:meth:`Outbox.hold_page`), but
  nothing is sent until the dossier closes (:meth:`Outbox.release_held`). A crash leaves them
  held; at the next start :meth:`Outbox.deliver_held` sends them as single pages: never lost.
* Disk is bounded: :meth:`Outbox.low` says when free space is under the floor, and a write that
  meets ENOSPC raises :class:`OutboxFull` without touching what is already stored.

>>> with Outbox(Path("/tmp/state")) as outbox:  # doctest: +SKIP
...     outbox.add_message("sohoa/v1/kiosk-0001/event", b"{...}", "3f0c...")
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from device.delivery.sealing import Sealer, open_plain
from device.durable import fsync_dir
from device.errors import OutboxFull
from protocol.messages import OutboxDepth

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    sent REAL,
    due REAL NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    pages INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS held (
    page_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    topic TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands_seen (
    id TEXT PRIMARY KEY,
    seen REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class PendingMessage:
    seq: int
    id: str
    topic: str
    payload: bytes
    sent: bool = False
    """The broker took it before (this is a send again)."""


@dataclass(frozen=True, slots=True)
class PendingFile:
    sha256: str
    size: int
    content_type: str
    attempts: int


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


class Outbox:
    """The durable queue under ``state_dir`` (``outbox.db`` and ``files/``). Thread-safe."""

    def __init__(self, state_dir: Path, min_free_bytes: int = 0, *, sealer: Sealer | None = None) -> None:
        """``sealer``: encrypt files at rest with it (None keeps them in the clear: tests, tools)."""
        self.state_dir = state_dir
        self.files_dir = state_dir / "files"
        self.unreadable_dir = state_dir / "unreadable"
        self.min_free_bytes = min_free_bytes
        self.sealer = sealer
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(state_dir / "outbox.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA journal_size_limit=8388608")  # give the WAL's space back after checkpoints
        self._db.executescript(_SCHEMA)
        self._add_delivery_columns()
        self.changed = threading.Condition()
        """Notified whenever something is added (publisher and uploader wait on it)."""
        self._recover_files()

    # --- life cycle -----------------------------------------------------------------------------

    def _add_delivery_columns(self) -> None:
        """An outbox written by an agent that trusted the broker's PUBACK lacks the columns that
        track the fleet's confirmation: add them (every message is then simply not sent yet)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        added = (
            ("sent", "ALTER TABLE messages ADD COLUMN sent REAL"),
            ("due", "ALTER TABLE messages ADD COLUMN due REAL NOT NULL DEFAULT 0"),
            ("tries", "ALTER TABLE messages ADD COLUMN tries INTEGER NOT NULL DEFAULT 0"),
        )
        for name, statement in added:
            if name not in columns:
                self._db.execute(statement)

    def _recover_files(self) -> None:
        """After a crash: drop half-written temporaries and files no committed row names."""
        with self._lock:
            known = {row[0] for row in self._db.execute("SELECT sha256 FROM files")}
            held = {row[0] for row in self._db.execute("SELECT sha256 FROM held")}
        removed = 0
        for entry in self.files_dir.iterdir():
            if entry.name.startswith(".tmp-") or entry.name not in known | held:
                entry.unlink(missing_ok=True)
                removed += 1
        missing = [sha for sha in known if not (self.files_dir / sha).exists()]
        if missing:
            log.warning(
                "%s outbox file(s) no longer on disk (delivered just before a stop, or lost); forgotten", len(missing)
            )
            with self._lock:
                self._db.executemany("DELETE FROM files WHERE sha256 = ?", [(sha,) for sha in missing])
        if removed:
            log.info("outbox: removed %s unfinished file(s) left by an interrupted write", removed)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # --- disk -----------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        st = os.statvfs(self.state_dir)
        return st.f_bavail * st.f_frsize

    def total_bytes(self) -> int:
        st = os.statvfs(self.state_dir)
        return st.f_blocks * st.f_frsize

    def low(self) -> bool:
        """True when free space is under the floor: new scans must be refused."""
        return self.free_bytes() < self.min_free_bytes

    # --- messages -------------------------------------------------------------------------------

    def add_message(self, topic: str, payload: bytes, message_id: str) -> None:
        """Store one message durably (idempotent on ``message_id``). Raises OutboxFull."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO messages (id, topic, payload, created) VALUES (?, ?, ?, ?)",
                    (message_id, topic, payload, time.time()),
                )
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                raise OutboxFull("disk full: cannot store a message") from None
            raise
        self._notify()

    def pending_messages(self, after_seq: int = 0, limit: int = 100, now: float | None = None) -> list[PendingMessage]:
        """Messages after ``after_seq`` in order; with ``now``, only those due by then (a message
        the broker took waits for the fleet's confirmation until its ``due`` time)."""
        due = float("inf") if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, topic, payload, sent IS NOT NULL FROM messages WHERE seq > ? AND due <= ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, due, limit),
            ).fetchall()
        return [PendingMessage(r[0], r[1], r[2], bytes(r[3]), bool(r[4])) for r in rows]

    def due_again(self, up_to_seq: int, now: float, limit: int) -> list[PendingMessage]:
        """Messages up to ``up_to_seq`` that the broker took, the fleet has not confirmed, and
        whose wait is over: the earliest due first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, topic, payload, 1 FROM messages WHERE sent IS NOT NULL AND due <= ? AND seq <= ?"
                " ORDER BY due LIMIT ?", (now, up_to_seq, limit),
            ).fetchall()
        return [PendingMessage(r[0], r[1], r[2], bytes(r[3]), bool(r[4])) for r in rows]

    def messages_taken(self, ids: Iterable[str], now: float, wait: Callable[[int], float]) -> None:
        """The broker took these; keep them for the fleet's confirmation. ``wait(tries)`` is how long
        after ``now`` each is sent again unless confirmed (``tries``: sends so far, this one included)."""
        batch = list(ids)
        if not batch:
            return
        with self._lock:
            rows = self._db.execute(
                "SELECT id, tries FROM messages WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(batch),)
            ).fetchall()
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE messages SET sent = ?, tries = ?, due = ? WHERE id = ?",
                [(now, tries + 1, now + wait(tries + 1), message_id) for message_id, tries in rows],
            )
            self._db.execute("COMMIT")

    def confirm(self, ids: Iterable[str]) -> float | None:
        """The fleet holds these: forget them. Returns when the broker last took the newest of them
        (None when none was marked taken)."""
        batch = list(ids)
        if not batch:
            return None
        ids = (json.dumps(batch),)
        with self._lock:
            self._db.execute("BEGIN")
            row = self._db.execute(
                "SELECT MAX(sent) FROM messages WHERE id IN (SELECT value FROM json_each(?))", ids
            ).fetchone()
            self._db.execute("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))", ids)
            self._db.execute("COMMIT")
        return None if row is None or row[0] is None else float(row[0])

    def hasten(self, taken_before: float, now: float, spread_s: float) -> int:
        """Make due within ``spread_s`` of ``now`` (each at a random moment) the unconfirmed messages
        the broker took before ``taken_before`` and not due yet. Returns how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE messages SET due = ? + (abs(random()) % 1000000) / 1000000.0 * ?"
                " WHERE sent IS NOT NULL AND sent <= ? AND due > ?",
                (now, spread_s, taken_before, now),
            )
            return cur.rowcount

    def forget_taken(self) -> int:
        """Forget every message the broker took (the fleet no longer confirms). Returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM messages WHERE sent IS NOT NULL").rowcount

    def note(self, key: str) -> float | None:
        """A remembered number (``fleet_confirms``: when the fleet last confirmed something)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def set_note(self, key: str, value: float | None) -> None:
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def remove_messages(self, ids: Iterable[str]) -> None:
        """The broker acknowledged these: forget them."""
        batch = [(i,) for i in ids]
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM messages WHERE id = ?", batch)
            self._db.execute("COMMIT")

    # --- files ----------------------------------------------------------------------------------

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def file_path(self, sha256: str) -> Path:
        """Where the file named ``sha256`` lies (sealed when the outbox has a sealer)."""
        return self.files_dir / sha256

    def read_file(self, sha256: str) -> bytes:
        """The plaintext of a stored file. Raises FileNotFoundError,
        :class:`~device.errors.OutboxFileDamaged` or :class:`~device.errors.OutboxKeyError`."""
        blob = self.file_path(sha256).read_bytes()
        return self.sealer.open(sha256, blob) if self.sealer is not None else open_plain(sha256, blob)

    def set_aside(self, sha256: str) -> None:
        """Move a file that cannot be opened to ``unreadable/`` and stop trying to send it: the
        bytes stay for whoever can recover them, the other files go on."""
        with self._lock:
            self.unreadable_dir.mkdir(exist_ok=True)
            source = self.file_path(sha256)
            if source.exists():
                source.replace(self.unreadable_dir / sha256)
                fsync_dir(self.unreadable_dir)
                fsync_dir(self.files_dir)
            self._db.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))

    def add_page(
        self,
        data: bytes,
        content_type: str,
        make_message: Callable[[str], tuple[str, bytes, str]],
        batch_id: str | None = None,
    ) -> str:
        """Store a page file and the message that describes it, both durably, in that order.

        ``make_message(sha256)`` returns ``(topic, payload, message_id)``. Returns the sha256.
        ``batch_id`` counts the page in its open batch in the same transaction (so the count a
        restart reports for an interrupted batch is exactly the pages stored).
        Raises :class:`OutboxFull` (nothing half-stored remains) when the disk is full.
        """
        digest, tmp = self._write_temporary(data)
        final = self.file_path(digest)
        topic, payload, message_id = make_message(digest)
        try:
            with self._lock:
                tmp.replace(final)
                fsync_dir(self.files_dir)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT OR IGNORE INTO files (sha256, size, content_type, created) VALUES (?, ?, ?, ?)",
                        (digest, len(data), content_type, time.time()),
                    )
                    inserted = self._db.execute(
                        "INSERT OR IGNORE INTO messages (id, topic, payload, created) VALUES (?, ?, ?, ?)",
                        (message_id, topic, payload, time.time()),
                    ).rowcount
                    if batch_id is not None and inserted:
                        self._db.execute("UPDATE batches SET pages = pages + 1 WHERE batch_id = ?", (batch_id,))
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    self._db.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.OperationalError) as exc:
            tmp.unlink(missing_ok=True)
            self._drop_unnamed(digest)
            if _is_disk_full(exc):
                raise OutboxFull("disk full: cannot record a page") from None
            raise
        self._notify()
        return digest

    def _write_temporary(self, data: bytes) -> tuple[str, Path]:
        """Write ``data`` to a fsynced temporary file; (sha256, its path). Raises OutboxFull."""
        digest = self.sha256(data)
        blob = data if self.sealer is None else self.sealer.seal(digest, data)
        tmp = self.files_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            with tmp.open("wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if _is_disk_full(exc):
                raise OutboxFull(f"disk full: cannot store a page of {len(data)} bytes") from None
            raise
        return digest, tmp

    # --- pages held until their dossier closes --------------------------------------------------

    def hold_page(
        self,
        group_id: str,
        page_id: str,
        data: bytes,
        content_type: str,
        make_message: Callable[[str], tuple[str, bytes, str]],
    ) -> str:
        """Store an open dossier's page durably without sending anything: the file, and the message
        to send for it if the dossier never closes (a crash). Holding the same ``page_id`` again
        (the page was renamed, re-typed) replaces its message. Returns the sha256; raises
        :class:`OutboxFull` (nothing half-stored remains)."""
        digest, tmp = self._write_temporary(data)
        topic, payload, message_id = make_message(digest)
        try:
            with self._lock:
                tmp.replace(self.file_path(digest))
                fsync_dir(self.files_dir)
                self._db.execute(
                    "INSERT OR REPLACE INTO held (page_id, group_id, sha256, size, content_type, topic, message_id,"
                    " payload, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (page_id, group_id, digest, len(data), content_type, topic, message_id, payload, time.time()),
                )
        except (OSError, sqlite3.OperationalError) as exc:
            tmp.unlink(missing_ok=True)
            self._drop_unnamed(digest)
            if _is_disk_full(exc):
                raise OutboxFull("disk full: cannot hold a page") from None
            raise
        return digest

    def update_held(self, page_id: str, make_message: Callable[[str, int, str], tuple[str, bytes, str]]) -> bool:
        """Rewrite a held page's message (its dossier was named meanwhile); the file stays.
        ``make_message(sha256, size, content_type)``. False when the page is not held."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, size, content_type FROM held WHERE page_id = ?", (page_id,)
            ).fetchone()
        if row is None:
            return False
        topic, payload, message_id = make_message(row[0], int(row[1]), row[2])
        with self._lock:
            self._db.execute(
                "UPDATE held SET topic = ?, payload = ?, message_id = ? WHERE page_id = ?",
                (topic, payload, message_id, page_id),
            )
        return True

    def release_held(self, group_id: str, page_ids: Iterable[str] | None = None) -> int:
        """Forget held pages (the dossier was filed through :meth:`add_page`, cancelled, or the
        page removed): their files go unless a queued file or another held page names them.
        Returns how many were released."""
        with self._lock:
            if page_ids is None:
                rows = self._db.execute("SELECT page_id, sha256 FROM held WHERE group_id = ?", (group_id,)).fetchall()
            else:
                ids = list(page_ids)
                rows = [r for i in ids for r in self._db.execute(
                    "SELECT page_id, sha256 FROM held WHERE group_id = ? AND page_id = ?", (group_id, i))]
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM held WHERE page_id = ?", [(r[0],) for r in rows])
            self._db.execute("COMMIT")
            for sha in {r[1] for r in rows}:
                named = self._db.execute(
                    "SELECT 1 FROM files WHERE sha256 = ? UNION ALL SELECT 1 FROM held WHERE sha256 = ?", (sha, sha)
                ).fetchone()
                if named is None:
                    self.file_path(sha).unlink(missing_ok=True)
        return len(rows)

    def held(self) -> dict[str, int]:
        """Held pages per group (dossier session id)."""
        with self._lock:
            rows = self._db.execute("SELECT group_id, COUNT(*) FROM held GROUP BY group_id").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def deliver_held(self) -> int:
        """Queue every held page for delivery with its stored message (after a crash left its
        dossier open). Returns how many pages; a held file that is missing is reported and dropped."""
        with self._lock:
            rows = self._db.execute(
                "SELECT page_id, sha256, size, content_type, topic, message_id, payload FROM held"
            ).fetchall()
            missing = [r for r in rows if not self.file_path(r[1]).exists()]
            present = [r for r in rows if self.file_path(r[1]).exists()]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for _page_id, sha, size, ctype, topic, message_id, payload in present:
                    self._db.execute(
                        "INSERT OR IGNORE INTO files (sha256, size, content_type, created) VALUES (?, ?, ?, ?)",
                        (sha, size, ctype, time.time()),
                    )
                    self._db.execute(
                        "INSERT OR IGNORE INTO messages (id, topic, payload, created) VALUES (?, ?, ?, ?)",
                        (message_id, topic, bytes(payload), time.time()),
                    )
                self._db.execute("DELETE FROM held")
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
        if missing:
            log.error("%s held page file(s) were missing on disk and cannot be sent", len(missing))
        if present:
            self._notify()
        return len(present)

    def _drop_unnamed(self, sha256: str) -> None:
        """Remove a renamed file whose row never got committed (it would only take space)."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT 1 FROM files WHERE sha256 = ? UNION ALL SELECT 1 FROM held WHERE sha256 = ?",
                    (sha256, sha256),
                ).fetchone()
                if row is None:
                    self.file_path(sha256).unlink(missing_ok=True)
        except (OSError, sqlite3.Error) as exc:
            log.warning("outbox: cannot tidy an unrecorded file: %s", exc)

    def pending_files(self, now: float | None = None, limit: int = 20) -> list[PendingFile]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256, size, content_type, attempts FROM files WHERE next_try <= ? ORDER BY created LIMIT ?",
                (now, limit),
            ).fetchall()
        return [PendingFile(*r) for r in rows]

    def next_file_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try) FROM files").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def file_delivered(self, sha256: str) -> None:
        """The fleet holds this file: delete the local copy.

        The file goes first: on a full disk even deleting a row needs a little space, and the
        file is what frees it. If the row cannot go yet, the next upload round finds the fleet
        holding the file (HEAD 200) and tries again."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM held WHERE sha256 = ?", (sha256,)).fetchone() is None:
                self.file_path(sha256).unlink(missing_ok=True)  # else an open dossier still holds it
            try:
                self._db.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
            except sqlite3.OperationalError as exc:
                if _is_disk_full(exc):
                    raise OutboxFull("disk full: a delivered file's row stays for now") from None
                raise

    def file_retry(self, sha256: str, delay_s: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE files SET attempts = attempts + 1, next_try = ? WHERE sha256 = ?",
                (time.time() + delay_s, sha256),
            )

    # --- batches and commands -------------------------------------------------------------------

    def _bookkeep(self, sql: str, args: tuple[object, ...]) -> None:
        """Batch bookkeeping only helps after a crash: a full disk must not stop a batch for it."""
        try:
            with self._lock:
                self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:
            if not _is_disk_full(exc):
                raise
            log.warning("disk full: batch bookkeeping skipped")

    def batch_started(self, batch_id: str, source: str) -> None:
        self._bookkeep(
            "INSERT OR IGNORE INTO batches (batch_id, source, started) VALUES (?, ?, ?)",
            (batch_id, source, time.time()),
        )

    def batch_page(self, batch_id: str) -> None:
        self._bookkeep("UPDATE batches SET pages = pages + 1 WHERE batch_id = ?", (batch_id,))

    def batch_finished(self, batch_id: str) -> None:
        self._bookkeep("DELETE FROM batches WHERE batch_id = ?", (batch_id,))

    def open_batches(self) -> list[tuple[str, str, int]]:
        """Batches a crash left unfinished: (batch_id, source, pages stored)."""
        with self._lock:
            return [(r[0], r[1], r[2]) for r in self._db.execute("SELECT batch_id, source, pages FROM batches")]

    def first_time_command(self, command_id: str) -> bool:
        """Record a command id; False when it was seen before (delivery is at-least-once)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO commands_seen (id, seen) VALUES (?, ?)", (command_id, time.time())
            )
            self._db.execute("DELETE FROM commands_seen WHERE seen < ?", (time.time() - 30 * 86400,))
            return cur.rowcount == 1

    # --- depth ----------------------------------------------------------------------------------

    def depth(self) -> OutboxDepth:
        with self._lock:
            messages = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            files, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files").fetchone()
        return OutboxDepth(events=int(messages), files=int(files), bytes=int(size))
