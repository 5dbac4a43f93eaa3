"""Where a dossier's pages come from (a scanner batch, a camera shot) and the page pipeline's
seam, as the session sees them.

>>> from device.capture.base import ScanRequest       # doctest: +SKIP
>>> session.capture(CapturePages(scanner, ScanRequest()))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from device.dossier.model import CardOutcome, Image, Side, Source
from device.errors import ScannerBusy, SohoaError
from device.inference.verdict import CodeLike, PipelineResult

if TYPE_CHECKING:
    from protocol.messages import Operator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawImage:
    """One image as a capture source delivers it: decoded (BGR, uint8) for the pipeline, and the
    encoded file (``data``, e.g. the scanner's PNG) that is delivered byte for byte when there is one."""

    image: Image
    source: Source
    dpi: int | None = None
    side: Side = "front"
    data: bytes | None = field(default=None, repr=False)
    content_type: str | None = None


class PageSource(Protocol):
    """Where :meth:`DossierSession.capture` takes pages from: a scanner batch, a camera shot.

    ``pages`` yields images until the batch ends; it checks ``stop`` between pages (cancel) and
    raises :class:`~device.errors.CaptureError` subclasses for faults (jam, unplugged). A source
    that also has a ``stop()`` method is told at once when the dossier is cancelled.
    :class:`CapturePages` adapts a ``device.capture`` source (scanner, folder) to this."""

    def pages(self, stop: threading.Event) -> Iterable[RawImage]: ...


class _CapturedPageLike(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...
    @property
    def dpi(self) -> int | None: ...
    @property
    def side(self) -> Side: ...


class _CaptureSourceLike(Protocol):
    @property
    def kind(self) -> str: ...
    def pages(self, request: Any) -> Iterator[_CapturedPageLike]: ...
    def stop(self) -> None: ...


class CapturePages:
    """One batch of a ``device.capture.base.CaptureSource`` (the SANE scanner, a folder) as a
    :class:`PageSource`: each page's file is kept byte for byte and decoded for the pipeline.

    >>> from device.capture.base import ScanRequest       # doctest: +SKIP
    >>> session.capture(CapturePages(scanner, ScanRequest()))  # doctest: +SKIP
    """

    def __init__(self, source: _CaptureSourceLike, request: object, *, lock: threading.Lock | None = None) -> None:
        """``lock``: held for the whole batch, so the session's scans and the agent's own (a fleet
        ``test_scan``, a trigger) never drive the device at once; when another holder has it the
        batch fails at once with :class:`~device.errors.ScannerBusy` (fault ``scanner_busy``)."""
        self.source = source
        self.request = request
        self.lock = lock

    def pages(self, stop: threading.Event) -> Iterator[RawImage]:
        kinds: dict[str, Source] = {"folder": "folder", "camera": "camera"}
        kind = kinds.get(self.source.kind, "scanner")
        if self.lock is not None and not self.lock.acquire(blocking=False):
            raise ScannerBusy("another scan is running on this device")
        try:
            yield from self._decoded(kind, stop)
        except SohoaError:
            recover = getattr(self.source, "recover", None)
            if callable(recover):  # the next batch starts from a known state (SANE reopened)
                try:
                    recover()
                except Exception as exc:
                    log.warning("source recovery failed (%s)", type(exc).__name__)
            raise
        finally:
            if self.lock is not None:
                self.lock.release()

    def _decoded(self, kind: Source, stop: threading.Event) -> Iterator[RawImage]:
        import numpy as np

        from device.inference.pipeline import decode_image

        for page in self.source.pages(self.request):
            image = decode_image(page.data)
            if image is None:  # still kept: the file goes out as it came, the pipeline flags it
                log.warning("a captured page cannot be decoded (%s)", page.content_type)
                image = np.zeros((1, 1, 3), np.uint8)
            yield RawImage(image, kind, page.dpi, page.side, page.data, page.content_type)
            if stop.is_set():
                return

    def stop(self) -> None:
        self.source.stop()


class ProcessedPage(PipelineResult, Protocol):
    """What the session reads of ``device.inference.pipeline.PageResult``: the verdict's parts
    (:func:`~device.inference.verdict.verdict_of`) and the upright, cropped page it keeps."""

    @property
    def page(self) -> Image: ...


class PageProcessor(Protocol):
    """The page pipeline (``device.inference.pipeline.PagePipeline``)."""

    def process(self, image_bgr: Image, /, *, source: Source, dpi: int | None) -> ProcessedPage: ...


@dataclass(frozen=True, slots=True)
class CardRead:
    """A staff card found on a captured page, and what it did. ``operator``: who is signed in at
    the counter after it (None: nobody)."""

    outcome: CardOutcome
    operator: Operator | None = None


class StaffCards(Protocol):
    """The counter's sign-in as the session sees it (``device.operators.cards.ScannedCards``): a
    page whose codes hold a staff card is the card, never a page of the dossier.
    ``dossier_started``: the open dossier already holds pages (its clerk does not change then);
    ``sign_out``: the card of the clerk signed in signs them out (a fed card; not a card held in
    front of the camera, which would be read again at every shot)."""

    def read(self, codes: Sequence[CodeLike], *, dossier_started: bool, sign_out: bool = True) -> CardRead | None:
        """None when no staff card is on the page (it is one of the dossier's pages)."""
        ...
