"""The dossier session state machine: opening three ways, capturing, rescan, review, closing
into the sink, cancel, faults mid-batch, wrong orders, and many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from device.dossier.config import SessionConfig
from device.dossier.errors import InvalidDossierCode, InvalidSessionAction, UnknownPage
from device.dossier.model import SessionEvent
from device.dossier.session import DossierSession
from device.errors import CameraUnavailable, NoScanner, OutboxFull, ScannerGone, ScannerJammed, ScannerNoDocs
from protocol.messages import encode
from tests.device.dossier.doubles import (
    ListSource,
    RecordingPdf,
    RecordingSink,
    ScriptedPipeline,
    Verdict,
    page_image,
)

CODE = "000.00.12.H10-260101-0001"
OTHER = "000.00.12.H10-260101-0002"


class Recorder:
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: SessionEvent) -> None:
        with self.lock:
            self.events.append(event)

    def states(self) -> list[str]:
        with self.lock:
            return [e.state for e in self.events if e.kind == "state"]

    def kinds(self) -> list[str]:
        with self.lock:
            return [e.kind for e in self.events]


@pytest.fixture
def parts() -> Iterator[tuple[DossierSession, ScriptedPipeline, RecordingPdf, RecordingSink, Recorder]]:
    pipeline, pdf, sink, rec = ScriptedPipeline(), RecordingPdf(), RecordingSink(), Recorder()
    session = DossierSession(SessionConfig(), processor=pipeline, sink=sink, pdf_builder=pdf)
    session.add_listener(rec)
    try:
        yield session, pipeline, pdf, sink, rec
    finally:
        session.close()


def test_typed_code_batch_review_close(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf, RecordingSink,
                                                    Recorder]) -> None:
    """The whole happy path; the PDFs are split where the document type changes."""
    session, pipeline, _pdf, sink, rec = parts
    pipeline.verdicts = {1: Verdict(doctype="cccd"), 2: Verdict(doctype="cccd"), 3: Verdict(doctype="birth_cert")}
    session.open(f"  {CODE} ")  # typed codes are trimmed
    outcome = session.capture(ListSource([page_image(v) for v in (1, 2, 3)]))
    assert [p.sequence for p in outcome.pages] == [1, 2, 3] and outcome.fault is None
    assert session.state == "review"
    session.accept()
    closed = session.finish()
    assert closed is not None
    assert rec.states() == ["open", "capturing", "review", "open", "closing", "closed"]
    assert rec.kinds().count("page_added") == 3
    assert closed.dossier_code == CODE and closed.opened_via == "typed"
    assert [d.name for d in closed.documents] == [f"{CODE}.1.pdf", f"{CODE}.2.pdf"]
    assert [d.doctype for d in closed.documents] == ["cccd", "birth_cert"]
    assert [len(d.page_ids) for d in closed.documents] == [2, 1]
    assert sink.dossiers == [closed]
    # the kept image is the pipeline's (cropped) page, not the raw capture
    assert closed.pages[0].image.shape == (39, 29, 3)
    event = closed.to_event("kiosk-0001")
    assert event.page_ids == [p.page_id for p in closed.pages] and b"dossier_closed" in encode(event)
    snap = session.snapshot()
    assert snap.state == "closed" and snap.pages == () and snap.last_closed is not None
    assert snap.dossier_code is None and snap.session_id is None  # only the summary stays on show
    assert snap.last_closed.pages == 3
    session.reset()
    assert session.snapshot().last_closed is None and session.snapshot().state == "idle"


def test_walk_in_named_by_receipt_qr(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf, RecordingSink,
                                                  Recorder]) -> None:
    """A walk-in dossier whose first page is the receipt slip takes the slip's code; a later page
    carrying a different dossier's code is kept but raises a mismatch fault (not silently merged)."""
    session, pipeline, _, sink, rec = parts
    pipeline.verdicts = {1: Verdict(receipt=CODE, doctype="receipt"), 3: Verdict(receipt=OTHER, doctype="receipt")}
    snap = session.open()
    assert snap.opened_via == "walk_in" and snap.dossier_code is None
    session.capture(ListSource([page_image(1), page_image(2)]))
    snap = session.snapshot()
    assert snap.dossier_code == CODE and snap.opened_via == "qr" and len(snap.pages) == 2
    assert "named" in rec.kinds()
    session.capture(ListSource([page_image(3)]))
    snap = session.snapshot()
    assert snap.fault == "dossier_code_mismatch" and snap.dossier_code == CODE and len(snap.pages) == 3
    closed = session.finish()
    assert closed is not None and closed.dossier_code == CODE and len(sink.dossiers[0].pages) == 3


