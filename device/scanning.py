"""The scan worker: the only thread that drives the capture sources (SANE is not thread-safe).

It runs batches from a queue (a fleet ``test_scan``, the local ``POST /scan``, the timer, the
watched folder) and stores every page in the outbox before it counts it. Each page first goes
through the page pipeline; its ``page_captured`` event carries the verdict
(:func:`device.delivery.page_event.page_captured`). A pipeline error on one page stores the page
without a verdict: a counter scanner never loses a page to the pipeline. A receipt-slip QR read on
a page opens (or names) a dossier, and the pages after it carry its code. A sheet holding a staff
card's QR is no page: it is never stored (a card image in the import folder is deleted), and the
dossier session signs its clerk in or out (:meth:`DossierSession.staff_card`).

Between batches the worker probes and recovers the scanner (after a fault, a settings change or
a USB plug), and it refuses batches while the disk is below the outbox's floor.

>>> worker = ScanWorker(device_id="kiosk-0001", config=lambda: config, outbox=outbox,  # doctest: +SKIP
...                     emit=publisher.emit, source=make_source(config.scanner), folder=None, stop=stop)
>>> threading.Thread(target=worker.run).start()  # doctest: +SKIP
>>> worker.request_scan(ScanRequest(source="adf")).wait(60)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from device.capture.base import CapturedPage, CaptureSource, ScanRequest, SourceKind
from device.capture.folder import FolderSource
from device.delivery.outbox import Outbox
from device.delivery.page_event import PageFacts, page_captured
from device.errors import CaptureError, ImageRejected, NoScanner, OutboxFull, ScannerFault, ScannerNoDocs
from device.inference.verdict import CodeLike, PageVerdict, verdict_of
from protocol.commands import TestScanArgs
from protocol.messages import (
    BatchFinished,
    BatchStarted,
    DiskLow,
    Message,
    ScannerInfo,
    ScannerPlug,
    ScannerState,
    ScanRefused,
    encode,
    new_id,
)
from protocol.messages import ScannerFault as ScannerFaultEvent
from protocol.topics import Channel, topic

if TYPE_CHECKING:
    from device.capture.usbwatch import UsbDevice
    from device.config import AgentConfig
    from device.dossier.model import SessionEvent
    from device.dossier.session import DossierSession
    from device.dossier.sources import PageSource
    from device.inference.pipeline import PagePipeline

log = logging.getLogger(__name__)

FREED_AFTER_FULL = 1024 * 1024
"""After a write met ENOSPC, scans resume once this much more space is free."""

FAULT_STATE: dict[str, ScannerState] = {
    "scanner_jammed": "jammed",
    "scanner_cover_open": "cover_open",
    "scanner_no_docs": "no_docs",
    "scanner_io_error": "error",
    "scanner_gone": "absent",
}
"""The scanner's state after each fault event."""


def scan_request(args: TestScanArgs) -> tuple[Literal["scanner", "folder"], ScanRequest]:
    """Which source a ``test_scan`` (or a local ``POST /scan``) asks for, and the request for it.

    >>> scan_request(TestScanArgs(source="folder"))
    ('folder', ScanRequest(source=None, max_pages=None))
    >>> scan_request(TestScanArgs(source="adf", max_pages=2))
    ('scanner', ScanRequest(source='adf', max_pages=2))
    """
    if args.source == "folder":
        return "folder", ScanRequest(max_pages=args.max_pages)
    return "scanner", ScanRequest(source=args.source, max_pages=args.max_pages)


@dataclass
class ScanJob:
    """One batch to run, and how it ended (``done`` is set then)."""

    kind: Literal["scanner", "folder", "probe", "recover"]
    request: ScanRequest = field(default_factory=ScanRequest)
    command_id: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "pending"
    batch_id: str = field(default_factory=new_id)
    pages: int = 0
    detail: str | None = None

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def summary(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "batch_id": self.batch_id, "pages": self.pages, "detail": self.detail}


