"""Virtual kiosks against the real broker and fleet: how many fit on this machine, and what a
broker restart costs.

Everything is the real thing but the scanner: mosquitto with the TLS configuration
``python -m provisioning init`` writes, ``sohoa-fleet serve`` over HTTPS with its CA, each kiosk
enrolled through ``POST /api/v1/enroll`` (its own key and CSR; one token for the batch, as an
installer would use), then speaking mutual TLS with the agent's own delivery code: an outbox
(SQLite) per kiosk, its publisher and its MQTT link (status retained with a Last Will, a
persistent session, end-to-end acknowledgement). Each kiosk also publishes telemetry every
(simulated) minute, answers commands on ``cmd/ack``, and makes page events in office-hour bursts
(Vietnam's 7:30-11:30 and 13:30-17:00; a dossier is a burst of pages a few seconds apart) on a
clock that runs ``--speed`` times faster than the wall's.

    nice -n 19 python -m benchmarks.simulate --kiosks 200 --seconds 120 --speed 60
    nice -n 19 python -m benchmarks.simulate --kiosks 200 --seconds 60 --kill-broker-at 30

Prints the machine, the load average, enrollment rate, connection time, events made and stored,
ingest lag (the fleet's histogram), CPU seconds of broker and fleet, and, with
``--kill-broker-at``, how long until every kiosk is back online and every event stored.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from benchmarks.harness import machine
from device.config import BrokerConfig
from device.delivery.link import MqttLink
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from fleet.db import make_engine
from fleet.models import Event
from protocol.messages import (
    CameraInfo,
    Command,
    CommandAck,
    OutboxDepth,
    Page,
    PageCaptured,
    ScannerInfo,
    Telemetry,
    decode,
    encode,
    new_id,
)
from protocol.topics import Channel, topic
from provisioning.identity import DeviceIdentity
from tests.devices import enroll_request, issue_token
from tests.e2e.fleet_harness import FleetProcess
from tests.services import provisioned_mosquitto, wait_port

UNIT = "000.00.00.H13"
ICT = timedelta(hours=7)
OFFICE_HOURS = ((7.5, 11.5), (13.5, 17.0))
DOSSIERS_PER_HOUR = 4.0
"""Per kiosk in office hours: a dossier every 15 minutes."""
PAGES_PER_DOSSIER = (2, 12)


def in_office_hours(moment: datetime) -> bool:
    """>>> in_office_hours(datetime(2026, 12, 7, 2, 0, tzinfo=UTC))  # 09:00 in Vietnam
    True
    """
    local = moment + ICT
    hour = local.hour + local.minute / 60
    return local.weekday() < 5 and any(start <= hour < end for start, end in OFFICE_HOURS)


@dataclass
class Clock:
    """Simulated time: starts at ``start`` and runs ``speed`` times faster than the wall's."""

    start: datetime
    speed: float
    wall0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.wall0) * self.speed)