def test_receipt_slip_dropped_when_configured() -> None:
    """keep_receipt_slip=False: the slip names the dossier and leaves it."""
    pipeline = ScriptedPipeline({1: Verdict(receipt=CODE)})
    with DossierSession(SessionConfig(keep_receipt_slip=False), processor=pipeline, pdf_builder=None) as session:
        session.open()
        session.capture(ListSource([page_image(1), page_image(2)]))
        snap = session.snapshot()
        assert snap.dossier_code == CODE and [p.sequence for p in snap.pages] == [1]
        session.cancel()


def test_walk_in_closed_unnamed_and_named_later(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf,
                                                             RecordingSink, Recorder]) -> None:
    """Unnamed at close: PDFs use the walk-in prefix and the event says dossier_code None. Named
    later (before close): the code is used. Bad codes (path separators, empty, too long) are refused."""
    session, _, _, _sink, _ = parts
    session.open()
    session.capture(ListSource([page_image(1)]))
    closed = session.finish()
    assert closed is not None and closed.dossier_code is None
    assert closed.documents[0].name.startswith("WALKIN-") and closed.documents[0].name.endswith(".1.pdf")
    assert closed.to_event("kiosk-0001").dossier_code is None
    session.open()
    for bad in ("../etc/passwd", "", "a/b", "x" * 65, "mã hồ sơ"):
        with pytest.raises(InvalidDossierCode):
            session.name(bad)
    session.name(CODE)
    session.capture(ListSource([page_image(2)]))
    closed = session.finish()
    assert closed is not None and closed.dossier_code == CODE and closed.opened_via == "walk_in"
    with pytest.raises(InvalidDossierCode):
        session.open(None, via="qr")


def test_rescan_replaces_last_page_and_failed_rescan_keeps_it(parts: tuple[DossierSession, ScriptedPipeline,
                                                                           RecordingPdf, RecordingSink,
                                                                           Recorder]) -> None:
    """Rescan swaps the last page only once the new one has arrived: an empty feeder or an
    unplugged scanner during the rescan leaves the old page where it was."""
    session, pipeline, _, _, rec = parts
    pipeline.verdicts = {2: Verdict(ok=False)}
    session.open(CODE)
    session.capture(ListSource([page_image(1), page_image(2)]))
    before = session.snapshot().pages
    assert before[1].ok is False and before[1].issues == ("blurry",)
    assert before[1].messages_vi == ("Ảnh bị mờ",)
    for fault in (ScannerNoDocs("no paper"), ScannerGone("unplugged")):
        outcome = session.capture(ListSource([], fail_after=0, fault=fault), replace_last=True)
        assert outcome.pages == () and outcome.fault == fault.event_type
        assert session.snapshot().pages == before
        assert session.state == "review"
    rescan = ListSource([page_image(5), page_image(6)])
    outcome = session.capture(rescan, replace_last=True)
    assert rescan.yielded == 1 and rescan.ended.is_set()  # the feeder's batch ended with the one page
    after = session.snapshot().pages
    assert len(outcome.pages) == 1 and len(after) == 2
    assert after[0] == before[0] and after[1].page_id != before[1].page_id and after[1].ok
    assert session.snapshot().fault is None  # a good capture clears the old fault
    assert "page_replaced" in rec.kinds()
    assert int(session.page_image(after[1].page_id)[0, 0, 0]) == 5


