"""Ingest image files from a folder: paper archives scanned elsewhere, or another program's
output. Files are taken byte for byte (no re-encoding), once they have stopped changing, and
moved to ``imported/`` (or deleted) only after the outbox holds them on disk.

File names stay on this machine: they often carry a citizen's name.

>>> source = FolderSource(FolderConfig(path=Path("/srv/inbox")))  # doctest: +SKIP
>>> for page in source.pages(ScanRequest()):  # doctest: +SKIP
...     store(page); source.done(page)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from device.capture.base import CapturedPage, CaptureSource, ScanRequest
from device.capture.config import FolderConfig

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}
IMPORTED = "imported"
REJECTED = "rejected"


class FolderSource(CaptureSource):
    """Yields the settled image files of ``config.path``, oldest name first."""

    kind = "folder"

    def __init__(self, config: FolderConfig) -> None:
        self.config = config
        self.path = config.path
        self._unreadable = False

    def ready_files(self, now: float | None = None) -> list[Path]:
        """Image files that have not changed for ``settle_s`` seconds."""
        now = time.time() if now is None else now
        try:
            entries = sorted(self.path.iterdir())
        except OSError as exc:
            if not self._unreadable:  # say it once, not at every look
                log.warning("cannot read the import folder %s: %s", self.path, exc.strerror)
            self._unreadable = True
            return []
        if self._unreadable:
            log.info("the import folder %s is readable again", self.path)
            self._unreadable = False
        ready = []
        for entry in entries:
            if entry.suffix.lower() not in SUFFIXES or entry.name.startswith("."):
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            if entry.is_file() and now - stat.st_mtime >= self.config.settle_s:
                ready.append(entry)
        return ready

    def _set_aside(self, path: Path, folder: str) -> None:
        target_dir = self.path / folder
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        n = 1
        while target.exists():
            target = target_dir / f"{path.stem}.{n}{path.suffix}"
            n += 1
        path.rename(target)

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        from PIL import Image, UnidentifiedImageError

        files = self.ready_files()
        if request.max_pages:
            files = files[: request.max_pages]
        sequence = 0
        for path in files:
            try:
                if path.stat().st_size > self.config.max_file_bytes:
                    raise ValueError("too large")
                data = path.read_bytes()
                with Image.open(path) as image:
                    image_format = image.format or ""
                    width, height = image.size
                    dpi_info = image.info.get("dpi")
            except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
                log.warning("an import file was refused (%s); moved to %s/", type(exc).__name__, REJECTED)
                try:
                    self._set_aside(path, REJECTED)
                except OSError as move_exc:
                    log.error("cannot move a refused import file: %s", move_exc.strerror)
                continue
            content_type = _CONTENT_TYPES.get(image_format)
            if content_type is None:
                log.warning("an import file has format %s, not PNG/JPEG/TIFF; moved to %s/", image_format, REJECTED)
                self._set_aside(path, REJECTED)
                continue
            dpi: int | None = None
            if isinstance(dpi_info, tuple) and dpi_info and float(dpi_info[0]) >= 1:
                dpi = round(float(dpi_info[0]))
            sequence += 1
            yield CapturedPage(data, content_type, width, height, dpi, sequence, origin=path)

    def discard(self, page: CapturedPage) -> None:
        """The file is no page (a staff card, whose QR is a secret): delete it, never keep it."""
        if page.origin is None:
            return
        try:
            page.origin.unlink(missing_ok=True)
            log.info("a staff card image in the import folder was deleted (a card is no page)")
        except OSError as exc:
            log.error("cannot delete a staff card image from the import folder: %s", exc.strerror)

    def done(self, page: CapturedPage) -> None:
        """The page is safely in the outbox: move its file aside (or delete it)."""
        if page.origin is None:
            return
        try:
            if self.config.after_import == "delete":
                page.origin.unlink(missing_ok=True)
            else:
                self._set_aside(page.origin, IMPORTED)
        except OSError as exc:
            log.error("cannot move an imported file aside: %s", exc.strerror)