class Kiosk:
    """One virtual kiosk: the agent's outbox, publisher and MQTT link over mutual TLS."""

    def __init__(self, identity: DeviceIdentity, state: Path, clock: Clock) -> None:
        self.id = identity.device_id
        self.clock = clock
        self.outbox = Outbox(state)
        config = BrokerConfig(reconnect_min_s=1, reconnect_max_s=30, stored_timeout_s=60, keepalive_s=60)
        self.publisher = Publisher(self.outbox, self.id, window=config.max_inflight,
                                   stored_timeout_s=config.stored_timeout_s)
        self.link = MqttLink(self.id, config, "0.1.0", on_message=self._on_message, unit=UNIT,
                             on_connect=self.publisher.on_connect, on_published=self.publisher.on_published,
                             identity=identity)
        self.publisher.link = self.link
        self.made = 0
        self.acks = 0
        self._thread = threading.Thread(target=self.publisher.run, name=f"publisher-{self.id}", daemon=True)
        self._next_telemetry = 0.0
        self._next_dossier = clock.now() + timedelta(seconds=random.expovariate(DOSSIERS_PER_HOUR / 3600))
        self._pages_left = 0
        self._next_page = clock.now()

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        if topic_name.endswith("/stored"):
            self.publisher.on_stored(topic_name, payload)
            return
        message = decode(topic_name, payload).message
        if isinstance(message, Command):
            self.acks += 1
            self.publisher.emit(CommandAck(device_id=self.id, command_id=message.id, state="succeeded"),
                                Channel.CMD_ACK)

    def start(self) -> None:
        self.link.start()
        self._thread.start()

    def stop(self) -> None:
        self.publisher.stop()
        self._thread.join(5)
        self.link.close(timeout=1.0)
        self.outbox.close()

    def tick(self, wall: float) -> None:
        """Called about once a second by the driver: telemetry, dossiers, pages."""
        now = self.clock.now()
        if wall >= self._next_telemetry and self.link.connected.is_set():
            self._next_telemetry = wall + 60 / self.clock.speed
            report = Telemetry(device_id=self.id, agent_version="0.1.0", uptime_s=wall, cpu_percent=3.0,
                               memory_percent=20.0, disk_free_bytes=10**10, disk_total_bytes=3 * 10**10,
                               scanner=ScannerInfo(state="ready"), camera=CameraInfo(state="ready"),
                               outbox=OutboxDepth(**self.outbox.depth().model_dump()))
            self.link.publish(topic(self.id, Channel.TELEMETRY), encode(report), qos=0)
        if self._pages_left == 0 and now >= self._next_dossier:
            self._next_dossier = now + timedelta(seconds=random.expovariate(DOSSIERS_PER_HOUR / 3600))
            if in_office_hours(now):
                self._pages_left = random.randint(*PAGES_PER_DOSSIER)
                self._dossier = f"{UNIT}-{now:%y%m%d}-{random.randint(0, 9999):04d}"
                self._sequence = 0
        while self._pages_left and now >= self._next_page:
            self._pages_left -= 1
            self._sequence += 1
            self._next_page = now + timedelta(seconds=random.uniform(2, 6))
            page = Page(page_id=new_id(), sha256=os.urandom(32).hex(), size=300_000, content_type="image/jpeg",
                        width=2480, height=3508, dpi=300, source="scanner", batch_id=self._dossier,
                        sequence=self._sequence, dossier_code=self._dossier, captured_at=now)
            self.publisher.emit(PageCaptured(device_id=self.id, page=page))
            self.made += 1


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _histogram_quantile(text: str, name: str, q: float) -> float | None:
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        buckets = sorted((float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket"))
        total = buckets[-1][1] if buckets else 0
        if not total:
            return None
        for bound, count in buckets:
            if count >= q * total:
                return bound
    return None


def _stored(fleet: FleetProcess) -> int:
    """Page events in the fleet's database (each stored once, whatever the re-sends)."""
    engine = make_engine(fleet.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Event).where(Event.type == "page_captured")) or 0)
    finally:
        engine.dispose()


def _wait(predicate: object, timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.5)
    return time.monotonic() - start


def _after_kill(kiosks: list[Kiosk], fleet: FleetProcess, killed_at: float, made_before: int) -> None:
    """Report when every kiosk is back and when every event made before the kill is stored."""
    if _wait(lambda: all(k.link.connected.is_set() for k in kiosks), 300) is not None:
        print(f"  after the kill: every kiosk online again {time.monotonic() - killed_at:.1f} s after it")
    if _wait(lambda: _stored(fleet) >= made_before, 300) is not None:
        print(f"  after the kill: every event made before it stored {time.monotonic() - killed_at:.1f} s after it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kiosks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120, help="wall-clock length of the steady phase")
    parser.add_argument("--speed", type=float, default=60, help="simulated seconds per wall second")
    parser.add_argument("--start", default="2026-12-07T09:00", help="simulated start, Vietnam time")
    parser.add_argument("--kill-broker-at", type=float, default=None, help="kill -9 the broker after this many s")
    parser.add_argument("--enroll-threads", type=int, default=4)
    parser.add_argument("--connect-timeout", type=float, default=600, help="longest wait for every kiosk online")
    args = parser.parse_args(argv)
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) - ICT
    with tempfile.TemporaryDirectory(prefix="sohoa-sim-") as tmp_dir:
        tmp = Path(tmp_dir)
        with provisioned_mosquitto(tmp, "fleet.ingest", "fleet.ops") as (pki, broker, pid_file):
            # The batch enrolls from one address: lift the per-address enrollment limit (the line
            # continues the harness's `enrollment:` section).
            fleet = FleetProcess(tmp / "fleet", broker.port, pki=pki, broker_pid_file=pid_file,
                                 extra_yaml="  rate_per_minute: 10000\n")
            try:
                fleet.start(timeout=300)
                return _run(args, tmp, fleet, broker, start)
            finally:
                fleet.close()