def test_scanner_or_camera_pulled_mid_batch_keeps_pages(parts: tuple[DossierSession, ScriptedPipeline,
                                                                     RecordingPdf, RecordingSink,
                                                                     Recorder]) -> None:
    """Pulling the scanner after two pages of five, then a jam, then the camera gone: every page
    taken before each fault stays, the session sits in review with the fault, and the next
    capture carries on numbering after them."""
    session, _, _, sink, rec = parts
    session.open(CODE)
    outcome = session.capture(ListSource([page_image(v) for v in range(1, 6)], fail_after=2,
                                         fault=ScannerGone("device gone")))
    assert len(outcome.pages) == 2 and outcome.fault == "scanner_gone"
    snap = session.snapshot()
    assert snap.state == "review" and snap.fault == "scanner_gone" and len(snap.pages) == 2
    assert any(e.kind == "fault" and e.fault == "scanner_gone" for e in rec.events)
    outcome = session.capture(ListSource([page_image(6)], fail_after=1, fault=ScannerJammed("paper jam")))
    assert [p.sequence for p in outcome.pages] == [3] and outcome.fault == "scanner_jammed"
    outcome = session.capture(ListSource([page_image(7)], source="camera", fail_after=0,
                                         fault=CameraUnavailable("camera unplugged")))
    assert outcome.fault == "camera_unavailable" and len(session.snapshot().pages) == 3
    outcome = session.capture(ListSource([], fail_after=0, fault=NoScanner("no scanner found by SANE")))
    assert outcome.fault == "no_scanner" and len(session.snapshot().pages) == 3
    outcome = session.capture(ListSource([page_image(8)], fail_after=0, fault=OSError("usb: pipe error")))
    assert outcome.fault == "capture_error" and len(session.snapshot().pages) == 3
    closed = session.finish()
    assert closed is not None and len(closed.pages) == 3 and sink.dossiers == [closed]


def test_unexpected_orders_change_nothing(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf,
                                                       RecordingSink, Recorder]) -> None:
    """Every action in a state where it makes no sense raises InvalidSessionAction and leaves
    the session exactly as it was: capture/finish/rescan/accept in idle, open twice, finish and
    add while a capture runs, rescan with no page, remove an unknown page."""
    session, _, _, sink, _ = parts
    with pytest.raises(InvalidSessionAction):
        session.capture(ListSource([page_image(1)]))
    for action in (session.finish, session.accept, lambda: session.name(CODE)):
        with pytest.raises(InvalidSessionAction):
            action()
    assert session.cancel() is False
    session.open(CODE)
    with pytest.raises(InvalidSessionAction):
        session.open(OTHER)
    with pytest.raises(InvalidSessionAction):
        session.capture(ListSource([page_image(1)]), replace_last=True)
    with pytest.raises(UnknownPage):
        session.remove_page("no-such-page")
    assert session.finish() is None and session.state == "idle"  # an empty dossier just ends
    session.open(CODE)
    source = ListSource([page_image(1), page_image(2), page_image(3)], gate_after=1)
    worker = threading.Thread(target=session.capture, args=(source,))
    worker.start()
    try:
        assert source.reached.wait(5)
        assert session.snapshot().state == "capturing"
        actions: list[Callable[[], object]] = [
            session.finish, lambda: session.add_image(page_image(9)), session.reset,
            lambda: session.capture(ListSource([page_image(4)])),
        ]
        for busy_action in actions:
            with pytest.raises(InvalidSessionAction):
                busy_action()
    finally:
        source.gate.set()
        worker.join(5)
    snap = session.wait_for_state("review", timeout=5)
    assert len(snap.pages) == 3
    assert sink.dossiers == []


def test_cancel_during_capture_stops_source_and_discards(parts: tuple[DossierSession, ScriptedPipeline,
                                                                      RecordingPdf, RecordingSink,
                                                                      Recorder]) -> None:
    """A cancel while the feeder runs stops the batch at the next page and drops the dossier;
    nothing reaches the sink."""
    session, _, _, sink, rec = parts
    session.open(CODE)
    source = ListSource([page_image(v) for v in range(1, 8)], gate_after=2)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(session.capture(source)))
    worker.start()
    assert source.reached.wait(5)
    assert session.cancel() is True
    source.gate.set()
    worker.join(5)
    assert session.state == "idle" and source.saw_stop and source.yielded == 2
    assert sink.dossiers == [] and session.snapshot().pages == ()
    assert "cancelled" in rec.kinds()
    assert getattr(result[0], "cancelled", False) is True


