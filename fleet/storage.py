"""Content-addressed file store: a file lives at ``<dir>/<aa>/<bb>/<sha256>``.

Every part of the fleet reaches page files through :class:`FileStorage` and gets one from
:func:`open_storage` (the ``storage`` section of the config), so every node of a fleet stores
and finds the same files: with several nodes, ``storage.dir`` is one directory on a mount they
all reach. :class:`FileStore` is the local-directory implementation; another (an object store)
would implement the same few methods.

A file is written to a temporary name in the store's own file system, hashed while it is
written, fsynced, checked against the sha256 it was sent under, and only then renamed into
place (atomic) and its directory fsynced, as are the ``aa/`` and ``aa/bb/`` folders when this file
created them (:mod:`fleet.durable`): a crash leaves either the whole file or nothing, and a 201 is
only sent for a file that survives one.

>>> import tempfile, hashlib
>>> store = FileStore(Path(tempfile.mkdtemp()))
>>> data = b"page"
>>> sha = hashlib.sha256(data).hexdigest()
>>> store.put_bytes(sha, data)
True
>>> store.put_bytes(sha, data)
False
>>> store.path(sha).read_bytes() == data
True
"""

import contextlib
import hashlib
import logging
import os
import re
import uuid
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from fleet.config import StorageConfig
from fleet.durable import place
from fleet.errors import ChecksumMismatch, FleetError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TooLarge(FleetError, ValueError):
    """An upload is over the size limit."""


MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"%PDF-", "application/pdf"),
    (b"\x1f\x8b", "application/gzip"),
)
"""What a device produces (page images, dossier PDFs, collected logs), by their first bytes."""
SNIFF_BYTES = 8
SAFE_TYPES = frozenset(t for _, t in MAGIC)
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tif", "application/pdf": ".pdf",
            "application/gzip": ".gz"}


def sniff(head: bytes) -> str | None:
    r"""The media type of a file from its first bytes, when it is one a device produces; else None.

    >>> sniff(b"\x89PNG\r\n\x1a\n..."), sniff(b"<html><script>")
    ('image/png', None)
    """
    return next((media for magic, media in MAGIC if head.startswith(magic)), None)


def served_type(stored: str | None) -> str:
    """The media type to serve a held file as: the one recorded from its content, or, for a row
    from before types were checked, an opaque type that no browser renders."""
    return stored if stored in SAFE_TYPES else "application/octet-stream"


def is_sha256(text: str) -> bool:
    return bool(_SHA256.match(text))


class PendingFile:
    """A file being received: ``write()`` chunks, then ``commit()`` or ``abort()``.

    Use it as a context manager: leaving without a commit removes the temporary file.
    """

    def __init__(self, store: "FileStore", sha256: str, max_size: int | None) -> None:
        self._store = store
        self.sha256 = sha256
        self.max_size = max_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp = store.root / "tmp" / f"{uuid.uuid4().hex}.part"
        self._fh = self._tmp.open("xb")
        self._done = False

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            raise TooLarge(f"more than {self.max_size} bytes")
        self._hash.update(chunk)
        self._fh.write(chunk)

    def commit(self) -> bool:
        """Verify and move into place. True when stored now, False when it was already held.
        Raises :class:`ChecksumMismatch` (nothing stored) when the content is not ``sha256``."""
        actual = self._hash.hexdigest()
        if actual != self.sha256:
            self.abort()
            raise ChecksumMismatch(f"content has sha256 {actual}, not {self.sha256}")
        final = self._store.path(self.sha256)
        if final.exists():
            self.abort()
            return False
        self._fh.flush()
        if self._store.fsync:
            os.fsync(self._fh.fileno())
        self._fh.close()
        place(self._tmp, final, fsync=self._store.fsync)
        self._done = True
        log.debug("stored %s (%s bytes)", self.sha256, self.size)
        return True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class Receiving(Protocol):
    """A file being received (:meth:`FileStorage.begin`)."""

    sha256: str
    size: int

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> bool: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class FileStorage(Protocol):
    """Where the fleet's files live, by sha256: the one interface every node uses.

    ``begin``/``put_bytes`` store a file only once it is whole and checked against its sha256
    (True: stored now; False: already held); ``has`` says whether a file is held; ``path`` is
    where a held file can be read (on the node's file system: the shared mount's file);
    ``delete`` forgets one (retention)."""

    def has(self, sha256: str) -> bool: ...

    def path(self, sha256: str) -> Path: ...

    def begin(self, sha256: str, max_size: int | None = None) -> Receiving: ...

    def put_bytes(self, sha256: str, data: bytes) -> bool: ...

    def delete(self, sha256: str) -> None: ...


def open_storage(config: StorageConfig) -> FileStorage:
    """The storage the ``storage`` section names (``type: local``: a directory, shared by every
    node through a mount).

    >>> import tempfile
    >>> store = open_storage(StorageConfig(dir=Path(tempfile.mkdtemp()), fsync=False))
    >>> store.has("0" * 64)
    False
    """
    if config.type == "local":
        return FileStore(config.dir, fsync=config.fsync)
    raise ValueError(f"unknown storage type {config.type!r}")  # pragma: no cover - the config refuses it


class FileStore:
    """Page files by sha256 under ``root``: the local-directory :class:`FileStorage`. See the
    module docstring."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError("not a lower-case hex sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def begin(self, sha256: str, max_size: int | None = None) -> PendingFile:
        if not is_sha256(sha256):
            raise ValueError("not a lower-case hex sha256")
        return PendingFile(self, sha256, max_size)

    def put_bytes(self, sha256: str, data: bytes) -> bool:
        with self.begin(sha256) as pending:
            pending.write(data)
            return pending.commit()

    def delete(self, sha256: str) -> None:
        """Forget a file (nothing happens when it is not held)."""
        self.path(sha256).unlink(missing_ok=True)
