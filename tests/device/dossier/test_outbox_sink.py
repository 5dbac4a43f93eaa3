"""Closing a dossier into the real outbox (SQLite + files on disk): every page file byte for
byte with its page_captured event, the PDFs, one dossier_closed event; handing the same dossier
over twice (a retry after a full disk) stores nothing twice."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image

from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from device.dossier.sources import CapturePages
from protocol.messages import DossierClosed, Operator, PageCaptured, decode
from tests.device.dossier.doubles import RecordingPdf, ScriptedPipeline, Verdict, page_image

outbox_mod = pytest.importorskip("device.delivery.outbox")

CODE = "000.00.12.H10-260101-0007"
CLERK = Operator(kind="postal_staff", id="op-5c0ffee001")


@dataclass(frozen=True)
class PngPage:
    data: bytes
    content_type: str = "image/png"
    dpi: int | None = 200
    side: Literal["front", "back"] = "front"


class PngBatch:
    """A capture source in the shape of ``device.capture.base.CaptureSource``: PNG files."""

    kind = "scanner"

    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.stopped = False

    def pages(self, request: object) -> Iterator[PngPage]:
        for value in self.values:
            buffer = io.BytesIO()
            Image.fromarray(np.full((20, 16, 3), value, np.uint8)).save(buffer, "PNG", dpi=(200, 200))
            yield PngPage(buffer.getvalue())

    def stop(self) -> None:
        self.stopped = True


def test_dossier_reaches_outbox(tmp_path: Path) -> None:
    """Two scanner pages (PNG kept as scanned) and a camera frame (encoded at close), one of them
    rejected by quality: all reach the outbox; the bad PNG header case is not tried here. Each
    page's event names the clerk who digitized it (the dossier's operator), as the dossier's does."""
    outbox = outbox_mod.Outbox(tmp_path / "state")
    pdf = RecordingPdf()
    pipeline = ScriptedPipeline({2: Verdict(ok=False, doctype="cccd"), 1: Verdict(doctype="cccd")})
    sink = OutboxSink(outbox, "kiosk-0001")
    try:
        session = DossierSession(processor=pipeline, sink=sink, pdf_builder=pdf)
        session.open(CODE, via="qr", operator=CLERK)
        source = PngBatch([1, 2])
        session.capture(CapturePages(source, None))
        session.add_image(page_image(3, (30, 20)))
        closed = session.finish()
        assert closed is not None
        messages = [decode(m.topic, m.payload).message for m in outbox.pending_messages()]
        pages = [m for m in messages if isinstance(m, PageCaptured)]
        ends = [m for m in messages if isinstance(m, DossierClosed)]
        assert len(pages) == 3 and len(ends) == 1
        assert [p.page.dossier_code for p in pages] == [CODE] * 3
        assert [p.page.operator for p in pages] == [CLERK] * 3 and ends[0].operator == CLERK
        assert pages[1].page.quality is not None and pages[1].page.quality.issues == ["blurry"]
        assert pages[1].severity == "warning"
        assert (pages[0].page.width, pages[0].page.height, pages[0].page.dpi) == (16, 20, 200)
        assert (pages[2].page.width, pages[2].page.height) == (19, 29)  # the kept (cropped) camera page
        # the scanner's file is delivered byte for byte
        assert outbox.file_path(pages[0].page.sha256).read_bytes() == closed.pages[0].data
        assert ends[0].page_ids == [p.page.page_id for p in pages]
        assert [d.sha256 for d in ends[0].documents] == [d.sha256 for d in closed.documents]
        for document in closed.documents:
            assert outbox.file_path(document.sha256).read_bytes() == document.pdf
        depth = outbox.depth()
        sink.submit_dossier(closed)  # a retry stores nothing twice
        assert outbox.depth() == depth
    finally:
        outbox.close()


def test_capture_pages_lock_refuses_a_second_user() -> None:
    """With the agent's scanner lock held by its own scan, the session's batch fails at once with
    scanner_busy and no page; once released, the batch runs and the lock is free again after."""
    import threading

    lock = threading.Lock()
    source = PngBatch([1, 2])
    with DossierSession(pdf_builder=None) as session:
        session.open(CODE)
        with lock:
            outcome = session.capture(CapturePages(source, None, lock=lock))
        assert outcome.fault == "scanner_busy" and outcome.pages == ()
        outcome = session.capture(CapturePages(source, None, lock=lock))
        assert outcome.fault is None and len(outcome.pages) == 2 and not lock.locked()
        session.cancel()