def test_full_outbox_keeps_dossier_then_retry(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf,
                                                           RecordingSink, Recorder]) -> None:
    """Disk full at close: the error surfaces, the dossier returns to review with every page and
    the disk_full fault; after space is freed, Done again delivers the same pages."""
    session, _, _, sink, _ = parts
    session.open(CODE)
    session.capture(ListSource([page_image(1), page_image(2)]))
    ids = [p.page_id for p in session.snapshot().pages]
    sink.full = True
    with pytest.raises(OutboxFull):
        session.finish()
    snap = session.snapshot()
    assert snap.state == "review" and snap.fault == "disk_full" and [p.page_id for p in snap.pages] == ids
    sink.full = False
    closed = session.finish()
    assert closed is not None and [p.page_id for p in closed.pages] == ids


def test_pipeline_failure_and_blank_pages(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf,
                                                       RecordingSink, Recorder]) -> None:
    """A page the pipeline cannot read stays (raw image, processing_failed); a blank back page
    is delivered but kept out of the PDFs."""
    session, pipeline, pdf, _, _ = parts
    pipeline.verdicts = {2: Verdict(raises=True), 3: Verdict(blank=True)}
    session.open(CODE)
    session.capture(ListSource([page_image(1), page_image(2), page_image(3)]))
    pages = session.snapshot().pages
    assert pages[1].issues == ("processing_failed",) and not pages[1].ok
    assert session.page_image(pages[1].page_id).shape == (40, 30, 3)  # the raw image
    closed = session.finish()
    assert closed is not None and len(closed.pages) == 3
    assert pdf.calls[0][1] == [pages[0].page_id, pages[1].page_id]


def test_review_from_open() -> None:
    """review() needs a page; from open with pages it goes to review."""
    with DossierSession(pdf_builder=None) as session:
        session.open(CODE)
        with pytest.raises(InvalidSessionAction):
            session.review()
        session.add_image(page_image(1))
        session.accept()
        assert session.review().state == "review"
        session.cancel()


def test_add_image_retake_remove(parts: tuple[DossierSession, ScriptedPipeline, RecordingPdf, RecordingSink,
                                              Recorder]) -> None:
    """The kiosk's way: one camera shot at a time, retake a given page, remove a page."""
    session, _, _, _, rec = parts
    session.open(CODE, via="qr")
    a = session.add_image(page_image(1))
    b = session.add_image(page_image(2))
    assert session.state == "review" and (a.sequence, b.sequence) == (1, 2)
    a2 = session.add_image(page_image(3), replace_page_id=a.page_id)
    assert a2.sequence == 1 and [p.page_id for p in session.snapshot().pages] == [a2.page_id, b.page_id]
    with pytest.raises(UnknownPage):
        session.add_image(page_image(4), replace_page_id="gone")
    assert session.state == "review"
    session.remove_page(a2.page_id)
    snap = session.snapshot()
    assert [(p.page_id, p.sequence) for p in snap.pages] == [(b.page_id, 1)]
    session.remove_page(b.page_id)
    assert session.snapshot().state == "open"
    assert rec.states().count("capturing") == 3


def test_too_many_pages() -> None:
    """A feeder batch larger than max_pages stops at the limit with a fault; nothing past it."""
    with DossierSession(SessionConfig(max_pages=3), pdf_builder=None) as session:
        session.open(CODE)
        outcome = session.capture(ListSource([page_image(v) for v in range(1, 7)]))
        assert len(outcome.pages) == 3 and session.snapshot().fault == "too_many_pages"
        session.cancel()