class ScanWorker:
    """Runs scan jobs one at a time on its own thread (:meth:`run`); see the module docstring.

    ``config`` is read at each batch (remote settings change it); ``pipeline`` and ``session``
    are read when used (the agent makes them at start). ``on_done`` hears of every job that
    came from a command, when it has ended.
    """

    def __init__(
        self,
        *,
        device_id: str,
        config: Callable[[], AgentConfig],
        outbox: Outbox,
        emit: Callable[[Message], None],
        source: CaptureSource | None,
        folder: FolderSource | None,
        stop: threading.Event,
        pipeline: Callable[[], PagePipeline | None] = lambda: None,
        session: Callable[[], DossierSession | None] = lambda: None,
        on_done: Callable[[ScanJob], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self._config = config
        self.outbox = outbox
        self.emit = emit
        self.source = source
        self.folder = folder
        self._stop = stop
        self._pipeline = pipeline
        self._session = session
        self.on_done = on_done
        """Hears of every job that came from a command, when it has ended."""
        self.state: ScannerState = "absent" if source is None else "ready"
        self.lock = threading.Lock()
        """Held while a batch drives the capture source; a dossier session that shares the
        scanner passes it to ``CapturePages(lock=...)`` so the two never scan at once."""
        self.batches: deque[dict[str, Any]] = deque(maxlen=50)
        self._jobs: queue.Queue[ScanJob | None] = queue.Queue()
        self._current: ScanJob | None = None
        self._queue_lock = threading.Lock()
        self._full_at: int | None = None
        self._code_re = re.compile(config().session.dossier_code_pattern)

    # --- what the rest of the agent asks --------------------------------------------------------

    def request_scan(
        self,
        request: ScanRequest,
        *,
        kind: Literal["scanner", "folder"] = "scanner",
        command_id: str | None = None,
        quiet: bool = False,
    ) -> ScanJob:
        """Queue a batch. A request while another batch runs is refused (``busy``); ``quiet``
        requests (timers, folder polling) are dropped instead."""
        job = ScanJob(kind, request, command_id)
        with self._queue_lock:
            busy = self._current is not None  # a probe or a recovery in progress just delays the batch
            if not busy:
                self._current = job
        if busy:
            job.outcome, job.detail = "refused", "busy"
            if not quiet:
                self.emit(
                    ScanRefused(
                        device_id=self.device_id, reason="busy", message="a batch is running", severity="warning"
                    )
                )
            job.done.set()
            return job
        self._jobs.put(job)
        return job

    def probe(self) -> None:
        """Open the scanner between batches to learn whether it is there."""
        self._jobs.put(ScanJob("probe"))

    def recover(self) -> None:
        """Reset the scanner between batches (the next batch reopens it)."""
        self._jobs.put(ScanJob("recover"))

    def queued(self) -> int:
        return self._jobs.qsize()

    def idle(self) -> bool:
        """No job queued and none running."""
        return self._jobs.empty() and not self.lock.locked()

    def refusing(self) -> bool:
        """Scans are refused for lack of disk (below the floor, or a write met ENOSPC and not
        enough space has come back)."""
        return self.outbox.low() or self._still_full()

    def info(self) -> ScannerInfo:
        return ScannerInfo(state=self.state, model=self.source.model if self.source is not None else None)

    def pages_for(self, kind: Literal["scan", "rescan"]) -> PageSource:
        """The scanner as a dossier session's page source: a feeder batch for Scan, one page for
        Rescan; it shares :attr:`lock` with the worker's own batches (``scanner_busy``)."""
        from device.dossier.sources import CapturePages

        if self.source is None:
            raise NoScanner("no scanner configured")
        request = ScanRequest(max_pages=1) if kind == "rescan" else ScanRequest()
        return CapturePages(self.source, request, lock=self.lock)

    def on_session(self, event: SessionEvent) -> None:
        """A dossier session drove the scanner: follow its faults and its end in :attr:`state`."""
        fault = event.fault if event.kind == "fault" else None
        if fault is not None and fault in FAULT_STATE:
            self.state = FAULT_STATE[fault]
        elif event.kind == "state" and event.previous == "capturing" and event.snapshot.fault is None:
            if self.source is not None and self.state in ("scanning", "jammed", "cover_open", "no_docs"):
                self.state = "ready"
        elif event.kind == "state" and event.state == "capturing" and event.snapshot.capturing == "scanner":
            self.state = "scanning"

    def on_usb(self, change: Literal["attached", "detached"], device: UsbDevice) -> None:
        """A scanner was plugged in or out: say so, and find out between batches whether ours is
        the one (another maker's device may have been unplugged)."""
        self.emit(
            ScannerPlug(
                device_id=self.device_id,
                type="scanner_attached" if change == "attached" else "scanner_detached",
                vendor_id=device.vendor_id,
                product_id=device.product_id,
                model=device.model,
            )
        )
        if self.source is None:
            return
        if change == "detached" or self.state in ("absent", "error"):
            self.recover()
            self.probe()

    def stop(self) -> None:
        """End :meth:`run` after the current job; jobs still queued are refused (``stopping``)."""
        if self.source is not None:
            self.source.stop()
        self._jobs.put(None)

    # --- the worker's thread --------------------------------------------------------------------

    def run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                if job is not None:
                    job.outcome, job.detail = "refused", "stopping"
                    job.done.set()
                return
            with self.lock:
                try:
                    self._run_job(job)
                except Exception:  # the worker must survive anything a backend does
                    log.exception("a batch failed unexpectedly")
                    job.outcome = "failed"
                finally:
                    with self._queue_lock:
                        if self._current is job:
                            self._current = None
                    job.done.set()
            if job.command_id is not None and self.on_done is not None:
                self.on_done(job)

    def _run_job(self, job: ScanJob) -> None:
        if job.kind == "probe":
            self._probe()
            return
        if job.kind == "recover":
            if self.source is not None:
                self.source.recover()
            return
        source = self.folder if job.kind == "folder" else self.source
        if source is None:
            job.outcome, job.detail = "refused", "no_scanner"
            self.emit(
                ScanRefused(
                    device_id=self.device_id, reason="no_scanner", message="no source configured", severity="warning"
                )
            )
            return
        if self.refusing():
            self._refuse_disk_full(job)
            return
        self._full_at = None
        self._run_batch(job, source)

    def _still_full(self) -> bool:
        return self._full_at is not None and self.outbox.free_bytes() < self._full_at + FREED_AFTER_FULL

    def _probe(self) -> None:
        opener = getattr(self.source, "open", None)
        if opener is None:
            return
        try:
            opener()
            self.state = "ready"
        except CaptureError as exc:
            self.state = "absent"
            log.warning("scanner not available yet: %s", exc)

    def _disk_low(self, free: int) -> DiskLow:
        return DiskLow(device_id=self.device_id, free_bytes=free, min_free_bytes=self.outbox.min_free_bytes,
                       severity="error")

    def _refuse_disk_full(self, job: ScanJob) -> None:
        free = self.outbox.free_bytes()
        floor = self.outbox.min_free_bytes
        log.error(
            "scan refused: only %s bytes free in %s, the floor is %s%s; pages wait for delivery to free space",
            free,
            self.outbox.state_dir,
            floor,
            " and the last write failed for lack of space" if self._full_at is not None else "",
        )
        job.outcome, job.detail = "refused", "disk_full"
        self.state = "refused"
        self.emit(self._disk_low(free))
        self.emit(
            ScanRefused(
                device_id=self.device_id,
                reason="disk_full",
                message=f"free disk {free} bytes is below the floor of {floor} bytes",
                severity="error",
            )
        )

    def _run_batch(self, job: ScanJob, source: CaptureSource) -> None:
        batch_id = job.batch_id
        kind = source.kind
        self.outbox.batch_started(batch_id, kind)
        self.emit(BatchStarted(device_id=self.device_id, batch_id=batch_id, source=kind))
        if kind == "scanner":
            self.state = "scanning"
        outcome: Literal["complete", "interrupted"] = "complete"
        pages: Iterator[CapturedPage] = source.pages(job.request)
        started = time.monotonic()
        dossier_code: str | None = None  # a receipt slip's code ties the pages after it to its dossier
        try:
            for page in pages:
                verdict, card = self._analyse(page, kind)
                if card:
                    if isinstance(source, FolderSource):
                        source.discard(page)
                    continue
                code = verdict.dossier_code if verdict is not None else None
                if code is not None and self._code_re.fullmatch(code) and len(code) <= 64:
                    if code != dossier_code:
                        self._adopt_receipt(code)
                    dossier_code = code
                self._store_page(batch_id, kind, page, verdict, dossier_code)
                job.pages += 1
                if isinstance(source, FolderSource):
                    source.done(page)
                if self.outbox.low():
                    free = self.outbox.free_bytes()
                    log.error("disk low after page %s (%s bytes free): the batch stops here", job.pages, free)
                    self.emit(self._disk_low(free))
                    source.stop()
                    outcome, job.detail = "interrupted", "disk_low"
                    break
            if self._stop.is_set() and outcome == "complete":
                outcome, job.detail = "interrupted", "agent_stopping"
            if kind == "scanner":
                self.state = "ready"
        except ScannerFault as exc:
            outcome, job.detail = "interrupted", exc.event_type
            self.state = FAULT_STATE.get(exc.event_type, "error")
            severity: Literal["warning", "error"] = "warning" if isinstance(exc, ScannerNoDocs) else "error"
            log.warning("scanner fault after %s page(s): %s (%s)", job.pages, exc.event_type, exc)
            self.emit(ScannerFaultEvent(device_id=self.device_id, type=exc.event_type, batch_id=batch_id,
                                        message=str(exc)[:256], severity=severity))
            self._recover(source)
        except NoScanner as exc:
            outcome, job.detail = "interrupted", "no_scanner"
            self.state = "absent"
            log.warning("scan refused: %s", exc)
            self.emit(ScanRefused(device_id=self.device_id, reason="no_scanner", message=str(exc)[:256]))
            self._recover(source)
        except OutboxFull as exc:
            outcome, job.detail = "interrupted", "disk_full"
            free = self.outbox.free_bytes()
            self._full_at = free
            self.state = "refused"
            log.error("disk full while storing page %s: %s; the batch stops, stored pages are kept", job.pages + 1, exc)
            self.emit(self._disk_low(free))
            self._recover(source)
        except CaptureError as exc:
            outcome, job.detail = "interrupted", "capture_error"
            self.state = "error"
            log.warning("capture failed: %s", exc)
            self.emit(ScannerFaultEvent(device_id=self.device_id, type="scanner_io_error", batch_id=batch_id,
                                        message=str(exc)[:256], severity="error"))
            self._recover(source)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
            job.outcome = outcome
            self.emit(BatchFinished(device_id=self.device_id, batch_id=batch_id, pages=job.pages, outcome=outcome))
            self.outbox.batch_finished(batch_id)
            elapsed = time.monotonic() - started
            self.batches.append(
                {"batch_id": batch_id, "source": kind, "pages": job.pages, "outcome": outcome, "detail": job.detail}
            )
            log.info("batch %s: %s page(s), %s, %.1f s", batch_id[:8], job.pages, outcome, elapsed)

    def _recover(self, source: CaptureSource) -> None:
        try:
            source.recover()
        except Exception:  # recovery must not take the agent down; the next batch retries
            log.exception("scanner recovery failed")

    def _analyse(self, page: CapturedPage, kind: SourceKind) -> tuple[PageVerdict | None, bool]:
        """The page pipeline's verdict on a captured page, or None when it could not say (the page
        is stored all the same: a pipeline error never costs a page); and whether the sheet is a
        staff card (then not stored)."""
        pipeline = self._pipeline()
        if pipeline is None:
            return None, False
        try:
            if page.width * page.height > pipeline.config.max_pixels:
                raise ImageRejected(f"{page.width}x{page.height} pixels is more than the pipeline takes")
            from device.inference.pipeline import decode_image

            image = decode_image(page.data)
            if image is None:
                raise ImageRejected(f"the {page.content_type} file cannot be decoded")
            result = pipeline.process(image, dpi=page.dpi, source=kind)
        except Exception as exc:  # MemoryError included: the page is stored without a verdict
            log.warning("page pipeline failed on page %s (%s: %s); the page is kept without a verdict",
                        page.sequence, type(exc).__name__, str(exc)[:200])
            return None, False
        return verdict_of(result), self._staff_card(result.codes, kind)

    def _staff_card(self, codes: Sequence[CodeLike], kind: SourceKind) -> bool:
        from device.operators.cards import card_token

        if card_token(codes) is None:
            return False
        session = self._session()
        if session is None or not session.staff_card(codes, source="folder" if kind == "folder" else "scanner"):
            log.info("a staff card in a batch was not stored (no sign-in here)")
        return True

    def _adopt_receipt(self, code: str) -> None:
        """A receipt slip's QR read in a batch scan: open a dossier named by it (none open), or
        name the open unnamed one. The code itself is never logged."""
        from device.dossier.errors import SessionError

        session = self._session()
        if session is None or not self._config().session.adopt_receipt_code:
            return
        try:
            snap = session.snapshot()
            if snap.state in ("idle", "closed"):
                session.open(code, via="qr")
                log.info("a receipt slip in a batch opened a dossier")
            elif snap.state in ("open", "review", "capturing") and snap.dossier_code is None:
                session.name(code)
                log.info("a receipt slip in a batch named the open dossier")
        except SessionError as exc:
            log.info("receipt slip not used for a dossier (%s)", type(exc).__name__)

    def _store_page(
        self,
        batch_id: str,
        kind: SourceKind,
        page: CapturedPage,
        verdict: PageVerdict | None,
        dossier_code: str | None,
    ) -> None:
        # The stored file stays exactly what the source produced; the verdict rides on the event.
        facts = PageFacts(page_id=new_id(), content_type=page.content_type, width=page.width, height=page.height,
                          dpi=page.dpi, source=kind, batch_id=batch_id, sequence=page.sequence, side=page.side,
                          captured_at=datetime.now(UTC))
        drop_blank = self._config().session.drop_blank_pages

        def make(sha256: str) -> tuple[str, bytes, str]:
            event = page_captured(self.device_id, facts, sha256=sha256, size=len(page.data), verdict=verdict,
                                  dossier_code=dossier_code, drop_blank_pages=drop_blank)
            return topic(self.device_id, Channel.EVENT), encode(event), event.id

        self.outbox.add_page(page.data, page.content_type, make, batch_id=batch_id)
