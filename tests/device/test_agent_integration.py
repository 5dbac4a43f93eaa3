"""The whole device in one agent: every page through the page pipeline (geometry, quality, codes,
document type), the dossier session driven by the counter buttons (gpiozero MockFactory pins)
and served to the kiosk screen on loopback, closed dossiers' PDFs queued in the outbox.

Real mosquitto, the real SANE ``test`` backend, the real pipeline, classifier, PDF writer and
outbox; only the GPIO pins are mocks."""

from __future__ import annotations

import hashlib
import io
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from device.agent import Agent
from device.capture.base import CapturedPage, CaptureSource, ScanRequest
from device.config import AgentConfig
from device.inference import synthetic
from device.operators.book import OperatorBook, StaffOperator, hash_secret
from protocol.messages import DossierClosed, PageCaptured
from tests.device.agent_harness import AgentProcess, FileReceiver, Recorder, agent_config, wait_until
from tests.services import Mosquitto

DEVICE = "kiosk-test"
CLERK_PIN = "86420975"
RECEIPT_CODE = "000.00.10.H10-250101-0001"
RECEIPT = f"{RECEIPT_CODE}|1.000894.000.00.00.H10|001099012345|Giấy khai sinh bản sao"
T = 90.0  # pages through the pipeline, the classifier and the PDF writer on a busy 2-core machine


def png(image: np.ndarray, dpi: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).save(buffer, "PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


class ListSource(CaptureSource):
    """A scanner whose feeder holds the given files (the exact bytes it yields)."""

    kind = "scanner"

    def __init__(self, files: list[tuple[bytes, int, int]]) -> None:
        self.files = files

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        for sequence, (data, width, height) in enumerate(self.files, start=1):
            yield CapturedPage(data, "image/png", width, height, 200, sequence)


def test_run_scans_through_the_pipeline_and_serves_the_kiosk(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """``sohoa-device run`` with the SANE test backend, a (fake) document camera and
    ``kiosk.enabled``: telemetry reports the camera, a feeder batch's
    ``page_captured`` events carry the document type and the quality verdict, the files reach the
    fleet endpoint byte for byte, and the kiosk screen answers plain HTTP on loopback, where a
    clerk of the operator book the fleet pushed signs in with their PIN (the PIN in no log). Bad
    input tried: a request for the kiosk with a foreign Host header (refused), a path that is not
    there."""
    config = agent_config(tmp_path, mosquitto.port, fleet_url=receiver.url,
                          kiosk={"enabled": True, "port": 0}, pdf={"ocr": "off"}, camera={"type": "fake"})
    agent = AgentProcess(config, tmp_path, sane_dir)
    agent.state.mkdir(parents=True, exist_ok=True)
    OperatorBook(agent.state / "operators.json").replace(
        [StaffOperator("op-4b4b4b4b4b", "unit_staff", pin_hash=hash_secret(CLERK_PIN))], version=1)
    try:
        agent.start()
        recorder.wait_for(lambda r: bool(r.decoded("telemetry")), 30, "the first telemetry report")
        camera = recorder.decoded("telemetry")[0].camera
        assert camera is not None and camera.state in ("closed", "ready"), camera
        result = agent.scan(source="adf", max_pages=3)
        assert result["outcome"] == "complete" and result["pages"] == 3, result
        # The scanner's child process is running: starting it (and multiprocessing's resource
        # tracker with it) left every thread of the agent blocking SIGTERM and SIGINT.
        assert agent.threads_taking(signal.SIGTERM) == [] and agent.threads_taking(signal.SIGINT) == []
        batch = result["batch_id"]
        recorder.wait_for(lambda r: len([e for e in r.events("page_captured") if e.page.batch_id == batch]) == 3,
                          T, "three page events")
        pages = [e.page for e in recorder.events("page_captured") if e.page.batch_id == batch]
        for page in pages:
            assert page.quality is not None, page
            assert page.doctype is not None and page.doctype_confidence is not None, page
            assert "low_resolution" in page.quality.issues  # the test backend scans at 75 dpi
        wait_until(lambda: {p.sha256 for p in pages} <= set(receiver.files), T, "the page files")
        for page in pages:
            assert hashlib.sha256(receiver.files[page.sha256]).hexdigest() == page.sha256
            assert len(receiver.files[page.sha256]) == page.size

        port = int(agent.kiosk_url().rsplit(":", 1)[1])
        assert (agent.state / "kiosk.port").read_text() == f"{port}\n"
        screen = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert screen.status_code == 200 and screen.headers["content-type"].startswith("text/html")
        state = httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=10)
        assert state.status_code == 200 and state.json()["state"] == "idle", state.text
        assert state.json()["scanner"] is True  # the screen offers the feeder scanner
        assert state.json()["staff"]["available"] is True  # the agent gave the screen its sign-in
        assert httpx.post(f"http://127.0.0.1:{port}/api/staff", json={}, timeout=10).status_code == 200
        signed = httpx.post(f"http://127.0.0.1:{port}/api/signin", timeout=10,
                            json={"operator_id": "op-4b4b4b4b4b", "pin": CLERK_PIN})
        assert signed.status_code == 200 and signed.json()["staff"]["operator"]["id"] == "op-4b4b4b4b4b"
        assert httpx.get(f"http://127.0.0.1:{port}/nothing-here", timeout=10).status_code == 404
        foreign = httpx.get(f"http://127.0.0.1:{port}/api/state", headers={"Host": "evil.example"}, timeout=10)
        assert foreign.status_code >= 400
        status = agent.status()
        assert status["kiosk_port"] == port and status["session"]["state"] == "idle"
        assert agent.terminate() == 0
    finally:
        agent.close()
    assert "Traceback" not in agent.logs() and CLERK_PIN not in agent.logs()


def test_broken_model_bad_page_and_receipt_slip(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """Bad inputs tried: a model file that is not a TFLite model (the agent starts, says why in its
    log and ``GET /status``, types every page ``other``), and a page file that cannot be decoded
    in the middle of a batch (stored byte for byte, its event carries no verdict). The batch's
    first page is a receipt slip: its QR opens a dossier named by it (no session was open) and
    the pages after it carry its code."""
    model = tmp_path / "broken.tflite"
    model.write_bytes(b"this is not a tflite model at all")
    receipt = synthetic.text_page(seed=1, dpi=200, qr_text=RECEIPT)
    plain = synthetic.text_page(seed=2, dpi=200)
    files = [
        (png(receipt, 200), receipt.shape[1], receipt.shape[0]),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 1654, 2339),  # a PNG header and nothing usable
        (png(plain, 200), plain.shape[1], plain.shape[0]),
    ]
    config = AgentConfig.model_validate(agent_config(tmp_path, mosquitto.port, scanner=None,
                                                     doctype={"model_path": str(model)}))
    with Agent(config, source=ListSource(files)) as agent:
        assert agent.status()["doctype_model"]["error"] is not None
        job = agent.request_scan(ScanRequest())
        assert job.wait(T) and job.outcome == "complete" and job.pages == 3, job.summary()
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 3, T, "three page events")
        pages = sorted((e.page for e in recorder.events("page_captured")), key=lambda p: p.sequence)
        assert [agent.outbox.read_file(p.sha256) for p in pages] == [f[0] for f in files]
        first, broken, last = pages
        assert first.doctype == "other" and first.doctype_confidence == 0.0 and first.quality is not None
        assert first.dossier_code == RECEIPT_CODE and last.dossier_code == RECEIPT_CODE
        assert broken.quality is None and broken.doctype is None
        assert last.doctype == "other" and last.quality is not None
        assert agent.session is not None
        snap = agent.session.snapshot()
        assert snap.state == "open" and snap.dossier_code == RECEIPT_CODE and snap.opened_via == "qr"


