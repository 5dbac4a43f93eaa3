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

A dossier has one operator, the one its ``dossier_closed`` and every one of its pages name: the
clerk signed in when it was opened. A staff card fed or shown as a page (:class:`StaffCards`) is
never a page: it signs its clerk in or out, and an open dossier still without pages takes the
clerk it signed in (the Scan button opens a dossier before the feeder's first sheet, the card, is
read); once the dossier holds pages another clerk's card is refused (``staff_card`` event,
``dossier_started``) until it is finished or cancelled, so no document mixes two clerks' pages.

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

import logging
import re
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal, Self

from device.dossier.config import SessionConfig
from device.dossier.errors import (
    ForeignDossierCode,
    InvalidDoctype,
    InvalidDossierCode,
    InvalidSessionAction,
    UnknownPage,
    UpdateInProgress,
    fault_of,
)
from device.dossier.model import (
    BuiltDocument,
    CaptureOutcome,
    CardOutcome,
    ClosedDossier,
    ClosedSummary,
    CorrectedBy,
    EventKind,
    Fault,
    Image,
    Listener,
    OpenedVia,
    PageView,
    SessionEvent,
    SessionPage,
    SessionSnapshot,
    Side,
    Source,
    State,
)
from device.dossier.naming import document_label, page_codes, plan_documents
from device.dossier.numbering import DocumentKind, NumberBook, Numbering
from device.dossier.pdf import DossierPdfBuilder, PdfBuilder, build_documents
from device.dossier.sink import DossierSink
from device.dossier.sources import CardRead, PageProcessor, PageSource, ProcessedPage, RawImage, StaffCards
from device.errors import OutboxFull, SohoaError
from device.inference.verdict import PROCESSING_FAILED, UNCHECKED, CodeLike, PageVerdict, verdict_of
from protocol.messages import Operator, new_id

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class StaffCardPage(InvalidSessionAction):
    """The image added is a staff card (it signed in or out, or was refused), not a page."""

    def __init__(self, state: State) -> None:
        super().__init__("add a page (a staff card is no page)", state)


