"""The agent as a real process against a real mosquitto and the real SANE ``test`` backend:
an ADF batch reaches the broker and the file endpoint; a broker outage in the middle of a batch
and a ``kill -9`` lose nothing; SIGTERM stops it cleanly."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

from protocol.messages import Stored, decode, encode
from tests.device.agent_harness import AgentProcess, FileReceiver, Recorder, agent_config, sane_conf, wait_until
from tests.services import Mosquitto

DEVICE = "kiosk-test"


def _batch_events(rec: Recorder, batch_id: str) -> tuple[list[object], list[object], list[object]]:
    started = [e for e in rec.events("batch_started") if e.batch_id == batch_id]
    pages = [e for e in rec.events("page_captured") if e.page.batch_id == batch_id]
    finished = [e for e in rec.events("batch_finished") if e.batch_id == batch_id]
    return started, pages, finished


def test_adf_batch_of_ten_reaches_broker_and_fleet(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """A 10-sheet feeder batch: 10 page events (sequences 1..10, unique ids), files uploaded
    byte-identical (the receiver refuses a body whose sha256 differs), the outbox drains to
    nothing, a retained ``online`` status, telemetry with the outbox depth, and ``offline`` after
    SIGTERM with exit code 0."""
    config = agent_config(tmp_path, mosquitto.port, fleet_url=receiver.url, telemetry={"interval_s": 1})
    agent = AgentProcess(config, tmp_path, sane_dir)
    try:
        agent.start()
        result = agent.scan(source="adf")
        assert result["outcome"] == "complete", agent.logs()
        assert result["pages"] == 10
        batch = result["batch_id"]
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[2]) == 1 and len(_batch_events(r, batch)[1]) == 10,
                          30, "the batch's events")
        started, pages, finished = _batch_events(recorder, batch)
        assert len(started) == 1
        assert sorted(p.page.sequence for p in pages) == list(range(1, 11))  # type: ignore[attr-defined]
        assert len({p.page.page_id for p in pages}) == 10  # type: ignore[attr-defined]
        assert finished[0].pages == 10 and finished[0].outcome == "complete"  # type: ignore[attr-defined]
        for event in pages:
            page = event.page  # type: ignore[attr-defined]
            assert page.content_type == "image/png" and page.dpi == 75 and page.source == "scanner"
            assert (page.width, page.height) == (590, 590)  # A4 clamped to the backend's 200 mm
        wait_until(lambda: {p.page.sha256 for p in pages} <= set(receiver.files), 30, "the files")  # type: ignore[attr-defined]
        for event in pages:
            body = receiver.files[event.page.sha256]  # type: ignore[attr-defined]
            assert hashlib.sha256(body).hexdigest() == event.page.sha256  # type: ignore[attr-defined]
            assert len(body) == event.page.size  # type: ignore[attr-defined]
            assert body.startswith(b"\x89PNG")
        assert receiver.bad == 0
        wait_until(lambda: agent.status()["outbox"] == {"events": 0, "files": 0, "bytes": 0}, 30, "an empty outbox")
        assert not list((agent.state / "files").iterdir())
        statuses = [decode(t, p).message for t, p, _ in recorder.messages if t.endswith("/status")]
        assert statuses[0].state == "online" and statuses[0].unit == "000.00.00.H01"  # type: ignore[attr-defined]
        after = finished[0].ts  # type: ignore[attr-defined]
        recorder.wait_for(lambda r: any(t.ts > after and t.outbox.files == 0 for t in r.decoded("telemetry")), 10,
                          "telemetry after the batch")
        report = [t for t in recorder.decoded("telemetry") if t.ts > after and t.outbox.files == 0][-1]
        assert report.scanner.model == "Noname frontend-tester" and report.scanner.state == "ready"
        assert report.disk_total_bytes > 0 and report.agent_version
        assert agent.terminate() == 0
        recorder.wait_for(lambda r: any(t.endswith("/status") and b'"offline"' in p for t, p, _ in r.messages), 10,
                          "the offline status")
        assert "agent stopped" in agent.logs()
    finally:
        agent.close()


def _pending_ids(state: Path) -> set[str]:
    db = sqlite3.connect(state / "outbox.db")
    try:
        return {row[0] for row in db.execute("SELECT id FROM messages")}
    finally:
        db.close()


def test_broker_outage_in_the_middle_of_a_batch(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder
) -> None:
    """The broker is stopped for 5 s after the second page of a slow feeder batch: every event
    of the batch still arrives (ids unique, so exactly once after deduplication), and the
    outbox drains."""
    sane_conf(sane_dir, read_delay="true", read_delay_duration="60000")  # ~1 s a page: a 10 s batch
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port), tmp_path, sane_dir)
    try:
        agent.start()
        result = agent.scan(wait=False, source="adf")
        assert result["http_status"] == 202
        batch = result["batch_id"]
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[1]) >= 2, 30, "two pages")
        mosquitto.stop()
        time.sleep(5)  # the outage itself: the stimulus, not a wait for something
        assert agent.status()["busy"], "the batch should still be running during the outage"
        mosquitto.start()
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[2]) == 1, 60, "the end of the batch")
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[1]) == 10, 30, "all ten pages")
        started, pages, finished = _batch_events(recorder, batch)
        assert len(started) == 1 and finished[0].outcome == "complete"  # type: ignore[attr-defined]
        assert sorted(p.page.sequence for p in pages) == list(range(1, 11))  # type: ignore[attr-defined]
        wait_until(lambda: agent.status()["outbox"]["events"] == 0, 30, "the outbox to drain")
    finally:
        agent.close()


def test_kill9_mid_batch_during_outage_then_restart(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """During a broker outage the agent is ``kill -9``ed in the middle of a feeder batch. After
    a restart every message it had stored arrives, the batch is closed as ``interrupted`` with
    the number of pages it stored, each page event arrives (exactly once after dedup), and every
    page file reaches the file endpoint byte-identical."""
    sane_conf(sane_dir, read_delay="true", read_delay_duration="40000")
    config = agent_config(tmp_path, mosquitto.port, fleet_url=receiver.url)
    agent = AgentProcess(config, tmp_path, sane_dir)
    try:
        agent.start()
        result = agent.scan(wait=False, source="adf")
        batch = result["batch_id"]
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[1]) >= 1, 30, "the first page")
        mosquitto.stop()
        wait_until(lambda: agent.status()["outbox"]["events"] >= 3, 30, "pages stored during the outage")
        agent.kill9()
        stored = _pending_ids(agent.state)
        assert stored, "the outbox should hold the pages captured during the outage"
        mosquitto.start()
        sane_conf(sane_dir)
        agent.start()
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[2]) == 1, 60, "the interrupted batch's end")
        recorder.wait_for(lambda r: stored <= {e.id for e in r.events()}, 60, "every stored message")
        started, pages, finished = _batch_events(recorder, batch)
        assert len(started) == 1
        assert finished[0].outcome == "interrupted"  # type: ignore[attr-defined]
        assert finished[0].pages == len(pages) >= 3  # type: ignore[attr-defined]
        assert sorted(p.page.sequence for p in pages) == list(range(1, len(pages) + 1))  # type: ignore[attr-defined]
        recorder.wait_for(lambda r: len(r.events("agent_started")) == 2, 30, "the restarted agent's hello")
        wait_until(lambda: {p.page.sha256 for p in pages} <= set(receiver.files), 30, "the files")  # type: ignore[attr-defined]
        wait_until(lambda: agent.status()["outbox"] == {"events": 0, "files": 0, "bytes": 0}, 30, "an empty outbox")
        # The restarted agent keeps serving.
        assert agent.scan(source="adf", max_pages=2)["pages"] == 2
    finally:
        agent.close()


def test_command_sent_while_offline_runs_after_restart(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """The persistent session: a ``test_scan`` command published (QoS 1) while the agent is
    stopped waits at the broker and runs once when the agent is back, acknowledged
    ``in_progress`` then ``succeeded``."""
    from datetime import UTC, datetime, timedelta

    from protocol.messages import Command, encode

    config = agent_config(tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 2})
    agent = AgentProcess(config, tmp_path)
    try:
        agent.start()
        wait_until(lambda: agent.status()["connected"], 10, "the agent to connect")
        assert agent.terminate() == 0
        command = Command(device_id=DEVICE, name="test_scan", deadline=datetime.now(UTC) + timedelta(minutes=5))
        recorder.publish(f"sohoa/v1/{DEVICE}/cmd", encode(command))
        agent.start()
        recorder.wait_for(lambda r: any(a.command_id == command.id and a.state == "succeeded"
                                        for a in r.decoded("cmd/ack")), 30, "the queued command to run")
        assert [b["pages"] for b in agent.status()["batches"]] == [2]
    finally:
        agent.close()


def test_last_will_marks_a_killed_agent_offline(tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """``kill -9`` gives the agent no chance to say goodbye: the broker publishes its Last Will,
    a retained ``offline`` status, which a subscriber arriving later still sees."""
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port, scanner=None), tmp_path)
    try:
        agent.start()
        wait_until(lambda: agent.status()["connected"], 10, "the agent to connect")
        agent.kill9()
        recorder.wait_for(lambda r: any(s.state == "offline" for s in r.decoded("status")), 15, "the Last Will")
        late = Recorder(mosquitto.port, DEVICE, client_id="late-subscriber")
        try:
            late.wait_for(lambda r: any(retained for t, _, retained in r.messages if t.endswith("/status")), 10,
                          "the retained status")
            retained = [decode(t, p).message for t, p, keep in late.messages if t.endswith("/status") and keep]
            assert retained[-1].state == "offline"  # type: ignore[attr-defined]
        finally:
            late.close()
    finally:
        agent.close()


def test_the_agent_keeps_events_until_the_fleet_confirms_them(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder
) -> None:
    """Once the fleet has confirmed one message on ``stored``, the agent keeps every event the
    broker took until the fleet names it there (and sends it again meanwhile); a confirmation
    naming them empties the outbox."""
    config = agent_config(tmp_path, mosquitto.port)
    config["broker"] |= {"stored_timeout_s": 1.0, "stored_timeout_max_s": 2.0}
    agent = AgentProcess(config, tmp_path, sane_dir)

    def confirm(ids: list[str]) -> None:
        recorder.publish(f"sohoa/v1/{DEVICE}/stored", encode(Stored(device_id=DEVICE, ids=ids)))

    try:
        agent.start()
        recorder.wait_for(lambda r: bool(r.events("agent_started")), 30, "agent_started")
        confirm([e.id for e in recorder.events("agent_started")])
        wait_until(lambda: agent.status()["outbox"]["events"] == 0, 30, "the first confirmation")
        result = agent.scan(source="adf", max_pages=2)
        assert result["pages"] == 2, agent.logs()
        batch = result["batch_id"]
        recorder.wait_for(lambda r: len(_batch_events(r, batch)[2]) == 1 and len(_batch_events(r, batch)[1]) == 2,
                          30, "the batch's events")
        ids = {e.id for kind in _batch_events(recorder, batch) for e in kind}  # type: ignore[attr-defined]
        recorder.wait_for(lambda r: sum(e.id in ids for e in r.decoded("event")) > len(ids), 30, "a send again")
        assert agent.status()["outbox"]["events"] >= len(ids), "the broker's PUBACK no longer suffices"
        confirm(sorted(ids))
        wait_until(lambda: agent.status()["outbox"]["events"] == 0, 30, "the outbox to empty on confirmation")
    finally:
        agent.close()
