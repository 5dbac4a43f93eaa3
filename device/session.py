"""The dossier session: the one state machine both front ends (the clerk's buttons and the
citizen's kiosk screen) drive, so they can never disagree about what is going on.

::

    idle ──open()──▶ open ──capture()/add_image()──▶ capturing ──▶ review ──finish()──▶ closing ──▶ closed
     ▲                 ▲                                  │            │                              │
     │                 └───────────── accept() ───────────┼────────────┘                              │
     └──────────── cancel() (from open/capturing/review) ─┘        open()/reset() ◀───────────────────┘

A dossier is opened by scanning the receipt slip's QR (``open(code, via="qr")``, or a walk-in
dossier whose first page carries the receipt QR is named by it), by typing its code
(``via="typed"``) or as an unnamed walk-in dossier (``open()``) that is named later with
:meth:`DossierSession.name`. Pages come either from a :class:`PageSource` run by
:meth:`DossierSession.capture` (a scanner batch, one camera shot) or one image at a time from the
kiosk (:meth:`DossierSession.add_image`). Every page goes through the page pipeline; its verdict
(quality, codes, document type) travels with it. :meth:`DossierSession.finish` builds the dossier's
PDFs and hands pages and PDFs to a :class:`DossierSink` (the outbox); when that fails (disk full)
the dossier goes back to review with every page still held.

Every method is thread-safe: the buttons call from gpiozero's threads, the kiosk from HTTP
handlers. Listeners receive :class:`SessionEvent` in the order things happened, outside the lock
(a listener may call back into the session).

>>> session = DossierSession(SessionConfig())
>>> session.open("000.00.12.H10-260101-0001", via="typed").state
'open'
>>> session.cancel()
True
>>> session.state
'idle'
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from device.dossier_config import SessionConfig
from device.errors import (
    CameraUnavailable,
    ImageRejected,
    NoScanner,
    OutboxFull,
    ScannerBusy,
    ScannerFault,
    SohoaError,
)
from device.inference.verdict import PROCESSING_FAILED, UNCHECKED, PageVerdict, PipelineResult, verdict_of
from protocol.messages import derived_id, new_id

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from device.dossier_config import PdfConfig
    from protocol.messages import DoctypeCorrected, DossierClosed, PageCaptured

    Image = npt.NDArray[np.uint8]
else:
    Image = Any

log = logging.getLogger(__name__)

State = Literal["idle", "open", "capturing", "review", "closing", "closed"]
OpenedVia = Literal["qr", "typed", "walk_in"]
Source = Literal["scanner", "camera", "folder"]
Side = Literal["front", "back"]
EventKind = Literal[
    "state", "page_added", "page_replaced", "page_retyped", "page_removed", "named", "fault", "closed", "cancelled"
]
CorrectedBy = Literal["clerk", "citizen", "admin"]
"""Who changed a page's document type: a role, never a person."""

Fault = Literal[
    "scanner_jammed",
    "scanner_cover_open",
    "scanner_no_docs",
    "scanner_io_error",
    "scanner_gone",
    "camera_unavailable",
    "no_scanner",
    "scanner_busy",
    "capture_error",
    "disk_full",
    "outbox_error",
    "dossier_code_mismatch",
    "too_many_pages",
]
"""Why the session needs a person's attention. Scanner faults keep the protocol's event names."""


class SessionError(SohoaError):
    """Root of the session's own errors."""


class InvalidSessionAction(SessionError, RuntimeError):
    """The action makes no sense in the current state (e.g. finishing while a scan runs). Nothing
    changed: the session is still in :attr:`state`."""

    def __init__(self, action: str, state: State) -> None:
        super().__init__(f"cannot {action} while the session is {state}")
        self.action = action
        self.state = state


class UpdateInProgress(InvalidSessionAction):
    """No dossier opens while a software update installs (the update lock): the screen and the
    buttons say so, and the clerk tries again once it is done (a few minutes)."""

    def __init__(self, state: State) -> None:
        super().__init__("open a dossier", state)
        self.args = ("a software update is being installed; no dossier can be opened until it is done",)


class InvalidDossierCode(SessionError, ValueError):
    """A typed or scanned dossier code does not have the expected shape."""


class UnknownPage(SessionError, KeyError):
    """No page with that id in the open dossier."""


class InvalidDoctype(SessionError, ValueError):
    """Not one of the classifier's class ids (``device.inference.doctype.DOCTYPES``)."""


# --- what the session needs from its collaborators ---------------------------------------------


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


class PdfBuilder(Protocol):
    """Builds one dossier component PDF (:class:`DossierPdfBuilder`) and returns its bytes."""

    def __call__(
        self, pages: Sequence[SessionPage], *, name: str, dossier_code: str | None, sequence: int, doctype: str | None
    ) -> bytes: ...


