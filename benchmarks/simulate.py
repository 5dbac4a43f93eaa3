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
clock that runs ``--speed`` times faster than the wall's. Kiosks run in worker processes of at
most ``--per-process`` kiosks (see :func:`_worker` for why), all started at the same moment.

    nice -n 19 python -m benchmarks.simulate --kiosks 1000 --per-process 125 --seconds 150 --speed 1 \
        --kill-broker-at 40 --kill-fleet-at 55
    nice -n 19 python -m benchmarks.simulate --kiosks 200 --seconds 120 --speed 60
    nice -n 19 python -m benchmarks.simulate --kiosks 200 --seconds 60 --kill-broker-at 30
    nice -n 19 python -m benchmarks.simulate --kiosks 300 --seconds 120 --kill-broker-at 30 --kill-fleet-at 40

Prints the machine, the load average, enrollment rate, connection time (with a timeline of kiosks
online and the broker's CPU over the connection storm), events made and stored, ingest lag (the
fleet's histogram), CPU seconds of broker, fleet and the simulator itself, the kiosks' failed
attempts by kind and their TLS probes, and, with ``--kill-broker-at``, how long until every
kiosk is back online and every event stored, and how long a page (a real JPEG, uploaded with a
signed request, its event confirmed ``stored``), the fleet screen's requests and an alert
evaluation pass (the fleet's own evaluator on its database, repeated every 2 s until every kiosk
is back; also once before the kill and once drained) take during that storm.
``--kill-fleet-at`` also kills the fleet with SIGKILL and restarts it: afterwards every event
made is stored exactly once (the database's count of page events and of distinct page ids
equals the events made; the fleet's duplicate counter says how many re-sends it ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from benchmarks.harness import machine
from device.config import BrokerConfig, UploadConfig
from device.delivery.link import MqttLink
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.delivery.uploader import Uploader
from fleet.alerts.evaluator import AlertEvaluator
from fleet.alerts.models import Alert
from fleet.config import load as load_fleet_config
from fleet.db import make_engine, session_factory
from fleet.models import Device, Event
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
from tests.services import ConfiguredMosquitto, provisioned_mosquitto, wait_port

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


def _page_through_the_storm(kiosk: Kiosk, began: float, data: bytes) -> None:
    """One page as a kiosk sends it during the storm: the file stored with its event in the
    outbox, uploaded over HTTPS with a signed request (timed until the fleet answers 201), its
    event confirmed ``stored`` over MQTT (timed from when it was made and from ``began``, the
    moment of the kill); ``data`` is made beforehand, so the timing is the delivery's."""
    event_id = ""

    def message(sha256: str) -> tuple[str, bytes, str]:
        nonlocal event_id
        page = Page(page_id=new_id(), sha256=sha256, size=len(data), content_type="image/jpeg", width=1240,
                    height=1754, dpi=150, source="scanner", batch_id="storm", sequence=1, dossier_code="storm",
                    captured_at=kiosk.clock.now())
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
          f"({uploader.failures} failed tries); its kiosk online then: {kiosk.link.connected.is_set()}", flush=True)
    if _wait(lambda: kiosk.watch[event_id] > 0, 300) is not None:
        print(f"  storm: its event confirmed stored at the kiosk {kiosk.watch[event_id] - start:.1f} s after it "
              f"was made ({kiosk.watch[event_id] - began:.1f} s after the kill)", flush=True)
    else:
        print("  storm: its event NOT confirmed within 300 s", flush=True)


def _stats(kiosks: list[Kiosk]) -> dict[str, Any]:
    """What the parent asks a worker about its kiosks."""
    failures: Counter[str] = Counter()
    for kiosk in kiosks:
        failures.update(getattr(kiosk.link, "failures", {}))
    return {"kiosks": len(kiosks), "online": sum(k.link.connected.is_set() for k in kiosks),
            "made": sum(k.made for k in kiosks), "resent": sum(k.publisher.resent for k in kiosks),
            "acks": sum(k.acks for k in kiosks), "queued": sum(k.outbox.depth().events for k in kiosks),
            "failures": dict(failures), "counted": hasattr(kiosks[0].link, "probes") if kiosks else False,
            "probes": sum(getattr(k.link, "probes", 0) for k in kiosks),
            "cpu_s": time.process_time(), "rss_mib": _peak_rss_mib(), "threads": threading.active_count()}


def _worker(conn: Connection, identities: list[tuple[str, str]], state: str, start: datetime, speed: float,
            wall0: float) -> None:
    """A process of ``len(identities)`` kiosks: ticks them once a second and answers the parent.

    Kiosks live in several processes because paho's network loop uses ``select()``, which
    cannot watch a descriptor numbered 1024 or more: a kiosk holds about six (its socket, the
    loop's wake-up pair, its SQLite outbox), so one process holds at most about 150 kiosks
    (with more, the extra kiosks' connections fail in paho without a callback and wait paho's
    own back-off, up to 2 minutes: a simulator artefact, not a broker limit)."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    clock = Clock(start, speed, wall0)
    kiosks = [Kiosk(DeviceIdentity(Path(directory), device_id), Path(state) / device_id, clock)
              for directory, device_id in identities]
    page = _jpeg() if identities and identities[0][1].endswith("00000") else b""
    conn.send("ready")
    assert conn.recv() == ("go", None)  # every process's kiosks start together: one storm
    for kiosk in kiosks:
        kiosk.start()
    conn.send("started")
    making = True
    try:
        while True:
            wall = time.monotonic()
            for kiosk in kiosks if making else ():
                kiosk.tick(wall)
            while (left := wall + 1.0 - time.monotonic()) > 0:
                if not conn.poll(left):
                    continue
                command, argument = conn.recv()
                if command == "stats":
                    conn.send(_stats(kiosks))
                elif command == "page":
                    threading.Thread(target=_page_through_the_storm, args=(kiosks[0], argument, page),
                                     daemon=True).start()
                    conn.send("ok")
                elif command == "quiet":  # the steady phase is over: no new events, links stay up
                    making = False
                    conn.send("ok")
                elif command == "stop":
                    return
    finally:
        final = _stats(kiosks)
        for kiosk in kiosks:
            kiosk.stop()
        conn.send(final)


class Fleet:
    """The parent's handle on the worker processes: start, ask, stop."""

    def __init__(self, identities: list[DeviceIdentity], state: Path, clock: Clock, per_process: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers: list[tuple[BaseProcess, Connection]] = []
        self._kiosks = len(identities)
        for first in range(0, len(identities), per_process):
            batch = [(str(i.directory), i.device_id) for i in identities[first:first + per_process]]
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, batch, str(state), clock.start, clock.speed,
                                                            clock.wall0), daemon=True)
            self._workers.append((process, parent))

    def start(self) -> float:
        """Start the processes, let them make their kiosks, then start every kiosk at once; returns
        that moment (monotonic)."""
        for process, _ in self._workers:
            process.start()
        for _, conn in self._workers:
            assert conn.recv() == "ready"
        go = time.monotonic()
        for _, conn in self._workers:
            conn.send(("go", None))
        for _, conn in self._workers:
            assert conn.recv() == "started"
        return go

    def quiet(self) -> None:
        """No new events from now on (the kiosks stay connected and deliver what they hold)."""
        with self._lock:
            for _, conn in self._workers:
                conn.send(("quiet", None))
            for _, conn in self._workers:
                conn.recv()

    def stats(self) -> dict[str, Any]:
        """Summed over the workers (failures by kind summed too; cpu_s and rss_mib summed)."""
        with self._lock:
            for _, conn in self._workers:
                conn.send(("stats", None))
            parts = [conn.recv() for _, conn in self._workers]
        return _sum(parts)

    def page(self, began: float) -> None:
        with self._lock:
            self._workers[0][1].send(("page", began))
            self._workers[0][1].recv()

    def stop(self) -> dict[str, Any]:
        with self._lock:
            for process, conn in self._workers:
                if process.is_alive():
                    conn.send(("stop", None))
            parts = []
            for _, conn in self._workers:
                with contextlib.suppress(EOFError, OSError):
                    if conn.poll(60):
                        parts.append(conn.recv())
            for process, _ in self._workers:
                process.join(30)
                if process.is_alive():
                    process.kill()
        return _sum(parts)

    def __len__(self) -> int:
        return self._kiosks

    @property
    def processes(self) -> int:
        return len(self._workers)


