"""The capture interface: where pages come from.

A source yields :class:`CapturedPage` objects for one batch (a feeder run, a flatbed scan, a
folder import). Scanner conditions that stop a batch are raised as
:class:`device.errors.ScannerFault` subclasses *after* the pages already read were yielded, so
nothing captured before a jam is lost. Every source has ``close()`` and is a context manager.

>>> from device.capture.fake import FakeSource
>>> with FakeSource(pages=2) as source:
...     [page.sequence for page in source.pages(ScanRequest())]
[1, 2]
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

SourceKind = Literal["scanner", "camera", "folder"]
Side = Literal["front", "back"]


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """What one batch should do; ``None`` fields use the source's configuration."""

    source: Literal["flatbed", "adf"] | None = None
    max_pages: int | None = None


@dataclass(frozen=True, slots=True)
class CapturedPage:
    """One page image as its source produced it: ``data`` is the encoded file (PNG from a scanner,
    the original bytes from a folder), stored and delivered byte for byte."""

    data: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    dpi: int | None
    sequence: int
    side: Side = "front"
    origin: Path | None = field(default=None, repr=False)
    """Where a folder page came from (local only: file names may carry personal data)."""


class CaptureSource(ABC):
    """One place pages come from. Not thread-safe: one batch at a time."""

    kind: SourceKind = "scanner"

    @abstractmethod
    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        """Yield the pages of one batch. Raises a ScannerFault subclass when the device stops it."""

    @property
    def model(self) -> str | None:
        """Vendor and model when known."""
        return None

    def recover(self) -> None:  # noqa: B027 - optional hook, most sources need nothing
        """Put the device back in a known state after a fault (close it; the next batch reopens)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Ask a running batch to end after the current page (shutdown, disk low)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def encode_png(image: object, dpi: int | None, compress_level: int = 3) -> bytes:
    """Encode a PIL image as PNG (lossless), recording the resolution."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError("expected a PIL image")
    buffer = io.BytesIO()
    kwargs: dict[str, object] = {"compress_level": compress_level}
    if dpi:
        kwargs["dpi"] = (dpi, dpi)
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()