_CARD = object()
""":meth:`DossierSession._take`'s answer for a staff card: no page, the batch goes on."""


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
        numbering: Numbering | None = None,
        cards: StaffCards | None = None,
    ) -> None:
        """``pdf_builder="auto"`` builds PDFs with :class:`DossierPdfBuilder`; None builds no PDF
        (the pages are still handed over). ``numbering`` gives document numbers (default: a
        :class:`~device.dossier.numbering.NumberBook` in memory; the agent's is on disk).
        ``cards``: the counter's sign-in, given each page's codes (a staff card is no page)."""
        self.config = config or SessionConfig()
        self._code_re = re.compile(self.config.dossier_code_pattern)
        self._processor = processor
        self._sink = sink
        self._pdf_builder = pdf_builder
        self._numbering: Numbering = numbering if numbering is not None else NumberBook()
        self._cards = cards
        self._kind: DocumentKind = "component"
        self._operator: Operator | None = None
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

    def open(
        self,
        dossier_code: str | None = None,
        *,
        via: OpenedVia | None = None,
        kind: DocumentKind = "component",
        operator: Operator | None = None,
    ) -> SessionSnapshot:
        """Open a dossier: with a code from the receipt QR (``via="qr"``) or typed (the default when
        a code is given), or unnamed (walk-in). ``kind="result"`` digitizes the procedure's result
        (documents named ``<code>-KQ<n>``) instead of the dossier's input documents. Allowed from
        ``idle`` and ``closed``. ``operator``: who digitizes it (the signed-in clerk, or the citizen
        at the kiosk), carried by its ``dossier_closed`` event."""
        if kind not in ("component", "result"):
            raise ValueError("kind must be component or result")
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
            self._kind = kind
            self._operator = operator
            self._opened_at = _now()
            self._pages = []
            self._fault = None
            self._set_state("open")
            snap = self._snapshot()
        self._flush()
        log.info("dossier session %s opened (%s, %s)", snap.session_id, how, kind)
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

    def page_code(self) -> str | None:
        """The dossier code the open dossier's pages carry while it is open (the held copies'
        events): its code, or for a result ``<code>-KQ<n>`` with the number it will most likely
        get (a result's pages must never count as the dossier's input documents)."""
        with self._lock:
            code, kind = self._code, self._kind
        if code is None or kind == "component":
            return code
        return document_label(code, self._numbering.last(code.upper(), kind) + 1, kind)

    def set_kind(self, kind: DocumentKind) -> SessionSnapshot:
        """Switch the open dossier between its input documents and the procedure's result (the
        clerk's result gesture, the kiosk's choice); the documents are named by it when it closes."""
        if kind not in ("component", "result"):
            raise ValueError("kind must be component or result")
        with self._lock:
            self._require("choose what is digitized", "open", "review")
            self._kind = kind
            self._queue("named")
            snap = self._snapshot()
        self._flush()
        return snap

    def name(self, dossier_code: str) -> SessionSnapshot:
        """Name the open dossier (a walk-in named later, or a correction)."""
        code = self._check_code(dossier_code)
        with self._lock:
            self._require("name the dossier", "open", "capturing", "review")
            self._code = code
            if self._fault in ("dossier_code_mismatch", "foreign_dossier_code", "unreadable_dossier_code"):
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
            for raw in pages:
                count = len(added) + 1
                page = self._take(raw, batch_id, count, session_id, replace=replace_last and count == 1)
                if page is _CARD:  # a staff card among the sheets: it is no page, the batch goes on
                    if stop.is_set():
                        break
                    continue
                if not isinstance(page, PageView):  # cancelled meanwhile, or the dossier is full
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
        page: object = None
        try:
            page = self._take(RawImage(image, source, dpi, side), batch_id, 1, session_id, replace_id=replace_page_id)
        finally:
            self._end_capture(batch_id, [page] if isinstance(page, PageView) else [], None, session_id)
        if page is _CARD:
            raise StaffCardPage(self.state)
        if not isinstance(page, PageView):
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
    ) -> object:
        """The page taken (its :class:`PageView`), :data:`_CARD` for a staff card, or None
        (cancelled meanwhile, or the dossier is full)."""
        verdict, kept, result = self._process(raw)
        if result is not None and self.staff_card(result.codes, source=raw.source, session_id=session_id):
            return _CARD
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
                operator=self._operator,
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

    def staff_card(self, codes: Sequence[CodeLike], *, source: Source, session_id: str | None = None) -> bool:
        """Whether ``codes`` (a captured sheet's) hold a staff card; if so the card has signed in
        or out (or was refused) and a ``staff_card`` event says which. The sheet is then no page:
        the caller drops it. Also for sheets captured outside a dossier (the agent's own batches)."""
        if self._cards is None:
            return False
        with self._lock:
            started = bool(self._pages) and self._state not in ("idle", "closed")
            session_id = session_id if session_id is not None else self._session_id
        read = self._cards.read(codes, dossier_started=started, sign_out=source != "camera")
        if read is None:
            return False
        self._card_read(read, session_id)
        return True

    def _card_read(self, read: CardRead, session_id: str | None) -> None:
        """A staff card was on the sheet: say what it did; a dossier without pages yet takes the
        clerk signed in now (a citizen's self-scan stays the citizen's when nobody is)."""
        with self._lock:
            same = self._session_id == session_id and not self._cancel_requested
            # with no dossier open, the next one records whoever is signed in when it opens
            if same and self._state not in ("idle", "closed") and read.outcome in ("signed_in", "signed_out") \
                    and not self._pages and (
                    read.operator is not None or (self._operator is not None and self._operator.kind != "citizen")):
                self._operator = read.operator
            self._queue("staff_card", card=read.outcome)
        self._flush()
        log.info("a staff card was read on a captured sheet (%s); not kept as a page", read.outcome)

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
        if not self.config.adopt_receipt_code:
            return
        if code is None:
            if page.verdict.code_unreadable and self._code is None:
                log.info("a code on the page cannot be read; the dossier stays unnamed")
                self._unreadable_code()
            return
        if not self._code_re.fullmatch(code):
            log.info("receipt QR holds a code of unexpected shape; not adopted")
            if self._code is None:
                self._unreadable_code()
            return
        if not self.config.takes(code):  # said to the clerk (light, screen), never taken silently
            log.info("receipt QR names another unit's dossier; not adopted")
            self._fault = "foreign_dossier_code"
            self._queue("fault", fault="foreign_dossier_code")
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

    def _unreadable_code(self) -> None:
        """Said to the clerk (light, screen) with what to do next: scan the slip again, flat
        and whole, or type the code; the pages stay in the dossier."""
        self._fault = "unreadable_dossier_code"
        self._queue("fault", fault="unreadable_dossier_code")

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
                kind, operator = self._kind, self._operator
        if empty:
            self._flush()
            return None
        self._flush()
        documents: tuple[BuiltDocument, ...] = ()
        try:
            # numbers are taken before anything is built and never handed back: a refused
            # hand-off leaves a gap, never a number given twice
            planned = plan_documents(pages, code, session_id, self.config, kind, self._numbering)
            builder = DossierPdfBuilder() if self._pdf_builder == "auto" else self._pdf_builder
            documents = build_documents(planned, code, builder)
            dossier = ClosedDossier(session_id, code, via, opened_at, _now(), pages, documents, reason, kind,
                                    page_codes(pages, planned), operator)
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
            self._last_closed = ClosedSummary(session_id, code, len(pages), len(documents), kind)
            self._pages = []
            self._fault = None
            self._code = self._via = self._session_id = self._opened_at = None  # only the summary stays
            self._kind = "component"
            self._operator = None
            self._set_state("closed")
            self._queue("closed")
        self._flush()
        log.info("dossier session %s closed: %d pages, %d documents", session_id, len(pages), len(documents))
        return dossier

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
        if not self.config.takes(code):
            raise ForeignDossierCode("the dossier code belongs to another unit or province")
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
        self._kind = "component"
        self._operator = None
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
               fault: Fault | None = None, card: CardOutcome | None = None) -> None:
        snap = self._snapshot()
        self._pending.append(SessionEvent(kind, previous or snap.state, snap, page, fault or snap.fault, card))
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
            kind=self._kind,
            operator=self._operator if self._state not in ("idle", "closed") else None,
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

