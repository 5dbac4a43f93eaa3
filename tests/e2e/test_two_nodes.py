"""Two ``sohoa-fleet serve`` processes on one PostgreSQL database behave as one fleet: a session
opened on one works on the other, login failures count across both, a signed device request
replayed to the other node is refused, the ingest workers share the broker's messages (shared
subscription) and store each once, and every background job runs on exactly one node. Then that
node is killed with SIGKILL while its jobs run (alerts every 0.3 s, the operations driver every
second) and the other takes every job over within the lease's time, and does them.

Then each leased job separately is caught in the middle of a pass (waiting on a table the test
holds locked) and its node killed there: alert evaluation, the operations driver (commands,
rollouts, settings), telemetry retention and the CRL timer; the survivor takes that job over,
runs the same pass to the same point, and finishes the work once. The two nodes and the broker
are the module's; a killed node is started again when the next test needs it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select, text

from fleet.alerts.models import Alert
from fleet.api.services import JOBS
from fleet.auth.models import AuditEntry
from fleet.db import make_engine, session_factory
from fleet.leases import holders
from fleet.models import Device, TelemetrySample
from protocol.messages import AgentStarted, Status, encode, new_id
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


PKI_YAML = f"  crl_refresh_h: {2.0 / 3600}\n"
"""The CRL timer every 2 s, so that a publication is under way when a test wants one."""


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


@dataclass
class Cluster:
    """Two fleet nodes on one PostgreSQL database and one broker, shared by the module's tests:
    a test that kills a node leaves it dead; :meth:`alive` starts it again for the next."""

    a: FleetProcess
    b: FleetProcess
    engine: Engine
    broker: Mosquitto

    def alive(self) -> None:
        """Both nodes serving: those found dead (killed by an earlier test) are started, together.
        Started when needed, not right after a kill: the module's last kill costs no start."""
        dead = [node for node in (self.a, self.b) if node.proc is None or node.proc.poll() is not None]
        starting = [threading.Thread(target=node.start, daemon=True) for node in dead]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join(90)
        for node in (self.a, self.b):
            assert node.proc is not None and node.proc.poll() is None, node.logs()

    def name(self, node: FleetProcess) -> str:
        return "node-a" if node is self.a else "node-b"

    def holder_of(self, job: str) -> tuple[FleetProcess, FleetProcess]:
        """(the node holding ``job``'s lease, the other one)."""
        wait_until(lambda: job in _lease_holders(self.engine), 4 * TTL_S, f"a node holding {job}")
        held = _lease_holders(self.engine)
        return (self.a, self.b) if held[job] == "node-a" else (self.b, self.a)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("two-nodes")
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    db_url = fresh_postgres_database(postgres_url)
    shared = tmp / "shared"
    a = FleetProcess(tmp / "a", broker.port, db_url, group="ingest", shared_dir=shared, extra_yaml=_yaml("node-a"),
                     pki_yaml=PKI_YAML)
    b = FleetProcess(tmp / "b", broker.port, db_url, group="ingest", shared_dir=shared, extra_yaml=_yaml("node-b"),
                     pki_yaml=PKI_YAML)
    engine = make_engine(db_url)
    cluster = Cluster(a, b, engine, broker)
    try:
        # Started together: one migrates the database and creates the first admin, the other waits.
        cluster.alive()
        assert "Authorization" in a.http.headers and "Authorization" in b.http.headers
        yield cluster
    finally:
        a.close()
        b.close()
        engine.dispose()
        broker.stop()


def _lease_holders(engine: Engine) -> dict[str, str]:
    with session_factory(engine)() as session:
        return {name: holder for name, (holder, expires) in holders(session).items() if expires > time.time()}


def test_two_nodes_act_as_one_and_the_survivor_takes_every_job_over(tmp_path: Path, cluster: Cluster) -> None:
    a, b, engine, mosquitto = cluster.a, cluster.b, cluster.engine, cluster.broker
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


# --- each job killed in the middle of its pass ------------------------------------------------
#
# To catch a job in the middle of a pass, the test holds an exclusive lock on a table the pass
# reads part-way through, as a slow or busy database would: the holder's pass waits there with its
# transaction open (the lease keeper renews on its own connection, so the node keeps the lease).
# The holder is then killed with SIGKILL; the other node takes the lease, starts the same pass and
# waits at the same place; the lock is let go, and the survivor's pass does the work, once.


