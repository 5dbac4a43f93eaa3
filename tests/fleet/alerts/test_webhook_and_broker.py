"""Alerts leaving the fleet and arriving from devices over the real wire: the webhook (a real
loopback HTTP server started here) receives openings and resolutions, retried after a failure,
without holding up the evaluator; a scanner jam published to the real mosquitto and written by
the fleet's real ingest opens an alert, and the next ready telemetry clears it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.alerts.models import Alert
from fleet.api.app import create_app
from fleet.models import Event, TelemetrySample
from protocol.messages import encode
from protocol.topics import Channel, topic
from tests.fleet.alerts.conftest import T0, Clock, alerts_config, evaluator_of, offline, online, send
from tests.fleet.conftest import Publisher, state_of, wait_for
from tests.fleet.messages import fault, telemetry


@dataclass
class Receiver:
    """What the webhook server saw. It answers 500 to the first ``fail_first`` requests, and
    holds each answer until ``release`` is set."""

    fail_first: int = 0
    attempts: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def wait(self, count: int, timeout: float = 20.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= count, timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    seen = Receiver(fail_first=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.release.wait(20)
            with seen.changed:
                seen.attempts += 1
                failing = seen.attempts <= seen.fail_first
                if not failing:
                    seen.received.append(json.loads(body))
                seen.changed.notify_all()
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/sohoa"
    try:
        yield seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()


def test_webhook_receives_alerts_with_retry_without_blocking(tmp_path: Path, receiver: Receiver) -> None:
    """Bad input tried: the receiver answers 500 the first time (retried with backoff) and holds
    its answers (the evaluation returns anyway: nobody waits for the webhook)."""
    clock = Clock()
    config = alerts_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db", webhook_url=receiver.url,
                           webhook_backoff_s=0.05, webhook_retries=3)
    with TestClient(create_app(config, clock=clock)) as client:
        send(client, online("kiosk-w", T0), T0)
        send(client, offline("kiosk-w", T0), T0)
        clock.advance(hours=1)
        transitions = evaluator_of(client).run_once()  # returns while the receiver holds its answer
        assert [t["event"] for t in transitions] == ["opened"]
        assert receiver.received == []
        receiver.release.set()
        assert receiver.wait(1), "the webhook did not receive the alert"
        assert receiver.attempts == 2  # one 500, one retry
        opened = receiver.received[0]
        assert opened["event"] == "opened" and opened["alert"]["kind"] == "offline"
        assert opened["alert"]["device_id"] == "kiosk-w" and opened["alert"]["status"] == "open"

        back = clock.advance(minutes=1)
        send(client, online("kiosk-w", back), back)
        evaluator_of(client).run_once()
        assert receiver.wait(2)
        assert receiver.received[1]["event"] == "resolved"
        assert receiver.received[1]["alert"]["id"] == opened["alert"]["id"]


def test_jam_through_mosquitto_and_ingest(client: TestClient, publisher: Publisher) -> None:
    """A device publishes a jam (QoS 1) to the real broker; the fleet's ingest writes it and the
    evaluator opens one alert; a ready telemetry clears it. Bad input tried: the jam published
    twice (at-least-once delivery: still one alert)."""
    state = state_of(client)
    publisher.publish(topic("kiosk-m", Channel.TELEMETRY), encode(telemetry("kiosk-m")))
    jammed = fault("kiosk-m")
    publisher.publish(topic("kiosk-m", Channel.EVENT), encode(jammed))
    publisher.publish(topic("kiosk-m", Channel.EVENT), encode(jammed))

    def stored(event_id: str) -> bool:
        with state.sessions() as session:
            return session.get(Event, event_id) is not None

    wait_for(client, lambda: stored(jammed.id))
    opened = client.post("/api/v1/alerts/evaluate").json()
    assert [(t["event"], t["alert"]["kind"]) for t in opened] == [("opened", "scanner_jammed")]
    assert client.post("/api/v1/alerts/evaluate").json() == []

    ready = telemetry("kiosk-m")
    publisher.publish(topic("kiosk-m", Channel.TELEMETRY), encode(ready))

    def reported() -> bool:
        with state.sessions() as session:
            return session.get(TelemetrySample, ready.id) is not None

    wait_for(client, reported)
    resolved = client.post("/api/v1/alerts/evaluate").json()
    assert [(t["event"], t["alert"]["kind"]) for t in resolved] == [("resolved", "scanner_jammed")]
    with state.sessions() as session:
        assert [a.status for a in session.scalars(select(Alert))] == ["resolved"]