def _sum(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"failures": Counter(), "counted": all(p["counted"] for p in parts),
                             "threads_max": max((p["threads"] for p in parts), default=0)}
    for part in parts:
        total["failures"].update(part["failures"])
        for key, value in part.items():
            if key not in ("failures", "counted", "threads"):
                total[key] = total.get(key, 0) + value
    return total


def _failures(stats: dict[str, Any]) -> str:
    if not stats["counted"]:
        return "failed attempts and probes not counted by this link"
    return f"failed attempts {dict(stats['failures'])}, probes {stats['probes']}"


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


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.5)
    return time.monotonic() - start


def _timeline(kiosks: Fleet, broker_pid: int, began: float, until: float, step: float) -> None:
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
        try:
            stats = kiosks.stats()
        except (OSError, EOFError):
            return  # the run is over
        share = 100 * (now_cpu - cpu) / (now - at)
        print(f"    +{now - began:5.0f} s: {stats['online']:5d} online, broker {share:3.0f}% of a core, "
              f"{_failures(stats)}", flush=True)
        cpu, at = now_cpu, now
        if stats["online"] == stats["kiosks"]:
            return


def _after_kill(kiosks: Fleet, fleet: FleetProcess, broker_pid: int, killed_at: float, made_before: int) -> None:
    """Report when every kiosk is back and when every event made before the kill is stored."""
    threading.Thread(target=_timeline, args=(kiosks, broker_pid, killed_at, 300.0, 5.0), daemon=True).start()
    if _wait(lambda: (s := kiosks.stats())["online"] == s["kiosks"], 300) is not None:
        print(f"  after the broker's kill: every kiosk online again {time.monotonic() - killed_at:.1f} s after it",
              flush=True)
    else:
        print(f"  after the broker's kill: only {kiosks.stats()['online']} online 300 s after it", flush=True)
    if _wait(lambda: _stored(fleet) >= made_before, 300) is not None:
        print(f"  after the broker's kill: every event made before it stored {time.monotonic() - killed_at:.1f} s "
              "after it", flush=True)


