"""The whole dossier through the clerk's buttons on MockFactory pins, with the SANE ``test``
backend as the scanner (python-sane, its own SANE_CONFIG_DIR), the real page pipeline, the real
PDF writer and the real outbox: Scan takes the feeder's 10 pages, Rescan replaces the last from
the flatbed, Done files the dossier. Then a jam on the next dossier: attention, nothing lost,
and after the clerk clears it the next Scan works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.buttons import ButtonsConfig, CounterButtons
from device.capture.base import ScanRequest
from device.capture.config import SaneScannerConfig
from device.capture.sane import IsolatedSaneSource
from device.delivery.outbox import Outbox
from device.dossier.pdf import DossierPdfBuilder
from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from device.dossier.sources import CapturePages
from device.inference.pipeline import PagePipeline
from protocol.messages import DossierClosed, PageCaptured, decode
from tests.device.buttons.conftest import FakeClock
from tests.services import sane_config_dir

CODE = "000.00.12.H10-260101-0099"
T = 60.0  # ten pages through the pipeline and the PDF writer on a busy 2-core machine


def press(factory: Any, pin_name: int | str, clock: FakeClock) -> None:
    pin = factory.pin(pin_name)
    clock.advance()
    pin.drive_low()
    clock.advance()
    pin.drive_high()


@pytest.fixture
def scanner(sane_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IsolatedSaneSource]:
    """The driver in its child process, as the agent runs it (a jam's cancel can hang in-process)."""
    monkeypatch.setenv("SANE_CONFIG_DIR", str(sane_dir))
    source = IsolatedSaneSource(SaneScannerConfig(device="auto", source="adf", dpi=75))
    try:
        yield source
    finally:
        source.close()  # sane.exit()


def test_button_dossier_on_sane_test_backend(
    mock_factory: Any, buttons_config: ButtonsConfig, clock: FakeClock, scanner: IsolatedSaneSource, sane_dir: Path,
    tmp_path: Path,
) -> None:
    """Bad inputs tried: a jam reported by the scanner in the middle of the second dossier's
    first batch (the test backend's read-status-code), a Done while the jam is showing."""
    from device.dossier.config import PdfConfig

    def pages_for(kind: str) -> CapturePages:
        if kind == "rescan":
            return CapturePages(scanner, ScanRequest(source="flatbed", max_pages=1))
        return CapturePages(scanner, ScanRequest(source="adf"))

    outbox = Outbox(tmp_path / "state")
    pipeline = PagePipeline()
    session = DossierSession(
        processor=pipeline,
        sink=OutboxSink(outbox, "kiosk-0001"),
        pdf_builder=DossierPdfBuilder(PdfConfig(ocr="off"), unit="000.00.12.H10", device="kiosk-0001"),
    )
    buttons = CounterButtons(buttons_config, session, pages_for, pin_factory=mock_factory, clock=clock)
    try:
        press(mock_factory, buttons_config.scan_pin, clock)
        buttons.wait_idle(T)
        snap = session.snapshot()
        assert snap.state == "review" and len(snap.pages) == 10 and snap.fault is None
        session.name(CODE)  # the clerk names the walk-in dossier (kiosk screen or fleet)
        last = snap.pages[-1].page_id
        press(mock_factory, buttons_config.rescan_pin, clock)
        buttons.wait_idle(T)
        snap = session.snapshot()
        assert len(snap.pages) == 10 and snap.pages[-1].page_id != last and snap.pages[-1].sequence == 10
        kept = session.pages()
        press(mock_factory, buttons_config.done_pin, clock)
        buttons.wait_idle(T)
        assert session.state == "closed"
        messages = [decode(m.topic, m.payload).message for m in outbox.pending_messages()]
        pages = [m for m in messages if isinstance(m, PageCaptured)]
        closed = [m for m in messages if isinstance(m, DossierClosed)]
        assert len(pages) == 10 and len(closed) == 1
        assert {p.page.dossier_code for p in pages} == {CODE} and closed[0].dossier_code == CODE
        assert all(p.page.source == "scanner" and p.page.dpi == 75 for p in pages)
        for page, captured in zip(pages, kept, strict=True):
            assert outbox.file_path(page.page.sha256).read_bytes() == captured.data  # the scanner's PNG, as is
        assert closed[0].documents and all(d.name.startswith(f"{CODE}.") for d in closed[0].documents)
        for document in closed[0].documents:
            assert outbox.file_path(document.sha256).read_bytes()[:5] == b"%PDF-"
        buttons.panel.wait_for(lambda h: "dossier_closed" in h, T)

        # --- the next dossier: the scanner jams; the clerk clears it and scans again ---
        press(mock_factory, buttons_config.done_pin, clock)  # next
        buttons.wait_idle(T)
        sane_config_dir(sane_dir, **{"read-status-code": '"SANE_STATUS_JAMMED"'})
        scanner.close()  # the backend reads test.conf when SANE starts
        press(mock_factory, buttons_config.scan_pin, clock)
        buttons.wait_idle(T)
        snap = session.snapshot()
        assert snap.state in ("open", "review") and snap.fault == "scanner_jammed"
        buttons.panel.wait_for(lambda h: h[-1:] == ["attention"], T)
        jammed_pages = len(snap.pages)
        sane_config_dir(sane_dir)  # jam cleared
        press(mock_factory, buttons_config.scan_pin, clock)
        buttons.wait_idle(T)
        snap = session.snapshot()
        assert snap.fault is None and len(snap.pages) == jammed_pages + 10
        assert buttons.history == ["scan", "rescan", "done", "next", "scan", "scan"]
    finally:
        buttons.close()
        session.close()
        pipeline.close()
        outbox.close()