def _run(args: argparse.Namespace, tmp: Path, fleet: FleetProcess, broker: object, start: datetime) -> int:
    from tests.services import ConfiguredMosquitto

    assert isinstance(broker, ConfiguredMosquitto) and broker.proc is not None and fleet.proc is not None
    token = issue_token(fleet.http, UNIT, max_devices=args.kiosks, require_approval=False)

    def enroll(i: int) -> DeviceIdentity:
        identity = DeviceIdentity(tmp / "kiosks" / f"kiosk-{i:05d}" / "identity", f"kiosk-{i:05d}")
        response = fleet.http.post("/api/v1/enroll", content=enroll_request(identity, token, UNIT),
                                   headers={"Content-Type": "application/json"})
        response.raise_for_status()
        answer = response.json()
        identity.store(answer["certificate_pem"].encode(), answer["ca_pem"].encode(),
                       broker_url=answer["broker_url"], fleet_url=answer["fleet_url"])
        return identity

    began = time.monotonic()
    with ThreadPoolExecutor(args.enroll_threads) as pool:
        identities = list(pool.map(enroll, range(args.kiosks)))
    took = time.monotonic() - began
    print(f"enrolled {len(identities)} kiosks in {took:.1f} s ({len(identities) / took:.1f}/s), "
          f"{args.enroll_threads} at a time")
    clock = Clock(start, args.speed)
    kiosks = [Kiosk(identity, tmp / "kiosks" / identity.device_id / "state", clock) for identity in identities]
    began = time.monotonic()
    for kiosk in kiosks:
        kiosk.start()
    online = _wait(lambda: all(k.link.connected.is_set() for k in kiosks), args.connect_timeout)
    if online is not None:
        print(f"all {len(kiosks)} connected (mutual TLS) in {online:.1f} s")
    else:
        why = Counter(f"refused={k.link.refused} broker_refusal={k.link.broker_refusal} connects={k.link.connects}"
                      for k in kiosks if not k.link.connected.is_set())
        connected = sum(k.link.connected.is_set() for k in kiosks)
        print(f"only {connected} of {len(kiosks)} connected after {args.connect_timeout:.0f} s: {dict(why)}")
        print("broker log, last lines:\n" + "\n".join(broker.log_text().splitlines()[-15:]))
    cpu0 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic())
    steady_end = time.monotonic() + args.seconds
    killed_at: float | None = None
    try:
        while time.monotonic() < steady_end:
            wall = time.monotonic()
            for kiosk in kiosks:
                kiosk.tick(wall)
            if (args.kill_broker_at is not None and killed_at is None
                    and wall - cpu0[2] >= args.kill_broker_at):
                broker.proc.send_signal(signal.SIGKILL)
                broker.proc.wait()
                killed_at = time.monotonic()
                made_before = sum(k.made for k in kiosks)
                broker.start()
                wait_port(broker.port, 30)
                print(f"broker killed with SIGKILL at {wall - cpu0[2]:.0f} s and restarted "
                      f"(simulated {clock.now() + ICT:%H:%M}); {made_before} events made so far")
                threading.Thread(target=_after_kill, args=(kiosks, fleet, killed_at, made_before),
                                 daemon=True).start()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - wall)))
        cpu1 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic())
        made = sum(k.made for k in kiosks)
        drained = _wait(lambda: _stored(fleet) >= made and all(k.outbox.depth().events == 0 for k in kiosks), 300)
        span = cpu1[2] - cpu0[2]
        text = fleet.http.get("/metrics").text
        p50 = _histogram_quantile(text, "sohoa_fleet_ingest_lag_seconds", 0.5)
        p99 = _histogram_quantile(text, "sohoa_fleet_ingest_lag_seconds", 0.99)
        print(f"simulated {clock.start + ICT:%H:%M}-{clock.now() + ICT:%H:%M} Vietnam time in {span:.0f} s: "
              f"{made} page events made, {_stored(fleet)} stored when the phase ended, "
              f"{sum(k.publisher.resent for k in kiosks)} re-sent, {sum(k.acks for k in kiosks)} commands answered")
        print(f"drained (every event stored, every outbox empty) {drained:.1f} s after the steady phase"
              if drained is not None else "NOT drained within 300 s")
        print(f"ingest lag (fleet histogram bucket bounds): p50 <= {p50} s, p99 <= {p99} s")
        broker_cpu = ("not comparable (restarted)" if killed_at is not None
                      else f"{100 * (cpu1[0] - cpu0[0]) / span:.0f}% of a core")
        fleet_cpu = 100 * (cpu1[1] - cpu0[1]) / span
        print(f"CPU over the steady phase: broker {broker_cpu}, fleet {fleet_cpu:.0f}% of a core")
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        return 0 if drained is not None else 1
    finally:
        for kiosk in kiosks:
            kiosk.stop()


if __name__ == "__main__":
    raise SystemExit(main())