def _screen_during_the_storm(fleet: FleetProcess, clock: Clock) -> None:
    """The fleet screen's, progress page's and alerts' requests, timed once each."""
    for what, path in (("fleet screen GET /api/v1/fleet/devices?limit=300", "/api/v1/fleet/devices?limit=300"),
                       ("progress GET /api/v1/progress", f"/api/v1/progress?from={clock.now():%Y-%m}"),
                       ("alerts GET /api/v1/alerts/counts", "/api/v1/alerts/counts")):
        t0 = time.monotonic()
        try:
            code = str(fleet.http.get(path, timeout=60).status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        print(f"  storm: {what}: {time.monotonic() - t0:.2f} s ({code})", flush=True)


@dataclass
class AlertPass:
    """One alert evaluation pass, timed: the fleet's own evaluator and configuration on its
    database, run from the simulator's process while the fleet runs (the fleet's node does the
    same every ``alerts.interval_s``; a second evaluator is harmless: an alert both open is kept
    once, see :meth:`fleet.alerts.evaluator.AlertEvaluator.run_once`)."""

    seconds: float
    cpu_s: float
    """CPU time of the thread that ran the pass (its wall time minus waiting: for CPU, I/O, locks)."""
    statements: int
    transitions: int
    devices: int
    active: int
    online: int
    load: float


def _alert_pass(fleet: FleetProcess, kiosks: Fleet | None = None) -> AlertPass:
    from sqlalchemy import event

    config = load_fleet_config(fleet.config)
    engine = make_engine(fleet.db_url)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    evaluator = AlertEvaluator(config.alerts, session_factory(engine),
                               heartbeat_timeout_s=config.ingest.heartbeat_timeout_s, delivery=config.delivery,
                               time_zone=config.time_zone)
    try:
        online = kiosks.stats()["online"] if kiosks is not None else -1
        t0, cpu0 = time.monotonic(), time.thread_time()
        transitions = evaluator.run_once()
        took, cpu = time.monotonic() - t0, time.thread_time() - cpu0
        ran = statements
        with engine.connect() as conn:
            devices = int(conn.scalar(select(func.count()).select_from(Device)) or 0)
            active = int(conn.scalar(select(func.count()).select_from(Alert).where(Alert.status != "resolved")) or 0)
    finally:
        evaluator.close()
        engine.dispose()
    return AlertPass(took, cpu, ran, len(transitions), devices, active, online,
                     os.getloadavg()[0])


def _say_alert_pass(when: str, result: AlertPass) -> None:
    online = f", {result.online} kiosks online" if result.online >= 0 else ""
    print(f"  {when}: one alert evaluation pass over {result.devices} devices took {result.seconds:.3f} s "
          f"(its thread's CPU {result.cpu_s:.3f} s; {result.statements} SQL statements; {result.transitions} alerts "
          f"opened or resolved, {result.active} "
          f"active after it{online}, load {result.load:.1f})", flush=True)


def _alert_passes_during_the_storm(fleet: FleetProcess, kiosks: Fleet, until: float) -> None:
    """Alert passes back to back, every 2 s, while the kiosks come back (at most ``until`` s):
    the pass under the storm's load, from the first seconds to the last kiosk."""
    began = time.monotonic()
    passes: list[AlertPass] = []
    while time.monotonic() - began < until:
        try:
            result = _alert_pass(fleet, kiosks)
        except (OSError, EOFError):
            return  # the kiosks' processes are gone: the run is over
        except Exception as exc:  # the fleet's database may be busy or the fleet restarting: say so
            print(f"  storm: an alert pass failed: {type(exc).__name__}: {exc}", flush=True)
            time.sleep(2.0)
            continue
        passes.append(result)
        _say_alert_pass(f"storm +{time.monotonic() - began:.0f} s", result)
        if result.online == len(kiosks):
            break
        time.sleep(2.0)
    if passes:
        times = sorted(p.seconds for p in passes)
        cpu = sorted(p.cpu_s for p in passes)
        print(f"  storm: {len(passes)} alert passes, median {times[len(times) // 2]:.3f} s, slowest {times[-1]:.3f} s; "
              f"their thread's CPU median {cpu[len(cpu) // 2]:.3f} s, most {cpu[-1]:.3f} s", flush=True)


def _kill_fleet(fleet: FleetProcess) -> None:
    """SIGKILL the fleet and start it again (the kiosks keep making events meanwhile)."""
    assert fleet.proc is not None
    fleet.proc.kill()
    fleet.proc.wait()
    down = time.monotonic()
    fleet.start(timeout=300)
    print(f"  fleet serving and its ingest connected again {time.monotonic() - down:.1f} s after the kill",
          flush=True)


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
            payloads = list(conn.scalars(select(Event.payload).where(Event.type == "page_captured")))
    finally:
        engine.dispose()
    return len(payloads), len({str(p["page"]["page_id"]) for p in payloads})


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
    parser.add_argument("--per-process", type=int, default=100,
                        help="kiosks per worker process (at most about 150: paho's select() and its 1024 descriptors)")
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


def _run(args: argparse.Namespace, tmp: Path, fleet: FleetProcess, broker: ConfiguredMosquitto,
         start: datetime) -> int:
    assert broker.proc is not None and fleet.proc is not None
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
          f"{args.enroll_threads} at a time", flush=True)
    clock = Clock(start, args.speed)
    kiosks = Fleet(identities, tmp / "state", clock, args.per_process)
    ready = time.monotonic()
    broker_cpu0 = _cpu_s(broker.proc.pid)
    began = kiosks.start()
    print(f"connection storm at start (all kiosks at once, {kiosks.processes} processes of at most "
          f"{args.per_process} kiosks, made ready in {began - ready:.1f} s):", flush=True)
    threading.Thread(target=_timeline, args=(kiosks, broker.proc.pid, began, args.connect_timeout, 10.0),
                     daemon=True).start()
    online = _wait(lambda: (s := kiosks.stats())["online"] == s["kiosks"], args.connect_timeout)
    took = time.monotonic() - began
    stats = kiosks.stats()
    print(f"  broker CPU over the storm: {_cpu_s(broker.proc.pid) - broker_cpu0:.1f} s for "
          f"{broker.log_text().count('New connection from')} TCP connections accepted; simulator CPU "
          f"{stats['cpu_s']:.1f} s; {_failures(stats)}", flush=True)
    if online is not None:
        print(f"all {len(identities)} connected (mutual TLS) in {online:.1f} s", flush=True)
    else:
        print(f"only {stats['online']} of {len(identities)} connected after {took:.0f} s", flush=True)
    cpu0 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic(), stats["cpu_s"])
    steady_end = time.monotonic() + args.seconds
    killed_at: float | None = None
    restarted: threading.Thread | None = None
    duplicates = 0.0
    broker_cpu_before_kill = 0.0
    try:
        while time.monotonic() < steady_end:
            wall = time.monotonic()
            if args.kill_broker_at is not None and killed_at is None and wall - cpu0[2] >= args.kill_broker_at:
                _say_alert_pass("steady state, before the broker's kill", _alert_pass(fleet, kiosks))
                broker_cpu_before_kill = _cpu_s(broker.proc.pid) - cpu0[0]
                broker.proc.send_signal(signal.SIGKILL)
                broker.proc.wait()
                killed_at = time.monotonic()
                made_before = kiosks.stats()["made"]
                broker.start()
                wait_port(broker.port, 30)
                print(f"broker killed with SIGKILL at {wall - cpu0[2]:.0f} s and restarted "
                      f"(simulated {clock.now() + ICT:%H:%M}); {made_before} events made so far", flush=True)
                threading.Thread(target=_after_kill, args=(kiosks, fleet, broker.proc.pid, killed_at, made_before),
                                 daemon=True).start()
                kiosks.page(killed_at)
                threading.Thread(target=_screen_during_the_storm, args=(fleet, clock), daemon=True).start()
                threading.Thread(target=_alert_passes_during_the_storm, args=(fleet, kiosks, 120.0),
                                 daemon=True).start()
            if args.kill_fleet_at is not None and restarted is None and wall - cpu0[2] >= args.kill_fleet_at:
                duplicates += _duplicates(fleet)
                stats = kiosks.stats()
                print(f"fleet killed with SIGKILL at {wall - cpu0[2]:.0f} s ({stats['online']} kiosks online, "
                      f"{stats['made']} events made, {_stored(fleet)} stored)", flush=True)
                restarted = threading.Thread(target=_kill_fleet, args=(fleet,), daemon=True)
                restarted.start()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - wall)))
        if restarted is not None:
            restarted.join()
        assert fleet.proc is not None
        kiosks.quiet()
        stats = kiosks.stats()
        cpu1 = (_cpu_s(broker.proc.pid), _cpu_s(fleet.proc.pid), time.monotonic(), stats["cpu_s"])
        made = stats["made"]
        drained = _wait(lambda: _stored(fleet) >= made and kiosks.stats()["queued"] == 0, 300)
        events, distinct = _distinct_pages(fleet)
        _say_alert_pass("drained", _alert_pass(fleet, kiosks))
        duplicates += _duplicates(fleet)
        stats = kiosks.stats()
        span = cpu1[2] - cpu0[2]
        text = fleet.http.get("/metrics").text
        p50 = _histogram_quantile(text, "sohoa_fleet_ingest_lag_seconds", 0.5)
        p99 = _histogram_quantile(text, "sohoa_fleet_ingest_lag_seconds", 0.99)
        print(f"simulated {clock.start + ICT:%H:%M}-{clock.now() + ICT:%H:%M} Vietnam time in {span:.0f} s: "
              f"{made} page events made, {stats['resent']} re-sent by kiosks, {stats['acks']} commands answered")
        print(f"page events in the database: {events}, distinct page ids {distinct}, events made {made}; "
              f"re-sent events the fleet ignored as duplicates: {duplicates:.0f}")
        print(f"drained (every event stored, every outbox empty) {drained:.1f} s after the steady phase"
              if drained is not None else "NOT drained within 300 s")
        print(f"ingest lag (fleet histogram bucket bounds): p50 <= {p50} s, p99 <= {p99} s")
        broker_cpu = (f"{100 * broker_cpu_before_kill / (killed_at - cpu0[2]):.0f}% of a core before the kill"
                      if killed_at is not None else f"{100 * (cpu1[0] - cpu0[0]) / span:.0f}% of a core")
        fleet_cpu = ("not comparable (restarted)" if restarted is not None
                     else f"{100 * (cpu1[1] - cpu0[1]) / span:.0f}% of a core")
        print(f"CPU over the steady phase: broker {broker_cpu}, fleet {fleet_cpu}, simulator "
              f"{100 * (cpu1[3] - cpu0[3]) / span:.0f}% of a core; simulator RSS {stats['rss_mib']:.0f} MiB peak "
              f"summed over {kiosks.processes} processes, at most {stats['threads_max']} threads in one")
        dropped = broker.log_text().count("Outgoing messages are being dropped")
        print(f"kiosks: {_failures(stats)}; broker log: {dropped} 'Outgoing messages are being dropped' lines")
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        return 0 if drained is not None and events == distinct == made else 1
    finally:
        kiosks.stop()


if __name__ == "__main__":
    raise SystemExit(main())