def test_many_threads_at_once() -> None:
    """Eight threads race to add 40 pages while another reads snapshots: only one capture runs at
    a time, every page lands once, sequences are 1..40 with no gap or duplicate."""
    sink = RecordingSink()
    session = DossierSession(processor=ScriptedPipeline(), sink=sink, pdf_builder=None)
    session.open(CODE)
    added: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def adder(n: int) -> None:
        for i in range(5):
            while True:
                try:
                    page = session.add_image(page_image(n * 5 + i))
                except InvalidSessionAction:
                    continue
                with lock:
                    added.append(page.page_id)
                break

    def reader() -> None:
        while not done.is_set():
            snap = session.snapshot()
            assert [p.sequence for p in snap.pages] == list(range(1, len(snap.pages) + 1))

    threads = [threading.Thread(target=adder, args=(n,)) for n in range(8)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    watcher.join(5)
    snap = session.snapshot()
    assert len(added) == 40 and sorted(added) == sorted(p.page_id for p in snap.pages)
    assert [p.sequence for p in snap.pages] == list(range(1, 41))
    session.close()
    assert len(sink.dossiers) == 1 and sink.dossiers[0].reason == "shutdown"


def test_listener_can_call_back_and_order_is_kept() -> None:
    """A listener that acts on the session (reset after close) does not deadlock, and a failing
    listener does not stop the others."""
    session = DossierSession(sink=RecordingSink(), pdf_builder=None)
    seen: list[str] = []

    def bad(event: SessionEvent) -> None:
        raise ValueError("listener bug")

    def auto_reset(event: SessionEvent) -> None:
        seen.append(f"{event.kind}:{event.state}")
        if event.kind == "closed":
            session.reset()

    session.add_listener(bad)
    session.add_listener(auto_reset)
    session.open(CODE)
    session.add_image(np.zeros((10, 10, 3), np.uint8))
    session.finish()
    assert session.wait_for_state("idle", timeout=5).last_closed is None
    assert seen == ["state:open", "state:capturing", "page_added:capturing", "state:review", "state:closing",
                    "state:closed", "closed:closed", "state:idle"]
    session.close()


def test_pdf_failure_still_delivers_pages() -> None:
    """A PDF builder that throws: the pages still reach the sink (a PDF can be rebuilt, a page cannot)."""

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError("tesseract crashed")

    sink = RecordingSink()
    with DossierSession(sink=sink, pdf_builder=broken) as session:
        session.open(CODE)
        session.add_image(page_image(1))
        closed = session.finish()
        assert closed is not None and closed.documents == () and len(sink.dossiers[0].pages) == 1


def test_config_forbids_unknown_keys() -> None:
    """A mistyped key and a broken regular expression are config errors."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SessionConfig.model_validate({"max_page": 3})
    with pytest.raises(ValidationError):
        SessionConfig.model_validate({"dossier_code_pattern": "(["})


def test_real_pdf_writer(tmp_path: Path) -> None:
    """The dossier PDF writer (device/dossier/pdf_writer.py): closing writes real PDFs named
    <code>.<n>.pdf that pikepdf opens, one page per kept page; the blank page is left out."""
    import pikepdf

    from device.dossier.pdf import DossierPdfBuilder

    rng = np.random.default_rng(5)
    paper = np.full((600, 420, 3), 235, np.uint8)
    paper[100:500:20, 40:380] = rng.integers(0, 60, size=(20, 340, 3), dtype=np.uint8)  # lines of "text"
    pipeline = ScriptedPipeline({235: Verdict(doctype="application_form"), 9: Verdict(blank=True)})
    sink = RecordingSink()
    with DossierSession(processor=pipeline, sink=sink, pdf_builder=DossierPdfBuilder()) as session:
        session.open(CODE)
        session.add_image(paper, source="scanner", dpi=200)
        blank = np.full((600, 420, 3), 9, np.uint8)
        session.add_image(blank, source="scanner", dpi=200)
        closed = session.finish()
    assert closed is not None and [d.name for d in closed.documents] == [f"{CODE}.1.pdf"]
    out = tmp_path / "out.pdf"
    out.write_bytes(closed.documents[0].pdf)
    with pikepdf.open(out) as pdf:
        assert len(pdf.pages) == 1