def _waiting_on(engine: Engine, table: str) -> set[int]:
    """Server processes waiting for a lock in a statement that names ``table``."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() "
            "AND query ILIKE :pattern"), {"pattern": f"%{table}%"})
        return {int(pid) for (pid,) in rows}


@contextmanager
def _table_held(engine: Engine, table: str) -> Iterator[Callable[[], None]]:
    """An ACCESS EXCLUSIVE lock on ``table``; yields the function that lets it go (also let go on exit)."""
    conn = engine.connect()
    transaction = conn.begin()
    conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))

    def let_go() -> None:
        if transaction.is_active:
            transaction.commit()

    try:
        yield let_go
    finally:
        let_go()
        conn.close()


def _kill_mid_pass(cluster: Cluster, job: str, table: str, during: Callable[[], None] | None = None) -> FleetProcess:
    """Kill the holder of ``job`` while its pass waits on ``table``; return the survivor once its own
    pass waits at the same place, then let the table go. ``during``: done while the holder waits
    (work that only the survivor can then do)."""
    cluster.alive()
    holder, other = cluster.holder_of(job)
    with _table_held(cluster.engine, table) as let_go:
        wait_until(lambda: bool(_waiting_on(cluster.engine, table)), 10, f"{job}'s pass to reach {table}")
        before = _waiting_on(cluster.engine, table)
        if during is not None:
            during()
        assert holder.proc is not None
        holder.proc.kill()
        holder.proc.wait()
        killed = time.monotonic()
        wait_until(lambda: _lease_holders(cluster.engine).get(job) == cluster.name(other), 4 * TTL_S,
                   f"the survivor taking {job} over")
        took = time.monotonic() - killed
        assert took <= 4 / 3 * TTL_S + 2, f"takeover of {job} took {took:.1f} s"
        wait_until(lambda: bool(_waiting_on(cluster.engine, table) - before), 10,
                   f"the survivor's {job} pass to reach {table}")
        let_go()
    return other


def _publish(cluster: Cluster, topic_name: str, payload: bytes, retain: bool = False) -> None:
    sender = Publisher(cluster.broker)
    try:
        sender.publish(topic_name, payload, retain=retain)
    finally:
        sender.close()


def _device(cluster: Cluster, device_id: str) -> None:
    """An enrolled device with an online status (each test its own device)."""
    cluster.alive()
    with session_factory(cluster.engine)() as session:
        if session.get(Device, device_id) is None:
            enroll_device(cluster.a.http, device_id, UNIT, cluster.a.workdir)
    _publish(cluster, f"sohoa/v1/{device_id}/status", encode(Status(device_id=device_id, state="online")), retain=True)

    def online() -> bool:
        with session_factory(cluster.engine)() as session:
            device = session.get(Device, device_id)
            return device is not None and device.status == "online"

    wait_until(online, 15, f"{device_id}'s status stored")


def _active_alerts(engine: Engine, kind: str, device_id: str) -> int:
    with session_factory(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(Alert).where(
            Alert.kind == kind, Alert.device_id == device_id, Alert.status != "resolved")) or 0)


def test_alert_evaluation_killed_mid_pass(cluster: Cluster) -> None:
    """The pass waits on ``pages`` (today's pages per device), after reading the open alerts, the
    devices and the faults. A device goes offline while it waits; the survivor's pass opens its
    alert, once."""
    _device(cluster, "kiosk-alerts")
    wait_until(lambda: _active_alerts(cluster.engine, "offline", "kiosk-alerts") == 0, 15, "the device online")
    offline = encode(Status(device_id="kiosk-alerts", state="offline"))
    survivor = _kill_mid_pass(cluster, "alerts", "pages",
                              during=lambda: _publish(cluster, "sohoa/v1/kiosk-alerts/status", offline, retain=True))
    wait_until(lambda: _active_alerts(cluster.engine, "offline", "kiosk-alerts") == 1, 15,
               "the survivor's pass to open the offline alert")
    assert survivor.proc is not None and survivor.proc.poll() is None
    assert _active_alerts(cluster.engine, "offline", "kiosk-alerts") == 1


def test_operations_driver_killed_mid_tick(cluster: Cluster) -> None:
    """The driver's tick waits on ``op_rollouts`` (stepping running rollouts), after expiring
    commands, in the same transaction. A command queued while it waits goes out once, from the
    survivor."""
    _device(cluster, "kiosk-ops")
    watch = CommandWatch(cluster.broker)
    queued: list[str] = []

    def queue() -> None:
        answer = cluster.a.http.post("/api/v1/devices/kiosk-ops/commands", json={"name": "restart_agent"})
        assert answer.status_code == 201, answer.text
        queued.append(answer.json()["id"])

    try:
        _kill_mid_pass(cluster, "operations", "op_rollouts", during=queue)
        assert watch.wait(queued[0], 15), "the survivor's driver did not publish the command"
        assert watch.seen.count(queued[0]) == 1
    finally:
        watch.close()


def test_retention_killed_mid_pass(cluster: Cluster) -> None:
    """The pass waits on ``telemetry`` (its first device's deletes), after listing the devices.
    Reports older than ``telemetry_keep_days`` (400) are dropped by the survivor's pass."""
    _device(cluster, "kiosk-retention")
    old = datetime.now(UTC) - timedelta(days=500)
    ids = [new_id() for _ in range(3)]
    with session_factory(cluster.engine).begin() as session:
        session.add_all(TelemetrySample(id=i, device_id="kiosk-retention", ts=old + timedelta(minutes=n), data={})
                        for n, i in enumerate(ids))

    def left() -> int:
        with session_factory(cluster.engine)() as session:
            return int(session.scalar(select(func.count()).select_from(TelemetrySample)
                                      .where(TelemetrySample.id.in_(ids))) or 0)

    _kill_mid_pass(cluster, "retention", "telemetry")
    wait_until(lambda: left() == 0, 15, "the survivor's pass to drop the old reports")


def test_crl_refresh_killed_mid_publish(cluster: Cluster) -> None:
    """The timer's publication (every ``crl_refresh_h``, 2 s here) waits on ``certificates`` (the
    revoked ones), before the CRL is signed, written and audited. The survivor publishes it on
    taking over (audited ``why=takeover``)."""

    def takeovers() -> int:
        with session_factory(cluster.engine)() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "crl.published", AuditEntry.detail.contains("why=takeover"))) or 0)

    cluster.alive()
    before = takeovers()
    _kill_mid_pass(cluster, "crl_refresh", "certificates")
    wait_until(lambda: takeovers() == before + 1, 15, "the survivor to publish the CRL on taking over")


def test_the_nodes_stop_cleanly(cluster: Cluster) -> None:
    """After all the kills, SIGTERM still stops each live node cleanly (exit status 0)."""
    for node in (cluster.a, cluster.b):
        if node.proc is not None and node.proc.poll() is None:
            assert node.stop() == 0, node.logs()