def press(factory: Any, pin: int | str) -> None:
    device_pin = factory.pin(pin)
    device_pin.drive_low()
    device_pin.drive_high()


def test_buttons_drive_a_dossier_into_the_outbox(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver,
    mock_factory: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The clerk's buttons on MockFactory pins drive the running agent's session on the SANE test
    backend: Scan takes a feeder batch into a walk-in dossier, Done closes it; its pages and its
    PDF reach the broker and the fleet endpoint. Bad input tried: Rescan and Done pressed before
    any dossier is open (ignored, nothing filed)."""
    monkeypatch.setenv("SANE_CONFIG_DIR", str(sane_dir))
    config = AgentConfig.model_validate(agent_config(
        tmp_path, mosquitto.port, fleet_url=receiver.url, pdf={"ocr": "off"},
        scanner={"type": "sane", "device": "test:0", "dpi": 75, "source": "adf", "max_pages": 3},
        buttons={"enabled": True, "debounce_s": 0.0, "long_press_s": 5, "feedback_time_scale": 0.05}))
    buttons_cfg = config.buttons
    with Agent(config, pin_factory=mock_factory) as agent:
        assert agent.buttons is not None and agent.session is not None
        session, buttons = agent.session, agent.buttons
        wait_until(lambda: agent.scans.idle(), 30, "the scanner probe")
        press(mock_factory, buttons_cfg.rescan_pin)
        press(mock_factory, buttons_cfg.done_pin)
        buttons.wait_idle(T)
        assert session.state == "idle"
        assert any(h.startswith("ignored") for h in buttons.history), buttons.history

        press(mock_factory, buttons_cfg.scan_pin)
        snap = session.wait_for(lambda s: s.state == "review" and len(s.pages) == 3, T)
        assert snap.opened_via == "walk_in" and snap.fault is None
        assert all(p.doctype is not None for p in snap.pages)
        buttons.wait_idle(T)
        press(mock_factory, buttons_cfg.done_pin)
        buttons.wait_idle(T)
        session.wait_for_state("closed", timeout=T)

        recorder.wait_for(lambda r: len(r.events("dossier_closed")) == 1, T, "the dossier_closed event")
        closed: DossierClosed = recorder.events("dossier_closed")[0]
        assert len(closed.page_ids) == 3 and closed.documents
        pages: list[PageCaptured] = [e for e in recorder.events("page_captured") if e.page.page_id in closed.page_ids]
        assert len(pages) == 3 and all(e.page.quality is not None for e in pages)
        wanted = {d.sha256 for d in closed.documents} | {e.page.sha256 for e in pages}
        wait_until(lambda: wanted <= set(receiver.files), T, "the pages and the PDF at the fleet endpoint")
        for document in closed.documents:
            assert receiver.files[document.sha256].startswith(b"%PDF-")
        assert not recorder.events("scanner_fault")
        assert agent.outbox.held() == {}  # held while open, released once filed


@contextmanager
def _dossier_scanned_on_kiosk(tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, receiver: FileReceiver, *,
                              pages: int) -> Iterator[tuple[AgentProcess, str]]:
    """The agent as a process with its kiosk screen, a dossier opened there with the receipt's
    code and one feeder scan of ``pages`` pages started: (the agent, the kiosk API's URL)."""
    config = agent_config(tmp_path, mosquitto.port, fleet_url=receiver.url,
                          scanner={"type": "sane", "device": "test:0", "dpi": 75, "source": "adf", "max_pages": pages},
                          kiosk={"enabled": True, "port": 0}, pdf={"ocr": "off"})
    agent = AgentProcess(config, tmp_path, sane_dir)
    try:
        agent.start()
        kiosk = f"{agent.kiosk_url()}/api"
        wait_until(lambda: not agent.status()["busy"] and agent.status()["jobs_queued"] == 0, 30,
                   "the start-up scanner probe (it holds the scanner)")
        assert httpx.post(f"{kiosk}/open", json={"code": RECEIPT_CODE}, timeout=10).status_code < 300
        assert httpx.post(f"{kiosk}/scan", json={}, timeout=10).status_code < 300
        yield agent, kiosk
    finally:
        agent.close()


def test_open_dossier_survives_kill_9(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """``never lose a page``: a dossier opened and scanned from the kiosk screen is still open
    (nothing sent yet) when the agent is killed with SIGKILL. At the next start its pages, held on
    disk since capture, go out as ``page_captured`` events with the dossier code, byte for byte.
    Bad input tried: the kill itself, mid-dossier; a second identical restart (nothing twice)."""
    with _dossier_scanned_on_kiosk(tmp_path, mosquitto, sane_dir, receiver, pages=3) as (agent, kiosk):

        def reviewed() -> bool:
            state = httpx.get(f"{kiosk}/state", timeout=10).json()
            return bool(state["state"] == "review" and len(state["pages"]) == 3)

        wait_until(reviewed, T, "three pages in review on the kiosk")
        assert not recorder.events("page_captured")  # an open dossier sends nothing yet
        agent.kill9()
        agent.start()
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 3, T, "the held pages after the restart")
        pages = [e.page for e in recorder.events("page_captured")]
        assert {p.dossier_code for p in pages} == {RECEIPT_CODE}
        assert all(p.quality is not None and p.doctype is not None for p in pages)
        wait_until(lambda: {p.sha256 for p in pages} <= set(receiver.files), T, "the held page files")
        assert agent.terminate() == 0
        agent.start()  # a second start finds nothing held any more
        assert agent.terminate() == 0
        assert len(recorder.events("page_captured")) == 3


def test_validate_config_names_file_and_line_in_the_new_sections(tmp_path: Path) -> None:
    """``sohoa-device validate-config`` on the sections the integration added. Bad inputs tried:
    an unknown key under ``pipeline``, the kiosk on a non-loopback address, two buttons on one pin,
    an unknown camera type, a PDF below 200 dpi; each is reported as ``file:line: key: message``.
    A file enabling everything valid passes."""
    import subprocess
    import sys

    from tests.device.agent_harness import REPO

    good = tmp_path / "good.yaml"
    good.write_text("device_id: kiosk-0001\nunit: '000.00.00.H01'\nbuttons: {enabled: true}\n"
                    "kiosk: {enabled: true}\ncamera: {type: opencv, device: 0}\npdf: {ocr: 'off'}\n"
                    "doctype: {min_confidence: 0.6}\nsession: {max_pages: 50}\npipeline: {max_pixels: 40000000}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("device_id: kiosk-0001\nunit: '000.00.00.H01'\n"
                   "pipeline:\n  no_such_key: 1\n"
                   "kiosk:\n  host: 0.0.0.0\n"
                   "buttons:\n  scan_pin: GPIO5\n"
                   "camera:\n  type: webcam\n"
                   "pdf:\n  dpi: 150\n")
    run = [sys.executable, "-m", "device", "validate-config"]
    ok = subprocess.run([*run, str(good)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    done = subprocess.run([*run, str(bad)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    for line_no, key in ((4, "pipeline.no_such_key"), (6, "kiosk.host"), (7, "buttons"), (9, "camera"),
                         (12, "pdf.dpi")):
        assert any(line.startswith(f"{bad}:{line_no}: {key}") for line in lines), (line_no, key, lines)


def test_walk_in_dossier_held_pages_follow_its_name_and_its_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The session's pages are held in the outbox as they are captured (nothing queued to send),
    the message held for each follows the dossier's name, a removed page is released, and a
    cancel releases the rest (files gone). Bad input tried: a page removed mid-dossier, then
    the whole dossier cancelled."""
    import sqlite3

    pages = [synthetic.text_page(seed=s, dpi=200) for s in (4, 5)]
    files = [(png(p, 200), p.shape[1], p.shape[0]) for p in pages]
    config = AgentConfig.model_validate(agent_config(tmp_path, mosquitto.port, scanner=None))
    with Agent(config, source=ListSource(files)) as agent:
        session = agent.session
        assert session is not None
        session.open()
        outcome = session.capture(agent.pages_for("scan"))
        assert len(outcome.pages) == 2 and outcome.fault is None
        group = session.snapshot().session_id
        assert group is not None and agent.outbox.held() == {group: 2}
        assert not [m for m in agent.outbox.pending_messages(limit=1000) if b"page_captured" in m.payload]
        session.name(RECEIPT_CODE)
        db = sqlite3.connect(tmp_path / "state" / "outbox.db")
        try:
            payloads = [bytes(r[0]) for r in db.execute("SELECT payload FROM held")]
            shas = [r[0] for r in db.execute("SELECT sha256 FROM held")]
        finally:
            db.close()
        assert len(payloads) == 2 and all(RECEIPT_CODE.encode() in p for p in payloads)
        session.remove_page(outcome.pages[0].page_id)
        assert agent.outbox.held() == {group: 1}
        assert session.cancel()
        assert agent.outbox.held() == {}
        assert not any(agent.outbox.file_path(sha).exists() for sha in shas)


def test_a_type_changed_in_an_open_dossier_survives_kill_9(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """A citizen changes a page's type on the review screen, then the agent is killed with SIGKILL
    before the dossier closes: the held page goes out after the restart with the type the citizen
    chose, not the classifier's. Bad input tried: the kill itself, mid-dossier, after the change."""
    with _dossier_scanned_on_kiosk(tmp_path, mosquitto, sane_dir, receiver, pages=1) as (agent, kiosk):

        def one_page() -> list[dict[str, Any]]:
            state = httpx.get(f"{kiosk}/state", timeout=10).json()
            return list(state["pages"]) if state["state"] == "review" else []

        wait_until(lambda: len(one_page()) == 1, T, "the page in review on the kiosk")
        page = one_page()[0]
        chosen = "land_certificate" if page.get("doctype") != "land_certificate" else "household_book"
        answer = httpx.post(f"{kiosk}/doctype", json={"page_id": page["id"], "doctype": chosen}, timeout=10)
        assert answer.status_code < 300, answer.text
        wait_until(lambda: bool(one_page()) and one_page()[0].get("doctype") == chosen, 10, "the new type on screen")
        assert not recorder.events("page_captured")
        agent.kill9()
        agent.start()
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 1, T, "the held page after the restart")
        sent = recorder.events("page_captured")[0].page
        assert sent.page_id == page["id"]
        assert sent.doctype == chosen
        assert sent.dossier_code == RECEIPT_CODE
        assert agent.terminate() == 0
