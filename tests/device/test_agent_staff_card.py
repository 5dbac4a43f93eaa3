"""A staff card fed through the scanner, on a counter box with buttons and no screen: the card
(rendered as the admin page prints it, :func:`device.inference.synthetic.staff_card`) lies on top
of the feeder's stack, the rest of the batch comes from the real SANE ``test`` backend. The card
signs its clerk in, or out when it is theirs; it is never a page (no page event, nothing stored,
nothing sent to the fleet; a card image in the import folder is deleted), and its token is in
no log line, no MQTT message and no file.

Real mosquitto, the real SANE ``test`` backend, the real pipeline, outbox and HTTP upload; only
the GPIO pins are mocks. One agent for the whole story (a few dossiers on one counter)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from device.agent import Agent
from device.capture.base import CapturedPage, CaptureSource, ScanRequest
from device.capture.registry import make_source
from device.config import AgentConfig
from device.inference import synthetic
from device.operators.book import StaffOperator, hash_secret
from protocol.messages import DossierClosed, Operator, PageCaptured
from tests.device.agent_harness import FileReceiver, Recorder, agent_config, wait_until
from tests.services import Mosquitto

CARD_A = "a7" * 16
CARD_B = "0b" * 16
ALICE = Operator(kind="unit_staff", id="op-a1a1a1a1a1")
BINH = Operator(kind="postal_staff", id="op-b2b2b2b2b2")
T = 90.0  # pages through the pipeline on a busy 2-core machine


def _png(image: np.ndarray, dpi: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).save(buffer, "PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


class Feeder(CaptureSource):
    """The SANE ``test`` backend's feeder with sheets laid on top: each batch takes the next
    stack, its rendered sheets first, then (when the stack says so) the backend's own pages."""

    kind = "scanner"

    def __init__(self, sane: CaptureSource) -> None:
        self.sane = sane
        self.stacks: list[tuple[list[bytes], bool]] = []

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        sheets, then_sane = self.stacks.pop(0)
        for sequence, data in enumerate(sheets, start=1):
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
            yield CapturedPage(data, "image/png", width, height, 300, sequence)
        if then_sane:
            yield from self.sane.pages(request)

    def open(self) -> None:
        opener = getattr(self.sane, "open", None)
        if callable(opener):
            opener()

    def recover(self) -> None:
        self.sane.recover()

    def stop(self) -> None:
        self.sane.stop()

    def close(self) -> None:
        self.sane.close()


def _press(factory: Any, pin: int | str) -> None:
    device_pin = factory.pin(pin)
    device_pin.drive_low()
    device_pin.drive_high()


