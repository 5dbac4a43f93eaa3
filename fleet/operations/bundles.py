"""Signed update bundles as the fleet stores them: one file per bundle beside the file store
(``<storage.dir>/../bundles``) with its sha256 in ``<name>.sha256``, written at upload. With the
signing keys configured (``bundles.public_keys``), an upload is checked completely (signature,
manifest, every payload file: :func:`images.manifest.verify_bundle`, as the devices check it)
before it is kept; each device checks it again before installing.

>>> import asyncio, tempfile, pathlib
>>> store = BundleStore(pathlib.Path(tempfile.mkdtemp()))
>>> async def chunks():
...     yield b"signed "
...     yield b"bundle"
>>> size, sha, _ = asyncio.run(store.save("agent-1.2.bundle", chunks()))
>>> size, store.sha256("agent-1.2.bundle") == sha, store.path("other.bundle")
(13, True, None)
>>> [(name, size) for name, size, _ in store.bundles()]
[('agent-1.2.bundle', 13)]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.config import FleetConfig
from fleet.durable import atomic_write, place
from fleet.errors import FleetError
from images.errors import BundleError
from images.manifest import Manifest, verify_bundle

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_BUNDLE_BYTES = 1024 * 1024 * 1024
BUNDLE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.bundle$"


class BundleTooLarge(FleetError, ValueError):
    """An upload past :data:`MAX_BUNDLE_BYTES` (nothing is kept)."""


class BundleRefused(FleetError, ValueError):
    """An upload that is not a bundle signed by a trusted key (nothing is kept); says why."""


class BundleStore:
    """The bundles directory."""

    def __init__(self, directory: Path, *, max_bytes: int = MAX_BUNDLE_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    @classmethod
    def of(cls, config: FleetConfig) -> BundleStore:
        return cls(config.storage.dir.parent / "bundles")

    async def save(self, name: str, chunks: AsyncIterator[bytes],
                   trusted: Sequence[Ed25519PublicKey] = ()) -> tuple[int, str, Manifest | None]:
        """Write the bundle ``name`` from ``chunks`` (replacing one of that name only once it is
        whole, on disk and, with ``trusted`` keys, verified); returns its size, sha256 and verified
        manifest (None unchecked). :class:`BundleTooLarge` past the limit, :class:`BundleRefused`
        when it does not verify."""
        manifest = None
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(prefix=".upload.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BundleTooLarge("bundle too large")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if trusted:
                try:
                    manifest = await asyncio.to_thread(verify_bundle, Path(tmp), trusted)
                except BundleError as exc:
                    raise BundleRefused(str(exc)) from None
            place(Path(tmp), self.directory / name)
            atomic_write(self.directory / f"{name}.sha256", (digest.hexdigest() + "\n").encode())
        finally:
            Path(tmp).unlink(missing_ok=True)
        return size, digest.hexdigest(), manifest

    def bundles(self) -> list[tuple[str, int, datetime]]:
        """Every bundle held: (name, size, when it was stored), newest first."""
        if not self.directory.is_dir():
            return []
        held = []
        for path in self.directory.iterdir():
            if path.is_file() and re.fullmatch(BUNDLE_NAME, path.name):
                stat = path.stat()
                held.append((path.name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(held, key=lambda b: (b[2], b[0]), reverse=True)

    def path(self, name: str) -> Path | None:
        """The bundle's file, None when there is no such bundle."""
        path = self.directory / name
        return path if path.is_file() else None

    def sha256(self, name: str) -> str | None:
        """The sha256 recorded at upload (None for a bundle put there by other means)."""
        sha_file = self.directory / f"{name}.sha256"
        return sha_file.read_text().strip() if sha_file.exists() else None
