"""Two ``sohoa-fleet serve`` processes on one PostgreSQL database behave as one fleet: a session
opened on one works on the other, login failures count across both, a signed device request
replayed to the other node is refused, the ingest workers share the broker's messages (shared
subscription) and store each once, and every background job runs on exactly one node. Then that
node is killed with SIGKILL while its jobs run (alerts every 0.3 s, the operations driver every
second) and the other takes every job over within the lease's time, and does them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from fleet.api.services import JOBS
from fleet.db import make_engine, session_factory
from fleet.leases import holders
from protocol.messages import AgentStarted, Status, encode
from tests.device.agent_harness import wait_until
from tests.devices import enroll_device
from tests.e2e.fleet_harness import FleetProcess, fresh_postgres_database
from tests.fleet.conftest import Publisher
from tests.services import Mosquitto

pytestmark = pytest.mark.postgres

TTL_S = 3.0
UNIT = "000.00.00.H01"


def _yaml(node: str) -> str:
    return (f"cluster:\n  node_id: {node}\n  lease_ttl_s: {TTL_S}\n"
            "alerts:\n  interval_s: 0.3\n  offline_after_s: 0\n"
            "retention:\n  interval_s: 1\n")


class CommandWatch:
    """Counts what the fleet publishes on the devices' command topics."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: list[str] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="command-watch", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("sohoa/v1/+/cmd", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.seen.append(json.loads(msg.payload)["id"])
            self.cond.notify_all()

    def wait(self, command_id: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: command_id in self.seen, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def nodes(tmp_path: Path, mosquitto: Mosquitto,
          postgres_url: str) -> Iterator[tuple[FleetProcess, FleetProcess, Engine]]:
    db_url = fresh_postgres_database(postgres_url)
    shared = tmp_path / "shared"
    a = FleetProcess(tmp_path / "a", mosquitto.port, db_url, group="ingest", shared_dir=shared,
                     extra_yaml=_yaml("node-a"))
    b = FleetProcess(tmp_path / "b", mosquitto.port, db_url, group="ingest", shared_dir=shared,
                     extra_yaml=_yaml("node-b"))
    engine = make_engine(db_url)
    try:
        # Started together: one migrates the database and creates the first admin, the other waits.
        b_started = threading.Thread(target=b.start)
        b_started.start()
        a.start()
        b_started.join(60)
        assert b.proc is not None and b.proc.poll() is None and "Authorization" in b.http.headers, b.logs()
        yield a, b, engine
    finally:
        a.close()
        b.close()
        engine.dispose()


def _lease_holders(engine: Engine) -> dict[str, str]:
    with session_factory(engine)() as session:
        return {name: holder for name, (holder, expires) in holders(session).items() if expires > time.time()}


def test_two_nodes_act_as_one_and_the_survivor_takes_every_job_over(
        tmp_path: Path, mosquitto: Mosquitto, nodes: tuple[FleetProcess, FleetProcess, Engine]) -> None:
    a, b, engine = nodes
    # One session, seen by both.
    b.http.headers["Authorization"] = a.http.headers["Authorization"]
    assert b.get("/api/v1/auth/me")["name"] == "admin"
    # Login failures count across nodes: five wrong passwords split over both, then even the right
    # one is refused on either.
    for node in (a, a, a, b, b):
        assert node.http.post("/api/v1/auth/login", json={"name": "admin", "password": "wrong"}).status_code == 401
    password = a.admin_file.read_text().strip()
    assert b.http.post("/api/v1/auth/login", json={"name": "admin", "password": password}).status_code == 429
    # A signed device request replayed to the other node is refused.
    device = enroll_device(a.http, "kiosk-two", UNIT, tmp_path)
    data = b"\x89PNG\r\n\x1a\n" + b"replayed page" * 10
    sha = hashlib.sha256(data).hexdigest()
    request = a.http.build_request("PUT", f"/api/v1/files/{sha}", content=data, headers={"Content-Type": "image/png"})
    signed = next(device.auth(sha).auth_flow(request))
    assert a.http.send(signed).status_code != 401
    with httpx.Client(base_url=b.url, verify=str(b.ca_file), timeout=10) as plain:
        replay = plain.put(f"/api/v1/files/{sha}", content=data, headers=dict(signed.headers))
    assert replay.status_code == 401 and replay.json()["detail"] == "replayed", replay.text
    # The ingest workers share the messages, each stored once.
    sender = Publisher(mosquitto)
    sent = []
    try:
        for _ in range(40):
            event = AgentStarted(device_id="kiosk-two", agent_version="0.1.0")
            sender.publish("sohoa/v1/kiosk-two/event", encode(event))
            sent.append(event.id)
    finally:
        sender.close()
    wait_until(lambda: {e["id"] for e in a.events("kiosk-two", "agent_started")} == set(sent), 30, "events stored")
    assert len(b.events("kiosk-two", "agent_started")) == 40
    shares = [node.metric("sohoa_fleet_messages_ingested_total", channel="event") for node in (a, b)]
    assert sum(shares) >= 40 and min(shares) > 0, f"one worker took everything: {shares}"
    # Every job on exactly one node: whichever took the leases first.
    held = _lease_holders(engine)
    assert set(held) == set(JOBS) and len(set(held.values())) == 1, held
    first, second = (a, b) if held[JOBS[0]] == "node-a" else (b, a)
    second_name = "node-b" if second is b else "node-a"
    watch = CommandWatch(mosquitto)
    try:
        queued = second.http.post("/api/v1/devices/kiosk-two/commands", json={"name": "restart_agent"})
        assert queued.status_code == 201, queued.text
        assert watch.wait(queued.json()["id"], 15), "the operations driver did not publish the command"
        # Killed in the middle of its jobs: the other node has them within the lease's time...
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait()
        killed = time.monotonic()
        wait_until(lambda: _lease_holders(engine) == dict.fromkeys(JOBS, second_name), 4 * TTL_S,
                   "the survivor takes every job")
        took = time.monotonic() - killed
        # ... and does them: operations (a new command goes out once), alerts (an offline device is
        # raised), the CRL (published at once on takeover), retention (its passes run there).
        queued = second.http.post("/api/v1/devices/kiosk-two/commands", json={"name": "restart_agent"})
        assert watch.wait(queued.json()["id"], 15), "the survivor's operations driver did not publish"
        assert watch.seen.count(queued.json()["id"]) == 1
    finally:
        watch.close()
    sender = Publisher(mosquitto)
    try:
        sender.publish("sohoa/v1/kiosk-two/status", encode(Status(device_id="kiosk-two", state="offline")), retain=True)
    finally:
        sender.close()
    wait_until(lambda: any(alert["kind"] == "offline" for alert in second.get("/api/v1/alerts")), 15,
               "the survivor raises alerts")
    wait_until(lambda: "why=takeover" in json.dumps(second.get("/api/v1/audit", action="crl.published")), 15,
               "the survivor publishes the CRL")
    gained = f"node {second_name} now runs retention"
    wait_until(lambda: gained in second.logs() and "telemetry retention:" in second.logs().split(gained, 1)[1], 15,
               "the survivor runs retention passes")
    assert took <= 4 / 3 * TTL_S + 2, f"takeover took {took:.1f} s"
    assert second.stop() == 0
