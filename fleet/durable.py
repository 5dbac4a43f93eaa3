"""Writing files that survive a power cut: the fleet's one place for fsync discipline.

A file is durable once its bytes are fsynced *and* every directory entry that leads to it is:
the entry in its folder, and, for each folder created on the way, that folder's entry in its
parent. A 201 sent before that can be followed by a power cut that loses the file the device has
already deleted.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> atomic_write(root / "a" / "b" / "x.sha256", b"00\\n")
>>> (root / "a" / "b" / "x.sha256").read_bytes()
b'00\\n'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new or removed file or folder) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, fsync: bool = True) -> None:
    """``mkdir -p path``; with ``fsync``, each folder created here is made durable in its parent
    (the parent is fsynced after the child exists), from the top down."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    if fsync:
        for created in reversed(missing):
            fsync_dir(created.parent)


def place(tmp: Path, final: Path, *, fsync: bool = True) -> None:
    """Rename the (already fsynced) ``tmp`` to ``final``, creating ``final``'s folders durably,
    then fsync ``final``'s folder so the new name survives a cut."""
    make_dirs(final.parent, fsync=fsync)
    tmp.replace(final)
    if fsync:
        fsync_dir(final.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that after a power cut it holds either the old or the new content:
    a temporary file beside it, fsynced, renamed over it, then the folders fsynced."""
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        place(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