class DossierSink(Protocol):
    """Takes a closed dossier (pages and PDFs) for delivery: the outbox. Raises
    :class:`~device.errors.OutboxFull` when it cannot take it; it must then keep nothing of it."""

    def submit_dossier(self, dossier: ClosedDossier) -> None: ...


# --- what the session holds and reports ---------------------------------------------------------


@dataclass(frozen=True)
class SessionPage:
    """One page of the open dossier: the image kept (the pipeline's upright, cropped page when it
    gave one, else the captured image), its verdict and the full pipeline result."""

    page_id: str
    sequence: int
    batch_id: str
    batch_sequence: int
    source: Source
    dpi: int | None
    side: Side
    captured_at: datetime
    image: Image = field(repr=False)
    verdict: PageVerdict
    result: object | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)
    """The captured file as the source encoded it (None for camera frames)."""
    content_type: str | None = None
    corrected_by: CorrectedBy | None = None
    """Who last changed the page's type by hand (None: the type is the pipeline's)."""
    model_doctype: str | None = None
    """The type the pipeline gave, kept once a person changed it (:attr:`verdict` has the new one)."""
    model_confidence: float | None = None

    @property
    def corrected(self) -> bool:
        """A person changed the page's type, and it now differs from the pipeline's."""
        return self.corrected_by is not None and self.verdict.doctype != self.model_doctype

    def encoded(self) -> tuple[bytes, str]:
        """The page's file for delivery: the source's own bytes when it gave some (scanner PNG,
        folder file), else the kept image as PNG."""
        if self.data is not None:
            return self.data, self.content_type or "application/octet-stream"
        import cv2

        ok, buffer = cv2.imencode(".png", self.image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise ImageRejected("the page image cannot be encoded as PNG")
        return bytes(buffer), "image/png"

    @cached_property
    def view(self) -> PageView:
        v = self.verdict
        return PageView(
            page_id=self.page_id,
            sequence=self.sequence,
            source=self.source,
            ok=v.ok,
            issues=v.issues,
            messages_vi=v.messages_vi,
            messages_en=v.messages_en,
            doctype=v.doctype,
            doctype_confidence=v.doctype_confidence,
            blank=v.blank,
            doctype_corrected=self.corrected,
        )


@dataclass(frozen=True, slots=True)
class PageView:
    """A page as listeners and screens see it: no image, no personal data."""

    page_id: str
    sequence: int
    source: Source
    ok: bool
    issues: tuple[str, ...]
    messages_vi: tuple[str, ...]
    messages_en: tuple[str, ...]
    doctype: str | None
    doctype_confidence: float | None
    blank: bool
    doctype_corrected: bool = False
    """A person set the type (``doctype_confidence`` is then None)."""


@dataclass(frozen=True, slots=True)
class BuiltDocument:
    """One dossier component PDF, named ``<dossier code>.<sequence>.pdf``."""

    name: str
    sequence: int
    doctype: str | None
    page_ids: tuple[str, ...]
    pdf: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()


@dataclass(frozen=True, slots=True)
class ClosedDossier:
    """What :meth:`DossierSession.finish` hands to the sink."""

    session_id: str
    dossier_code: str | None
    opened_via: OpenedVia
    opened_at: datetime
    closed_at: datetime
    pages: tuple[SessionPage, ...]
    documents: tuple[BuiltDocument, ...]
    reason: Literal["done", "shutdown"] = "done"

    def to_event(self, device_id: str) -> DossierClosed:
        """The protocol's ``dossier_closed`` event for this dossier."""
        from protocol.messages import DossierClosed, DossierDocument

        return DossierClosed(
            device_id=device_id,
            dossier_code=self.dossier_code,
            session_id=self.session_id,
            page_ids=[p.page_id for p in self.pages],
            documents=[
                DossierDocument(sha256=d.sha256, name=d.name, doctype=d.doctype, pages=len(d.page_ids), size=len(d.pdf))
                for d in self.documents
            ],
        )


@dataclass(frozen=True, slots=True)
class ClosedSummary:
    """What the finish screen shows after a dossier is closed."""

    session_id: str
    dossier_code: str | None
    pages: int
    documents: int


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """The whole visible state at one moment (immutable: safe to hand to another thread)."""

    state: State
    session_id: str | None
    dossier_code: str | None
    opened_via: OpenedVia | None
    pages: tuple[PageView, ...]
    fault: Fault | None
    capturing: Source | None
    last_closed: ClosedSummary | None
    update_held: bool = False
    """An update installs: no dossier can be opened (:meth:`DossierSession.hold_for_update`)."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened. ``kind="state"`` is a transition (``previous`` -> ``snapshot.state``);
    the others say what happened to a page, a name, a fault."""

    kind: EventKind
    previous: State
    snapshot: SessionSnapshot
    page: PageView | None = None
    fault: Fault | None = None

    @property
    def state(self) -> State:
        return self.snapshot.state


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What one :meth:`DossierSession.capture` run did."""

    batch_id: str
    pages: tuple[PageView, ...]
    fault: Fault | None
    cancelled: bool


Listener = Callable[[SessionEvent], None]


_SCANNER_FAULTS: tuple[Fault, ...] = (
    "scanner_jammed", "scanner_cover_open", "scanner_no_docs", "scanner_io_error", "scanner_gone"
)


def fault_of(exc: BaseException) -> Fault:
    """The session's fault code for a capture exception."""
    if isinstance(exc, ScannerFault):
        event_type: str = exc.event_type
        for known in _SCANNER_FAULTS:
            if event_type == known:
                return known
        return "scanner_io_error"
    if isinstance(exc, CameraUnavailable):
        return "camera_unavailable"
    if isinstance(exc, NoScanner):
        return "no_scanner"
    if isinstance(exc, ScannerBusy):
        return "scanner_busy"
    if isinstance(exc, OutboxFull):
        return "disk_full"
    return "capture_error"


def _now() -> datetime:
    return datetime.now(UTC)


# --- the state machine --------------------------------------------------------------------------


class DossierSession:
    """The dossier state machine. See the module docstring for the states.

    >>> s = DossierSession()
    >>> s.open().opened_via
    'walk_in'
    >>> s.name("000.00.12.H10-260101-0001").dossier_code
    '000.00.12.H10-260101-0001'
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        processor: PageProcessor | None = None,
        sink: DossierSink | None = None,
        pdf_builder: PdfBuilder | Literal["auto"] | None = "auto",
    ) -> None:
        """``pdf_builder="auto"`` builds PDFs with :class:`DossierPdfBuilder`; None builds no PDF
        (the pages are still handed over)."""
        self.config = config or SessionConfig()
        self._code_re = re.compile(self.config.dossier_code_pattern)
        self._processor = processor
        self._sink = sink
        self._pdf_builder = pdf_builder
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._emit_lock = threading.RLock()  # a listener may act on the session: re-entrant
        self._pending: list[SessionEvent] = []
        self._listeners: list[Listener] = []
        self._state: State = "idle"
        self._session_id: str | None = None
        self._code: str | None = None
        self._via: OpenedVia | None = None
        self._opened_at: datetime | None = None
        self._pages: list[SessionPage] = []
        self._fault: Fault | None = None
        self._capturing: Source | None = None
        self._stop: threading.Event | None = None
        self._active_source: object | None = None
        self._cancel_requested = False
        self._resume_state: State = "open"
        self._last_closed: ClosedSummary | None = None
        self._closed = False
        self._update_held = False

    # -- observing -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def snapshot(self) -> SessionSnapshot:
        with self._lock:
            return self._snapshot()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event from now on (in order, outside the lock;
        an exception in a listener is logged and does not stop the others)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wait_for(self, predicate: Callable[[SessionSnapshot], bool], timeout: float) -> SessionSnapshot:
        """Block until ``predicate(snapshot)`` holds; raise :class:`TimeoutError` after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._snapshot()), timeout):
                raise TimeoutError(f"session still {self._state} after {timeout}s")
            return self._snapshot()

    def wait_for_state(self, *states: State, timeout: float) -> SessionSnapshot:
        return self.wait_for(lambda s: s.state in states, timeout)

    def page_image(self, page_id: str) -> Image:
        """The kept image of a page of the open dossier (for the review screen)."""
        with self._lock:
            return self._page(page_id).image

    def pages(self) -> tuple[SessionPage, ...]:
        with self._lock:
            return tuple(self._pages)

    # -- opening and naming --------------------------------------------------------------------

    def open(self, dossier_code: str | None = None, *, via: OpenedVia | None = None) -> SessionSnapshot:
        """Open a dossier: with a code from the receipt QR (``via="qr"``) or typed (the default when
        a code is given), or unnamed (walk-in). Allowed from ``idle`` and ``closed``."""
        code = self._check_code(dossier_code) if dossier_code is not None else None
        how: OpenedVia = via or ("typed" if code is not None else "walk_in")
        if code is None and how != "walk_in":
            raise InvalidDossierCode(f"a dossier opened via {how} needs a code")
        with self._lock:
            self._require("open a dossier", "idle", "closed")
            if self._update_held:
                raise UpdateInProgress(self._state)
            self._session_id = new_id()
            self._code = code
            self._via = how
            self._opened_at = _now()
            self._pages = []
            self._fault = None
            self._set_state("open")
            snap = self._snapshot()
        self._flush()
        log.info("dossier session %s opened (%s)", snap.session_id, how)
        return snap

    # -- the update lock -----------------------------------------------------------------------

    def hold_for_update(self) -> bool:
        """Take the update lock: True when no dossier is open, and then none opens (``open()``
        raises :class:`UpdateInProgress`) until :meth:`release_update_hold`. False while a
        dossier is being worked on: the updater waits and tries again.

        >>> s = DossierSession()
        >>> s.hold_for_update(), s.snapshot().update_held
        (True, True)
        >>> s.release_update_hold()
        """
        with self._lock:
            if self._state not in ("idle", "closed"):
                return False
            self._update_held = True
            self._changed.notify_all()
            return True

    def release_update_hold(self) -> None:
        with self._lock:
            self._update_held = False
            self._changed.notify_all()

    def dossier_open(self) -> bool:
        """A dossier is being worked on (not idle, not closed): an update waits."""
        with self._lock:
            return self._state not in ("idle", "closed")

    def name(self, dossier_code: str) -> SessionSnapshot:
        """Name the open dossier (a walk-in named later, or a correction)."""
        code = self._check_code(dossier_code)
        with self._lock:
            self._require("name the dossier", "open", "capturing", "review")
            self._code = code
            if self._fault == "dossier_code_mismatch":
                self._fault = None
            self._queue("named")
            snap = self._snapshot()
        self._flush()
        return snap

    # -- capturing -----------------------------------------------------------------------------

    def capture(
        self, source: PageSource, *, replace_last: bool = False, max_pages: int | None = None
    ) -> CaptureOutcome:
        """Run one capture from ``source`` in the calling thread: each page goes through the
        pipeline and joins the dossier as it arrives. With ``replace_last`` (rescan) the first new
        page replaces the dossier's last page, and only once it has arrived: a failed rescan loses
        nothing. A fault (jam, unplugged scanner or camera) ends the capture, keeps the pages
        already taken and is reported in the outcome and as a ``fault`` event."""
        limit = 1 if replace_last else max_pages
        stop = threading.Event()
        batch_id = new_id()
        with self._lock:
            self._require("capture", "open", "review")
            if replace_last and not self._pages:
                raise InvalidSessionAction("rescan (no page yet)", self._state)
            self._resume_state = self._state
            self._stop = stop
            self._cancel_requested = False
            self._capturing = "scanner"
            self._active_source = source
            self._fault = None
            self._set_state("capturing")
            session_id = self._session_id
        self._flush()
        added: list[PageView] = []
        fault: Fault | None = None
        pages = self._iter_source(source, stop)
        try:
            for count, raw in enumerate(pages, start=1):
                page = self._take(raw, batch_id, count, session_id, replace=replace_last and count == 1)
                if page is None:  # cancelled meanwhile, or the dossier is full
                    break
                added.append(page)
                if (limit is not None and count >= limit) or stop.is_set():
                    break
        except Exception as exc:  # the source's fault ends the batch; the pages stay
            fault = fault_of(exc)
            log.warning("capture stopped: %s (%s)", fault, type(exc).__name__)
        finally:
            try:
                pages.close()  # at once, not at garbage collection: the scanner ends its batch now
            except Exception as exc:
                log.warning("source did not end its batch cleanly (%s)", type(exc).__name__)
        return self._end_capture(batch_id, added, fault, session_id)

    def _iter_source(self, source: PageSource, stop: threading.Event) -> Generator[RawImage, None, None]:
        iterator = iter(source.pages(stop))
        try:
            while not stop.is_set():
                try:
                    raw = next(iterator)
                except StopIteration:
                    return
                with self._lock:
                    self._capturing = raw.source
                yield raw
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    def add_image(
        self,
        image: Image,
        *,
        source: Source = "camera",
        dpi: int | None = None,
        side: Side = "front",
        replace_page_id: str | None = None,
    ) -> PageView:
        """Add one image captured elsewhere (the kiosk's automatic camera shot), or retake a page
        (``replace_page_id``). Goes through ``capturing`` to ``review``."""
        batch_id = new_id()
        with self._lock:
            self._require("add a page", "open", "review")
            if replace_page_id is not None:
                self._page(replace_page_id)
            self._resume_state = self._state
            self._stop = threading.Event()
            self._cancel_requested = False
            self._capturing = source
            self._fault = None
            self._set_state("capturing")
            session_id = self._session_id
        self._flush()
        page: PageView | None = None
        try:
            page = self._take(RawImage(image, source, dpi, side), batch_id, 1, session_id, replace_id=replace_page_id)
        finally:
            self._end_capture(batch_id, [page] if page is not None else [], None, session_id)
        if page is None:
            raise InvalidSessionAction("add a page (cancelled or dossier full)", self.state)
        return page

    def _take(
        self,
        raw: RawImage,
        batch_id: str,
        batch_sequence: int,
        session_id: str | None,
        *,
        replace: bool = False,
        replace_id: str | None = None,
    ) -> PageView | None:
        verdict, kept, result = self._process(raw)
        with self._lock:
            if self._cancel_requested or self._session_id != session_id:
                return None
            if replace and self._pages:
                replace_id = self._pages[-1].page_id
            index = next((i for i, p in enumerate(self._pages) if p.page_id == replace_id), None)
            if index is None and len(self._pages) >= self.config.max_pages:
                self._fault = "too_many_pages"
                self._queue("fault", fault="too_many_pages")
                if self._stop is not None:
                    self._stop.set()
                return None
            page = SessionPage(
                page_id=new_id(),
                sequence=(index + 1) if index is not None else len(self._pages) + 1,
                batch_id=batch_id,
                batch_sequence=batch_sequence,
                source=raw.source,
                dpi=raw.dpi,
                side=raw.side,
                captured_at=_now(),
                image=kept,
                verdict=verdict,
                result=result if self.config.keep_results else None,
                data=raw.data,
                content_type=raw.content_type,
            )
            if index is not None:
                self._pages[index] = page
                self._queue("page_replaced", page=page.view)
            else:
                self._pages.append(page)
                self._queue("page_added", page=page.view)
            self._adopt_code(page)
        self._flush()
        return page.view

    def _process(self, raw: RawImage) -> tuple[PageVerdict, Image, ProcessedPage | None]:
        if self._processor is None:
            return UNCHECKED, raw.image, None
        try:
            result = self._processor.process(raw.image, source=raw.source, dpi=raw.dpi)
        except Exception as exc:  # never lose the page: keep the raw image, marked as unchecked
            log.warning("page pipeline failed (%s); page kept unprocessed", type(exc).__name__)
            return PROCESSING_FAILED, raw.image, None
        return verdict_of(result), result.page, result

    def _adopt_code(self, page: SessionPage) -> None:
        code = page.verdict.dossier_code
        if code is None or not self.config.adopt_receipt_code:
            return
        if not self._code_re.fullmatch(code):
            log.info("receipt QR holds a code of unexpected shape; not adopted")
            return
        if self._code is None:
            self._code = code
            self._via = "qr"
            self._queue("named")
            if not self.config.keep_receipt_slip:
                self._pages.remove(page)
                self._renumber()
                self._queue("page_removed", page=page.view)
        elif self._code != code:
            self._fault = "dossier_code_mismatch"
            self._queue("fault", fault="dossier_code_mismatch")

    def _end_capture(
        self, batch_id: str, added: list[PageView], fault: Fault | None, session_id: str | None
    ) -> CaptureOutcome:
        with self._lock:
            cancelled = self._cancel_requested or self._session_id != session_id
            self._stop = None
            self._active_source = None
            self._capturing = None
            if cancelled:
                self._cancel_requested = False
                self._discard("cancelled")
            else:
                if fault is not None:
                    self._fault = fault
                    self._queue("fault", fault=fault)
                self._set_state("review" if self._pages and (added or self._resume_state == "review") else "open")
        self._flush()
        return CaptureOutcome(batch_id, tuple(added), fault, cancelled)

    # -- review --------------------------------------------------------------------------------

    def accept(self) -> SessionSnapshot:
        """Leave review: the pages stay, the dossier is open for more."""
        with self._lock:
            self._require("accept", "review", "open")
            self._set_state("open")
            snap = self._snapshot()
        self._flush()
        return snap

    def review(self) -> SessionSnapshot:
        """Go to review from ``open`` (the kiosk's "review" button); needs at least one page."""
        with self._lock:
            self._require("review", "open", "review")
            if not self._pages:
                raise InvalidSessionAction("review (no page yet)", self._state)
            self._set_state("review")
            snap = self._snapshot()
        self._flush()
        return snap

    def remove_page(self, page_id: str) -> SessionSnapshot:
        """Take a page out of the open dossier (the citizen rejected it)."""
        with self._lock:
            self._require("remove a page", "open", "review")
            page = self._page(page_id)
            self._pages.remove(page)
            self._renumber()
            self._queue("page_removed", page=page.view)
            if not self._pages and self._state == "review":
                self._set_state("open")
            snap = self._snapshot()
        self._flush()
        return snap

    def set_doctype(self, page_id: str, doctype: str, by: CorrectedBy) -> PageView:
        """Change a page's document type (a clerk or citizen corrects the classifier). ``doctype``
        must be a class id of :data:`device.inference.doctype.DOCTYPES`, else
        :class:`InvalidDoctype` and nothing changes. The page's verdict takes the new type (its
        PDF grouping and its ``page_captured`` event follow it, confidence None); when the dossier
        closes, the :class:`OutboxSink` also sends one ``doctype_corrected`` event for the page
        (from the pipeline's type to the final one) unless it was set back to the pipeline's.
        Allowed while the dossier is open (``open``, ``capturing``, ``review``)."""
        from device.inference.doctype import DOCTYPES

        if not isinstance(doctype, str) or doctype not in DOCTYPES:
            raise InvalidDoctype("not a document type class id")
        if by not in ("clerk", "citizen", "admin"):
            raise ValueError("by must be clerk, citizen or admin")
        with self._lock:
            self._require("change a page's type", "open", "capturing", "review")
            page = self._page(page_id)
            if page.corrected_by is None:
                v = page.verdict
                page = replace(page, model_doctype=v.doctype, model_confidence=v.doctype_confidence)
            back = doctype == page.model_doctype
            verdict = replace(page.verdict, doctype=doctype, doctype_confidence=page.model_confidence if back else None)
            page = replace(page, verdict=verdict, corrected_by=by)
            self._pages = [page if p.page_id == page_id else p for p in self._pages]
            self._queue("page_retyped", page=page.view)
        self._flush()
        log.info("page %s re-typed by %s", page_id, by)
        return page.view

    def clear_fault(self) -> None:
        with self._lock:
            if self._fault is not None:
                self._fault = None
                self._queue("fault", fault=None)
        self._flush()

    # -- closing -------------------------------------------------------------------------------

    def finish(self) -> ClosedDossier | None:
        """Close the dossier: build its PDFs, hand pages and PDFs to the sink, go to ``closed``.
        An empty dossier just goes back to ``idle`` (returns None). If the sink refuses (disk full)
        the dossier returns to ``review`` with all its pages and the error is raised."""
        return self._finish("done")

    def _finish(self, reason: Literal["done", "shutdown"]) -> ClosedDossier | None:
        with self._lock:
            self._require("close the dossier", "open", "review")
            if not self._pages:
                self._discard("empty")
                empty = True
            else:
                empty = False
                self._resume_state = self._state
                self._set_state("closing")
                pages = tuple(self._pages)
                assert self._session_id is not None and self._via is not None and self._opened_at is not None
                session_id, code, via, opened_at = self._session_id, self._code, self._via, self._opened_at
        if empty:
            self._flush()
            return None
        self._flush()
        documents = self._build_documents(pages, code, session_id)
        dossier = ClosedDossier(session_id, code, via, opened_at, _now(), pages, documents, reason)
        try:
            if self._sink is not None:
                self._sink.submit_dossier(dossier)
        except Exception as exc:
            with self._lock:
                self._fault = fault_of(exc) if isinstance(exc, OutboxFull) else "outbox_error"
                self._queue("fault", fault=self._fault)
                self._set_state(self._resume_state)
            self._flush()
            log.warning("dossier %s not handed over (%s); pages kept", session_id, type(exc).__name__)
            raise
        with self._lock:
            self._last_closed = ClosedSummary(session_id, code, len(pages), len(documents))
            self._pages = []
            self._fault = None
            self._code = self._via = self._session_id = self._opened_at = None  # only the summary stays
            self._set_state("closed")
            self._queue("closed")
        self._flush()
        log.info("dossier session %s closed: %d pages, %d documents", session_id, len(pages), len(documents))
        return dossier

    def _build_documents(
        self, pages: tuple[SessionPage, ...], code: str | None, session_id: str
    ) -> tuple[BuiltDocument, ...]:
        builder = DossierPdfBuilder() if self._pdf_builder == "auto" else self._pdf_builder
        if builder is None:
            log.warning("no PDF builder available; dossier handed over without PDFs")
            return ()
        base = code or f"{self.config.walk_in_prefix}-{session_id[:8]}"
        documents: list[BuiltDocument] = []
        for sequence, (doctype, group) in enumerate(self._group(pages), start=1):
            name = f"{base}.{sequence}.pdf"
            try:
                pdf = builder(group, name=name, dossier_code=code, sequence=sequence, doctype=doctype)
            except Exception as exc:  # the pages still go: a PDF can be rebuilt, a page cannot
                log.error("building %s failed (%s); pages handed over without it", name, type(exc).__name__)
                continue
            documents.append(BuiltDocument(name, sequence, doctype, tuple(p.page_id for p in group), pdf))
        return tuple(documents)

    def _group(self, pages: tuple[SessionPage, ...]) -> list[tuple[str | None, list[SessionPage]]]:
        groups: list[tuple[str | None, list[SessionPage]]] = []
        for page in pages:
            if self.config.drop_blank_pages and page.verdict.blank:
                continue
            doctype = page.verdict.doctype
            if groups:
                current, members = groups[-1]
                if not self.config.group_by_doctype or doctype is None or doctype == current:
                    members.append(page)
                    continue
                if current is None:  # untyped pages so far take the first type seen
                    groups[-1] = (doctype, [*members, page])
                    continue
            groups.append((doctype if self.config.group_by_doctype else None, [page]))
        return groups

    # -- cancelling and resetting --------------------------------------------------------------

    def cancel(self) -> bool:
        """Abandon the open dossier and its pages (the clerk's long press on Done). During a
        capture the source is told to stop and the session reaches ``idle`` when it has.
        Returns False when there was nothing to cancel."""
        with self._lock:
            if self._state in ("idle", "closed", "closing"):
                return False
            stopper = None
            if self._state == "capturing":
                self._cancel_requested = True
                if self._stop is not None:
                    self._stop.set()
                stopper = getattr(self._active_source, "stop", None)
            else:
                self._discard("cancelled")
        self._flush()
        if callable(stopper):
            try:
                stopper()
            except Exception as exc:  # the stop event still ends the batch at the next page
                log.warning("source did not take the stop request (%s)", type(exc).__name__)
        return True

    def reset(self) -> None:
        """Forget the last closed dossier's summary (privacy on the kiosk) and go to ``idle``."""
        with self._lock:
            self._require("reset", "idle", "closed")
            self._last_closed = None
            self._set_state("idle")
        self._flush()

    def close(self) -> None:
        """Release the session (agent shutdown). A dossier that still has pages is handed to the
        sink as it is (``reason="shutdown"``) rather than dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._state == "capturing" and self._stop is not None:
                self._stop.set()
            stopper = getattr(self._active_source, "stop", None)
        if callable(stopper):
            stopper()
        try:
            self.wait_for(lambda s: s.state != "capturing" and s.state != "closing", timeout=30)
        except TimeoutError:
            log.warning("capture did not stop within 30 s at shutdown")
        with self._lock:
            has_pages = self._state in ("open", "review") and bool(self._pages)
        if has_pages:
            try:
                self._finish("shutdown")
            except SohoaError as exc:
                log.error("open dossier could not be handed over at shutdown (%s)", type(exc).__name__)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (call with the lock held) ---------------------------------------------------

    def _check_code(self, code: str) -> str:
        code = code.strip()
        if not self._code_re.fullmatch(code):
            raise InvalidDossierCode("the dossier code does not have the expected shape")
        return code

    def _require(self, action: str, *states: State) -> None:
        if self._state not in states:
            raise InvalidSessionAction(action, self._state)

    def _page(self, page_id: str) -> SessionPage:
        for page in self._pages:
            if page.page_id == page_id:
                return page
        raise UnknownPage(page_id)

    def _renumber(self) -> None:
        self._pages = [replace(p, sequence=i) for i, p in enumerate(self._pages, start=1)]

    def _discard(self, why: Literal["cancelled", "empty"]) -> None:
        dropped = len(self._pages)
        previous = self._state
        self._pages = []
        self._code = None
        self._via = None
        self._fault = None
        self._set_state("idle")
        if why == "cancelled":
            self._queue("cancelled", previous=previous)
        if dropped:
            log.info("dossier session %s %s: %d pages discarded", self._session_id, why, dropped)
        self._session_id = None

    def _set_state(self, state: State) -> None:
        previous = self._state
        if previous == state:
            return
        self._state = state
        self._queue("state", previous=previous)
        self._changed.notify_all()

    def _queue(self, kind: EventKind, *, previous: State | None = None, page: PageView | None = None,
               fault: Fault | None = None) -> None:
        snap = self._snapshot()
        self._pending.append(SessionEvent(kind, previous or snap.state, snap, page, fault or snap.fault))
        self._changed.notify_all()

    def _snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            state=self._state,
            session_id=self._session_id,
            dossier_code=self._code,
            opened_via=self._via,
            pages=tuple(p.view for p in self._pages),
            fault=self._fault,
            capturing=self._capturing if self._state == "capturing" else None,
            last_closed=self._last_closed,
            update_held=self._update_held,
        )

    def _flush(self) -> None:
        """Deliver queued events in order, outside the state lock (one deliverer at a time)."""
        with self._emit_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    event = self._pending.pop(0)
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception:
                        log.exception("session listener failed")


class DossierPdfBuilder:
    """A :class:`PdfBuilder` over the dossier PDF writer (:func:`device.dossier_pdf.write_pdf`),
    imported on first use (it brings the PDF and OCR libraries).

    >>> builder = DossierPdfBuilder(unit="000.00.12.H10", device="kiosk-0001")
    >>> session = DossierSession(pdf_builder=builder)
    """

    def __init__(self, pdf_config: PdfConfig | None = None, *, unit: str = "", device: str = "") -> None:
        self.pdf_config = pdf_config
        self.unit = unit
        self.device = device

    def __call__(
        self, pages: Sequence[SessionPage], *, name: str, dossier_code: str | None, sequence: int, doctype: str | None
    ) -> bytes:
        import tempfile
        from pathlib import Path

        from device.dossier_pdf import DossierInfo, PdfPage, write_pdf

        pdf_pages = [
            PdfPage(
                image=p.image,
                dpi=p.dpi,
                sha256=hashlib.sha256(p.encoded()[0]).hexdigest(),
                blank=False,
                doctype=p.verdict.doctype,
            )
            for p in pages
        ]
        info = DossierInfo(
            dossier_code=name.rsplit(".", 2)[0],
            sequence=sequence,
            document_type=doctype or "other",
            unit=self.unit,
            device=self.device,
            captured_at=min(p.captured_at for p in pages),
        )
        with tempfile.TemporaryDirectory(prefix="sohoa-dossier-") as tmp:
            out = Path(tmp) / name
            write_pdf(pdf_pages, out, info, self.pdf_config)
            return out.read_bytes()


# --- delivery through the outbox ---------------------------------------------------------------


class _PageStore(Protocol):
    def add_page(
        self, data: bytes, content_type: str, make_message: Callable[[str], tuple[str, bytes, str]]
    ) -> str: ...
    def add_message(self, topic: str, payload: bytes, message_id: str) -> None: ...


class OutboxSink:
    """A :class:`DossierSink` over ``device.delivery.outbox.Outbox``: each page's file with its
    ``page_captured`` event, then each PDF, the last one carrying the ``dossier_closed`` event.
    Message ids are derived from the page and session ids (:func:`protocol.messages.derived_id`):
    a retry after :class:`OutboxFull` stores nothing twice.

    >>> session = DossierSession(sink=OutboxSink(outbox, "kiosk-0001"))  # doctest: +SKIP
    """

    def __init__(self, outbox: _PageStore, device_id: str, *, drop_blank_pages: bool = True) -> None:
        self.outbox = outbox
        self.device_id = device_id
        self.drop_blank_pages = drop_blank_pages

    def submit_dossier(self, dossier: ClosedDossier) -> None:
        from protocol.messages import encode
        from protocol.topics import Channel, topic

        event_topic = topic(self.device_id, Channel.EVENT)
        for page in dossier.pages:
            data, content_type = page.encoded()

            def page_message(sha256: str, page: SessionPage = page, size: int = len(data), ctype: str = content_type
                             ) -> tuple[str, bytes, str]:
                event = self.page_event(page, dossier.dossier_code, sha256, size, ctype)
                return event_topic, encode(event), event.id

            sha256 = self.outbox.add_page(data, content_type, page_message)
            if page.corrected:
                correction = self.correction_event(page, sha256)
                self.outbox.add_message(event_topic, encode(correction), correction.id)
        closed = dossier.to_event(self.device_id).model_copy(
            update={"id": derived_id(dossier.session_id, "dossier_closed")})
        payload = encode(closed)
        if not dossier.documents:
            self.outbox.add_message(event_topic, payload, closed.id)
            return
        # The outbox stores a file together with one message: every PDF names the same
        # dossier_closed message (same id, stored once), so it is in the outbox with the first PDF.
        for document in dossier.documents:
            self.outbox.add_page(document.pdf, "application/pdf", lambda _sha: (event_topic, payload, closed.id))

    def correction_event(self, page: SessionPage, sha256: str) -> DoctypeCorrected:
        """The ``doctype_corrected`` event of a page a person re-typed: from the pipeline's type
        to the final one, with the page file's sha256 (the fleet's training label)."""
        from protocol.messages import DoctypeCorrected

        assert page.corrected_by is not None and page.verdict.doctype is not None
        return DoctypeCorrected(
            id=derived_id(page.page_id, "doctype_corrected"),
            device_id=self.device_id,
            page_id=page.page_id,
            sha256=sha256,
            previous=page.model_doctype,
            doctype=page.verdict.doctype,
            by=page.corrected_by,
        )

    def page_event(
        self, page: SessionPage, dossier_code: str | None, sha256: str, size: int, content_type: str
    ) -> PageCaptured:
        """The ``page_captured`` event of one of the dossier's pages (:func:`page_captured`)."""
        from device.delivery.page_event import PageFacts, page_captured

        height, width = page.image.shape[:2] if page.data is None else _png_size(page.data, page.image)
        facts = PageFacts(page_id=page.page_id, content_type=content_type, width=int(width), height=int(height),
                          dpi=page.dpi, source=page.source, batch_id=page.batch_id, sequence=page.batch_sequence,
                          side=page.side, captured_at=page.captured_at)
        return page_captured(self.device_id, facts, sha256=sha256, size=size, verdict=page.verdict,
                             dossier_code=dossier_code, drop_blank_pages=self.drop_blank_pages)


def _png_size(data: bytes, image: Image) -> tuple[int, int]:
    """(height, width) of a PNG file from its header, else of the decoded image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    return int(image.shape[0]), int(image.shape[1])
