"""The agent in this process (its threads, real mosquitto, a real HTTP file endpoint): folder
ingest end to end, the fake scanner driven mid-batch, busy refusals, and a clean close."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from PIL import Image

from device.agent import Agent
from device.capture.base import ScanRequest
from device.capture.fake import FakeSource
from device.config import AgentConfig
from tests.device.agent_harness import FileReceiver, Recorder, agent_config, wait_until
from tests.services import Mosquitto

DEVICE = "kiosk-test"


def test_folder_ingest_reaches_the_fleet_byte_for_byte(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, receiver: FileReceiver
) -> None:
    """Two archive images (a JPEG and a PNG) dropped in the watched folder become one folder
    batch: two ``page_captured`` events with ``source=folder`` and files at the endpoint that
    are the original bytes; the originals move to ``imported/``; the outbox drains."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    originals = {}
    for name, fmt in (("old-1.jpg", "JPEG"), ("old-2.png", "PNG")):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 90), (10, 120, 200)).save(buffer, fmt)
        originals[name] = buffer.getvalue()
        (inbox / name).write_bytes(originals[name])
        old = time.time() - 60
        os.utime(inbox / name, (old, old))
    config = AgentConfig.model_validate(agent_config(
        tmp_path, mosquitto.port, scanner=None, fleet_url=receiver.url,
        folder={"path": str(inbox), "interval_s": 0.2, "settle_s": 1}))
    with Agent(config):
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 2, 30, "two folder pages")
        pages = [e.page for e in recorder.events("page_captured")]
        assert {p.source for p in pages} == {"folder"}
        assert {p.content_type for p in pages} == {"image/jpeg", "image/png"}
        wait_until(lambda: len(receiver.files) == 2, 30, "two uploads")
        assert sorted(receiver.files.values()) == sorted(originals.values())
        assert {hashlib.sha256(b).hexdigest() for b in originals.values()} == {p.sha256 for p in pages}
        assert sorted(p.name for p in (inbox / "imported").iterdir()) == sorted(originals)


def test_fake_scanner_busy_and_stop_mid_batch(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """A batch held before its third page: a second request is refused ``busy`` with a
    ``scan_refused`` event; closing the agent ends the batch after the current page, the batch
    is reported ``interrupted`` with the pages it stored, and the events reach the broker before
    the agent says offline."""
    source = FakeSource(pages=50)
    source.hold_before = 3
    config = AgentConfig.model_validate(agent_config(tmp_path, mosquitto.port, scanner={"type": "fake"}))
    agent = Agent(config, source=source).start()
    try:
        job = agent.request_scan(ScanRequest())
        assert source.held.wait(20), "the batch should reach page 3"
        second = agent.request_scan(ScanRequest())
        assert second.outcome == "refused" and second.detail == "busy"
        recorder.wait_for(lambda r: len(r.events("scan_refused")) == 1, 20, "scan_refused")
        assert recorder.events("scan_refused")[0].reason == "busy"
    finally:
        agent.close()
    assert job.done.is_set() and job.pages == 2
    assert source.history[-3:] == ["held before 3", "stopped", "closed"]
    recorder.wait_for(lambda r: len(r.events("batch_finished")) == 1, 10, "batch_finished")
    finished = recorder.events("batch_finished")[0]
    assert finished.pages == job.pages and finished.outcome == "interrupted"
    assert len(recorder.events("page_captured")) == job.pages


def test_timed_scans_for_the_demo(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """``scan_at_start`` scans one batch at once and ``scan_every_s`` keeps scanning; timed
    requests that find the scanner busy are dropped silently (no ``scan_refused`` spam)."""
    config = AgentConfig.model_validate(agent_config(
        tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 2},
        triggers={"scan_at_start": True, "scan_every_s": 0.3}))
    with Agent(config):
        recorder.wait_for(lambda r: len(r.events("batch_finished")) >= 3, 20, "three timed batches")
    assert all(e.outcome == "complete" and e.pages == 2 for e in recorder.events("batch_finished"))
    assert recorder.events("scan_refused") == []