def test_a_staff_card_on_the_feeder_signs_in_and_out_and_is_never_a_page(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver,
    mock_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("SANE_CONFIG_DIR", str(sane_dir))
    config = AgentConfig.model_validate(agent_config(
        tmp_path, mosquitto.port, fleet_url=receiver.url, pdf={"ocr": "off"},
        scanner={"type": "sane", "device": "test:0", "dpi": 75, "source": "adf", "max_pages": 2},
        folder={"path": str(inbox), "interval_s": 0.2, "settle_s": 0},
        buttons={"enabled": True, "debounce_s": 0.0, "long_press_s": 5, "feedback_time_scale": 0.05}))
    card_a = _png(synthetic.staff_card(CARD_A, str(ALICE.id)), 300)
    card_b = _png(synthetic.staff_card(CARD_B, str(BINH.id)), 300)
    feeder = Feeder(make_source(config.scanner))  # type: ignore[arg-type]
    pins = config.buttons
    with Agent(config, source=feeder, pin_factory=mock_factory) as agent:
        assert agent.buttons is not None and agent.session is not None
        session, buttons, panel = agent.session, agent.buttons, agent.buttons.panel
        agent.operators.replace([StaffOperator(str(ALICE.id), "unit_staff", card_hash=hash_secret(CARD_A)),
                                 StaffOperator(str(BINH.id), "postal_staff", card_hash=hash_secret(CARD_B))],
                                version=1)
        wait_until(lambda: agent.scans.idle(), 30, "the scanner probe")

        # Binh's card in a batch outside any dossier (the agent's own scan): signed in, not stored
        feeder.stacks.append(([card_b], False))
        job = agent.request_scan(ScanRequest())
        assert job.wait(T) and job.outcome == "complete" and job.pages == 0, job.summary()
        assert agent.sign_in.operator() == BINH and session.state == "idle"

        # Scan with Alice's card on top of the stack: the dossier Scan opened (Binh's, still
        # empty) takes Alice, and the scanner's two pages are hers
        feeder.stacks.append(([card_a], True))
        _press(mock_factory, pins.scan_pin)
        snap = session.wait_for(lambda s: s.state == "review" and len(s.pages) == 2, T)
        buttons.wait_idle(T)
        assert agent.sign_in.operator() == ALICE and snap.operator == ALICE
        panel.wait_for(lambda h: "signed_in" in h, T)

        # Binh's card while Alice's dossier holds pages: refused, not a page, nobody changes
        feeder.stacks.append(([card_b], False))
        _press(mock_factory, pins.scan_pin)
        panel.wait_for(lambda h: "card_refused" in h, T)
        buttons.wait_idle(T)
        snap = session.snapshot()
        assert len(snap.pages) == 2 and snap.operator == ALICE and agent.sign_in.operator() == ALICE

        _press(mock_factory, pins.done_pin)
        buttons.wait_idle(T)
        session.wait_for_state("closed", timeout=T)

        # Alice's card again signs her out; Binh's after it signs him in, and the new dossier
        # (no page yet) is his
        feeder.stacks.append(([card_a, card_b], True))
        _press(mock_factory, pins.scan_pin)
        snap = session.wait_for(lambda s: s.state == "review" and len(s.pages) == 2, T)
        buttons.wait_idle(T)
        assert snap.operator == BINH and agent.sign_in.operator() == BINH
        assert [h for h in panel.history if h in ("signed_in", "signed_out", "card_refused")] == [
            "signed_in", "signed_in", "card_refused", "signed_out", "signed_in"]  # Binh, Alice, ...
        _press(mock_factory, pins.done_pin)
        buttons.wait_idle(T)
        session.wait_for_state("closed", timeout=T)

        recorder.wait_for(lambda r: len(r.events("dossier_closed")) == 2, T, "two dossier_closed events")
        closed: list[DossierClosed] = recorder.events("dossier_closed")
        assert [c.operator for c in closed] == [ALICE, BINH]
        pages: list[PageCaptured] = recorder.events("page_captured")
        assert len(pages) == 4  # the scanner's pages only: no card is a page
        by_dossier = {c.session_id: set(c.page_ids) for c in closed}
        for event in pages:
            owner = next(c for c in closed if event.page.page_id in by_dossier[c.session_id])
            assert event.page.operator == owner.operator
        wanted = {d.sha256 for c in closed for d in c.documents} | {e.page.sha256 for e in pages}
        wait_until(lambda: wanted <= set(receiver.files), T, "the pages and PDFs at the fleet endpoint")

        # the import folder: Binh's card among the files signs him out and is deleted, the page
        # beside it is imported as usual
        (inbox / "a-card.png").write_bytes(card_b)
        (inbox / "b-page.png").write_bytes(_png(synthetic.text_page(seed=5, dpi=100), 100))
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 5, T, "the folder's page")
        wait_until(lambda: not (inbox / "a-card.png").exists(), T, "the card file deleted")
        wait_until(lambda: (inbox / "imported" / "b-page.png").exists(), T, "the page file set aside")
        assert agent.sign_in.operator() is None
        assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["b-page.png"]
        state_dir = config.state_dir
        stored = [p.read_bytes() for p in state_dir.rglob("*") if p.is_file()]

    cards = {hashlib.sha256(card_a).hexdigest(), hashlib.sha256(card_b).hexdigest()}
    assert not cards & set(receiver.files)  # no card image reached the fleet
    assert not cards & {hashlib.sha256(data).hexdigest() for data in stored}  # nor is one kept
    assert [p.name for p in inbox.rglob("*.png")] == ["b-page.png"]
    for token in (CARD_A, CARD_B):
        assert token not in caplog.text
        assert not any(token.encode() in payload for _, payload, _ in recorder.messages)
        assert not any(token.encode() in data for data in stored)
