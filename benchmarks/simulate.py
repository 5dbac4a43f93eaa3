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
    nice -n 19 python -m benchmarks.simulate --kiosks 300 --seconds 120 --kill-broker-at 30 --kill-fleet-at 40

Prints the machine, the load average, enrollment rate, connection time (with a timeline of kiosks
online and the broker's CPU over the connection storm), events made and stored, ingest lag (the
fleet's histogram), CPU seconds of broker, fleet and the simulator itself, the kiosks' failed
attempts by kind and their TLS probes, and, with ``--kill-broker-at``, how long until every
kiosk is back online and every event stored, and how long a page (a real JPEG, uploaded with a
signed request, its event confirmed ``stored``) and the fleet screen's requests take during that
storm. ``--kill-fleet-at`` also kills the fleet with SIGKILL and restarts it: afterwards every
event made is stored exactly once (the database's count of page events and of distinct page ids
equals the events made; the fleet's duplicate counter says how many re-sends it ignored).
"""

from __future__ import annotations

import argparse
import logging
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

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from benchmarks.harness import machine
from device.config import BrokerConfig, UploadConfig
from device.delivery.link import MqttLink
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.delivery.uploader import Uploader
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
    Stored,
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
        self.identity = identity
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
        self.watch: dict[str, float] = {}
        """Event ids whose `stored` confirmation is timed: id -> monotonic time it arrived (0 before)."""
        self._thread = threading.Thread(target=self.publisher.run, name=f"publisher-{self.id}", daemon=True)
        self._next_telemetry = 0.0
        self._next_dossier = clock.now() + timedelta(seconds=random.expovariate(DOSSIERS_PER_HOUR / 3600))
        self._pages_left = 0
        self._next_page = clock.now()

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        if topic_name.endswith("/stored"):
            self.publisher.on_stored(topic_name, payload)
            if self.watch:
                stored = decode(topic_name, payload).message
                assert isinstance(stored, Stored)
                for message_id in set(stored.ids) & self.watch.keys():
                    self.watch[message_id] = self.watch[message_id] or time.monotonic()
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


def _jpeg() -> bytes:
    """A page-like JPEG (half an A4 page at 300 dpi: lines of dark strokes on white paper)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    page = np.full((1754, 1240), 245, np.uint8)
    for row in range(120, 1650, 48):
        for x in range(100, 1140, 14):
            if rng.random() < 0.8:
                page[row:row + 22, x:x + 9] = rng.integers(20, 90)
    ok, data = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(data)


def _page_through_the_storm(kiosk: Kiosk, fleet: FleetProcess, began: float) -> None:
    """One page as a kiosk sends it during the storm: the file stored with its event in the
    outbox, uploaded over HTTPS with a signed request (timed until the fleet answers 201), its
    event confirmed ``stored`` over MQTT (timed from ``began``, the moment of the kill); and the
    fleet screen's and progress page's requests, timed once each."""
    data = _jpeg()
    event_id = ""

    def message(sha256: str) -> tuple[str, bytes, str]:
        nonlocal event_id
        now = kiosk.clock.now()
        page = Page(page_id=new_id(), sha256=sha256, size=len(data), content_type="image/jpeg", width=1240,
                    height=1754, dpi=150, source="scanner", batch_id="storm", sequence=1, dossier_code="storm",
                    captured_at=now)
        event = PageCaptured(device_id=kiosk.id, page=page)
        event_id = event.id
        kiosk.watch[event_id] = 0.0
        return topic(kiosk.id, Channel.EVENT), encode(event), event.id

    start = time.monotonic()
    kiosk.outbox.add_page(data, "image/jpeg", message)
    kiosk.made += 1
    uploader = Uploader(kiosk.outbox, None, kiosk.id, UploadConfig(retry_min_s=0.5, retry_max_s=2),
                        identity=kiosk.identity)
    try:
        while not uploader.upload_due() and time.monotonic() - start < 300:
            time.sleep(0.2)
        uploaded = time.monotonic() - start
    finally:
        uploader.close()
    print(f"  storm: a {len(data) // 1024} KiB page uploaded (signed HTTPS, 201) in {uploaded:.2f} s "
          f"({uploader.failures} failed tries); kiosk online at the time: {kiosk.link.connected.is_set()}")
    for what, path in (("fleet screen GET /api/v1/fleet/devices?limit=300", "/api/v1/fleet/devices?limit=300"),
                       ("progress GET /api/v1/progress", f"/api/v1/progress?from={kiosk.clock.now():%Y-%m}"),
                       ("alerts GET /api/v1/alerts/counts", "/api/v1/alerts/counts")):
        t0 = time.monotonic()
        try:
            code = str(fleet.http.get(path, timeout=60).status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        print(f"  storm: {what}: {time.monotonic() - t0:.2f} s ({code})")
    if _wait(lambda: kiosk.watch[event_id] > 0, 300) is not None:
        print(f"  storm: its event confirmed stored at the kiosk {kiosk.watch[event_id] - start:.1f} s after it "
              f"was made ({kiosk.watch[event_id] - began:.1f} s after the kill)")
    else:
        print("  storm: its event NOT confirmed within 300 s")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def _online(kiosks: list[Kiosk]) -> int:
    return sum(k.link.connected.is_set() for k in kiosks)


def _timeline(kiosks: list[Kiosk], broker_pid: int, began: float, until: float, step: float = 10.0) -> None:
    """Every ``step`` s until all kiosks are online (or ``until`` s): kiosks online, the broker's
    CPU over the step, the kiosks' failed attempts and probes so far."""
    cpu, at = _cpu_s(broker_pid), time.monotonic()
    while time.monotonic() - began < until:
        time.sleep(step)
        try:
            now_cpu = _cpu_s(broker_pid)
        except OSError:
            return  # the broker was restarted: a new timeline follows
        now = time.monotonic()
        share = 100 * (now_cpu - cpu) / (now - at)
        print(f"    +{now - began:5.0f} s: {_online(kiosks):5d} online, broker {share:3.0f}% of a core, "
              f"{_failures(kiosks)}")
        cpu, at = now_cpu, now
        if _online(kiosks) == len(kiosks):
            return


def _failures(kiosks: list[Kiosk]) -> str:
    """Failed attempts by kind and probes, summed over the kiosks (the link's counters)."""
    kinds: Counter[str] = Counter()
    for kiosk in kiosks:
        kinds.update(getattr(kiosk.link, "failures", {}))
    if not hasattr(kiosks[0].link, "probes"):
        return "failed attempts and probes not counted by this link"
    probes = sum(getattr(k.link, "probes", 0) for k in kiosks)
    return f"failed attempts {dict(kinds)}, probes {probes}"


def _after_kill(kiosks: list[Kiosk], fleet: FleetProcess, broker_pid: int, killed_at: float,
                made_before: int) -> None:
    """Report when every kiosk is back and when every event made before the kill is stored."""
    threading.Thread(target=_timeline, args=(kiosks, broker_pid, killed_at, 300.0, 5.0), daemon=True).start()
    if _wait(lambda: _online(kiosks) == len(kiosks), 300) is not None:
        print(f"  after the kill: every kiosk online again {time.monotonic() - killed_at:.1f} s after it")
    else:
        print(f"  after the kill: only {_online(kiosks)} of {len(kiosks)} online 300 s after it")
    if _wait(lambda: _stored(fleet) >= made_before, 300) is not None:
        print(f"  after the kill: every event made before it stored {time.monotonic() - killed_at:.1f} s after it")


def _kill_fleet(fleet: FleetProcess) -> None:
    """SIGKILL the fleet and start it again (the kiosks keep making events meanwhile)."""
    assert fleet.proc is not None
    fleet.proc.kill()
    fleet.proc.wait()
    down = time.monotonic()
    fleet.start(timeout=300)
    print(f"  fleet serving and its ingest connected again {time.monotonic() - down:.1f} s after the kill")


def _duplicates(fleet: FleetProcess) -> float:
    """The fleet's count of re-sent events it ignored (since this fleet process started)."""
    for family in text_string_to_metric_families(fleet.http.get("/metrics").text):
        if family.name == "sohoa_fleet_messages_duplicate":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def _distinct_pages(fleet: FleetProcess) -> tuple[int, int]:
    """(page events, distinct page ids among them) in the fleet's database."""
    engine = make_engine(fleet.db_url)
    try:
        with engine.connect() as conn:
            events = list(conn.scalars(select(Event.payload).where(Event.type == "page_captured")))
    finally:
        engine.dispose()
    ids = {_page_id(p) for p in events}
    return len(events), len(ids)


def _page_id(payload: object) -> str:
    import json

    data = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
    assert isinstance(data, dict)
    return str(data["page"]["page_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kiosks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120, help="wall-clock length of the steady phase")
    parser.add_argument("--speed", type=float, default=60, help="simulated seconds per wall second")
    parser.add_argument("--start", default="2026-12-07T09:00", help="simulated start, Vietnam time")
    parser.add_argument("--kill-broker-at", type=float, default=None, help="kill -9 the broker after this many s")
    parser.add_argument("--kill-fleet-at", type=float, default=None,
                        help="kill -9 the fleet after this many s of the steady phase, and restart it")
    parser.add_argument("--enroll-threads", type=int, default=4)
    parser.add_argument("--connect-timeout", type=float, default=600, help="longest wait for every kiosk online")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
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
    broker_cpu0, own_cpu0 = _cpu_s(broker.proc.pid), time.process_time()
    for kiosk in kiosks:
        kiosk.start()
    print("connection storm at start (all kiosks at once):")
    threading.Thread(target=_timeline, args=(kiosks, broker.proc.pid, began, args.connect_timeout), daemon=True).start()
    online = _wait(lambda: all(k.link.connected.is_set() for k in kiosks), args.connect_timeout)
    took = time.monotonic() - began
    handshakes = broker.log_text().count("New connection from")
    print(f"  broker CPU over the storm: {_cpu_s(broker.proc.pid) - broker_cpu0:.1f} s for {handshakes} TCP "
          f"connections accepted; simulator CPU {time.process_time() - own_cpu0:.1f} s; {_failures(kiosks)}")
    if online is not None:
        print(f"all {len(kiosks)} connected (mutual TLS) in {online:.1f} s")
    else:
        why = Counter(f"refused={k.link.refused} broker_refusal={k.link.broker_refusal} connects={k.link.connects}"
                      for k in kiosks if not k.link.connected.is_set())
        connected = sum(k.link.connected.is_set() for k in kiosks)
        print(f"only {connected} of {len(kiosks)} connected after {took:.0f} s: {dict(why)}")
        print("broker log, last lines:\n" + "\n".join(broker.log_text().splitlines()[-15:]))
    cpu0 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic(), time.process_time())
    steady_end = time.monotonic() + args.seconds
    killed_at: float | None = None
    fleet_killed = False
    duplicates = 0.0
    broker_cpu_before_kill = 0.0
    try:
        while time.monotonic() < steady_end:
            wall = time.monotonic()
            for kiosk in kiosks:
                kiosk.tick(wall)
            if (args.kill_broker_at is not None and killed_at is None
                    and wall - cpu0[2] >= args.kill_broker_at):
                broker_cpu_before_kill = _cpu_s(broker.proc.pid) - cpu0[0]
                broker.proc.send_signal(signal.SIGKILL)
                broker.proc.wait()
                killed_at = time.monotonic()
                made_before = sum(k.made for k in kiosks)
                broker.start()
                wait_port(broker.port, 30)
                print(f"broker killed with SIGKILL at {wall - cpu0[2]:.0f} s and restarted "
                      f"(simulated {clock.now() + ICT:%H:%M}); {made_before} events made so far")
                threading.Thread(target=_after_kill, args=(kiosks, fleet, broker.proc.pid, killed_at, made_before),
                                 daemon=True).start()
                threading.Thread(target=_page_through_the_storm, args=(kiosks[0], fleet, killed_at),
                                 daemon=True).start()
            if (args.kill_fleet_at is not None and not fleet_killed and wall - cpu0[2] >= args.kill_fleet_at):
                fleet_killed = True
                duplicates += _duplicates(fleet)
                print(f"fleet killed with SIGKILL at {wall - cpu0[2]:.0f} s ({_online(kiosks)} kiosks online, "
                      f"{sum(k.made for k in kiosks)} events made, {_stored(fleet)} stored)")
                restarted = threading.Thread(target=_kill_fleet, args=(fleet,), daemon=True)
                restarted.start()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - wall)))
        if fleet_killed:
            restarted.join()
        assert fleet.proc is not None
        cpu1 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic(), time.process_time())
        made = sum(k.made for k in kiosks)
        drained = _wait(lambda: _stored(fleet) >= made and all(k.outbox.depth().events == 0 for k in kiosks), 300)
        events, distinct = _distinct_pages(fleet)
        duplicates += _duplicates(fleet)
        print(f"page events in the database: {events}, distinct page ids {distinct}, events made {made}; "
              f"re-sent events the fleet ignored as duplicates: {duplicates:.0f}")
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
        broker_cpu = (f"{100 * broker_cpu_before_kill / (killed_at - cpu0[2]):.0f}% of a core before the kill"
                      if killed_at is not None else f"{100 * (cpu1[0] - cpu0[0]) / span:.0f}% of a core")
        fleet_cpu = ("not comparable (restarted)" if fleet_killed
                     else f"{100 * (cpu1[1] - cpu0[1]) / span:.0f}% of a core")
        print(f"CPU over the steady phase: broker {broker_cpu}, fleet {fleet_cpu}, simulator "
              f"{100 * (cpu1[3] - cpu0[3]) / span:.0f}% of a core; simulator peak RSS {_peak_rss_mib():.0f} MiB, "
              f"{threading.active_count()} threads")
        print(f"kiosks: {_failures(kiosks)}")
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        return 0 if drained is not None else 1
    finally:
        for kiosk in kiosks:
            kiosk.stop()


if __name__ == "__main__":
    raise SystemExit(main())
