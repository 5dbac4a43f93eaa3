"""Rollouts driven by the FLEET (issue 7, "must be shown"): the fleet served by uvicorn with its
ingest and operations driver on a real mosquitto, and 20 light simulated kiosks in this process,
each enrolled through the fleet's API (its own key and certificate), a real MQTT client
(persistent session) running the real device updater on its own A/B slots and downloading from
the fleet's bundle endpoint over HTTPS with requests signed by its key. The test only uses the
fleet's API: ``PUT /bundles``, ``POST /rollouts``, ``GET /rollouts/{id}``, ``POST .../cancel``.

Shown:
- a good bundle rolls through 5% / 20% / 100%: every device ends on slot B at 0.2.0, and no
  device of a phase got its offer before every device of the previous phase had succeeded;
- a bundle whose health check fails is rolled back on the canary, the rollout halts, and no
  device of a later phase is touched (no command, no slot written);
- a bundle with a flipped byte, and one signed with a key the devices do not trust, are refused
  by every one of the 20 devices (one phase, halting only when all failed) and never installed;
- a device that is offline when its rollout is cancelled gets the offer from the broker on its
  return and installs nothing (the fleet answers 410 for the withdrawn offer); nor does one that
  had downloaded the bundle and was waiting for the open dossier at its counter to close.
"""

from __future__ import annotations

import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.dossier.session import DossierSession
from device.update_slots import SlotStore
from device.updater import Updater, offer_from
from fleet.api.state import fleet_state
from images.bundle import generate_keys
from protocol.messages import Command, CommandAck, Status, UpdateProgress, decode, encode
from protocol.topics import Channel, topic
from tests.devices import enroll_device, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.operations.harness import FleetServer, wait_until
from tests.images.device_harness import FLEET_URL, bootstrap, config, probe
from tests.images.helpers import app_bundle, flip_byte
from tests.services import Mosquitto

UNIT = "000.00.00.H01"
DEVICES = [f"kiosk-{i:04d}" for i in range(1, 21)]
PHASES: list[dict[str, Any]] = [{"percent": 5}, {"percent": 20}, {"percent": 100, "success_threshold": 0.9}]


@dataclass
class Seen:
    commands: list[str] = field(default_factory=list)
    offered_at: float | None = None
    succeeded_at: float | None = None
    reports: list[UpdateProgress] = field(default_factory=list)


class SimDevice:
    """A kiosk reduced to what updating needs: an MQTT link as the agent keeps it (persistent
    session, retained status with a Last Will, acks) and the real updater on its own slots."""

    def __init__(self, device_id: str, root: Path, public_key: Path, port: int, http_auth: httpx.Auth,
                 http_verify: ssl.SSLContext | bool) -> None:
        self.device_id, self.root, self.port = device_id, root, port
        self.seen = Seen()
        self.counter = DossierSession(pdf_builder=None)  # the update lock, as on a kiosk
        self.on_report: Callable[[UpdateProgress], None] = lambda _m: None
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.updater = Updater(
            config(root, public_key), device_id=device_id, current_version="0.1.0", report=self._report,
            restart=lambda: None,
            health_checks={"broker": lambda: self.connected.is_set(),
                           "smoke": lambda: (probe(root) or ("", False))[1]},
            http_auth=http_auth,
            http_verify=http_verify,
            fleet_url=FLEET_URL,
        )
        self.workers: list[threading.Thread] = []
        self.client: mqtt.Client | None = None

    # --- the link ---------------------------------------------------------------------------

    def connect(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self.subscribed.set()
        client.on_message = self._on_message
        client.will_set(topic(self.device_id, Channel.STATUS),
                        encode(Status(device_id=self.device_id, state="offline")), qos=1, retain=True)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # commands wait in the broker while the device is away
        client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client

    def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            self.connected.clear()
            self.subscribed.clear()
            client.disconnect()
            client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            return
        client.subscribe(topic(self.device_id, Channel.CMD), qos=1)
        client.publish(topic(self.device_id, Channel.STATUS),
                       encode(Status(device_id=self.device_id, state="online", unit=UNIT)), qos=1, retain=True)
        self.connected.set()

    def _publish(self, channel: Channel, payload: bytes) -> None:
        client = self.client
        if client is not None:
            client.publish(topic(self.device_id, channel), payload, qos=1)

    def _ack(self, command_id: str, state: str, detail: str | None = None) -> None:
        ack = CommandAck(device_id=self.device_id, command_id=command_id, state=state, detail=detail)
        self._publish(Channel.CMD_ACK, encode(ack))

    # --- the agent's part ---------------------------------------------------------------------

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        command = decode(msg.topic, bytes(msg.payload)).message
        assert isinstance(command, Command)
        with self._lock:
            if command.id in self._ids:
                return  # a redelivery (at least once): already handled
            self._ids.add(command.id)
            self.seen.commands.append(command.name)
            self.seen.offered_at = self.seen.offered_at or time.monotonic()
        if command.name != "update":
            self._ack(command.id, "rejected", "not simulated")
            return
        self._ack(command.id, "in_progress")
        offer = offer_from(command)

        def work() -> None:
            outcome = self.updater.run(offer, lock=self.counter)
            self._ack(command.id, "succeeded" if outcome == "succeeded" else "failed", outcome)

        worker = threading.Thread(target=work, name=f"update-{self.device_id}", daemon=True)
        self.workers.append(worker)
        worker.start()

    def _report(self, message: UpdateProgress) -> None:
        self.on_report(message)
        self.seen.reports.append(message)
        if message.state == "succeeded":
            self.seen.succeeded_at = time.monotonic()
        self._publish(Channel.UPDATE, encode(message))

    def close(self) -> None:
        if self.counter.dossier_open():
            self.counter.cancel()
        for worker in self.workers:
            worker.join(timeout=60)
        self.disconnect()
        self.counter.close()


@dataclass
class Rig:
    fleet: FleetServer
    devices: dict[str, SimDevice]
    private: Path
    public: Path
    tmp: Path

    def upload(self, name: str, bundle: Path) -> None:
        self.fleet.json("PUT", f"/bundles/{name}", 201, content=bundle.read_bytes())

    def rollout(self, rollout_id: str, bundle: str, phases: list[dict[str, Any]],
                device_ids: list[str] | None = None) -> dict[str, Any]:
        created: dict[str, Any] = self.fleet.json("POST", "/rollouts", 201, json={
            "rollout_id": rollout_id, "bundle": bundle, "version": "0.2.0", "phases": phases,
            "target": {"device_ids": device_ids or DEVICES}, "base_url": self.fleet.url})
        return created

    def progress(self, rollout_id: str) -> dict[str, Any]:
        got: dict[str, Any] = self.fleet.json("GET", f"/rollouts/{rollout_id}")
        return got

    def settle(self, rollout_id: str, timeout: float = 60) -> dict[str, Any]:
        wait_until(lambda: self.progress(rollout_id)["summary"]["status"] in ("completed", "halted"), timeout,
                   f"rollout {rollout_id} to complete or halt")
        return self.progress(rollout_id)


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    config = make_config(tmp_path / "fleet", f"sqlite:///{tmp_path}/fleet.db", mosquitto, client_id="fleet-rollout-e2e")
    fleet = FleetServer(with_pki(config, tmp_path / "fleet"))
    private, public = generate_keys(tmp_path / "keys")
    template = tmp_path / "template"
    bootstrap(template, tmp_path)
    devices: dict[str, SimDevice] = {}
    try:
        for device_id in DEVICES:
            root = tmp_path / "devices" / device_id
            shutil.copytree(template, root, symlinks=True)
            signer = enroll_device(fleet.http, device_id, UNIT, tmp_path / "identities").auth()
            devices[device_id] = SimDevice(device_id, root, public, mosquitto.port, signer, fleet.verify)
            devices[device_id].connect()
        for device in devices.values():
            assert device.subscribed.wait(20), f"{device.device_id} did not subscribe"
        wait_until(lambda: all(d["id"] in devices for d in fleet.json("GET", "/devices"))
                   and len(fleet.json("GET", "/devices")) == len(DEVICES), 30, "the fleet to know the 20 devices")
        ops = fleet_state(fleet.app).services.operations
        assert ops is not None
        assert ops.connected.wait(20), "the fleet's operations driver did not connect"
        yield Rig(fleet, devices, private, public, tmp_path)
    finally:
        for device in devices.values():
            device.close()
        fleet.close()


def _phase_of(progress: dict[str, Any]) -> dict[str, int]:
    return {d: p["phase"] for d, p in progress["devices"].items()}


def test_good_bundle_rolls_through_every_phase(rig: Rig) -> None:
    """Bad input: none in the bundle; the fault looked for is the driver offering a phase before
    the previous one has succeeded (checked with each device's offer and success times)."""
    rig.upload("sohoa-app-0.2.0.bundle", app_bundle(rig.tmp, rig.private, "0.2.0"))
    created = rig.rollout("r-good", "sohoa-app-0.2.0.bundle", PHASES)
    assert [p["devices"] for p in created["summary"]["phases"]] == [1, 3, 16]
    done = rig.settle("r-good")
    assert done["summary"]["status"] == "completed", done["summary"]
    assert done["summary"]["states"] == {"succeeded": 20}
    phase = _phase_of(done)
    for index in (1, 2):
        before = [rig.devices[d].seen for d in DEVICES if phase[d] == index - 1]
        now = [rig.devices[d].seen for d in DEVICES if phase[d] == index]
        last_success = max(s.succeeded_at or float("inf") for s in before)
        first_offer = min(s.offered_at or float("inf") for s in now)
        assert last_success <= first_offer, f"phase {index + 1} was offered before phase {index} succeeded"
    for device in rig.devices.values():
        assert device.seen.commands == ["update"]
        assert SlotStore(device.root).active() == "b" and probe(device.root) == ("0.2.0", True)
    commands = rig.fleet.json("GET", "/commands", params={"rollout_id": "r-good"})
    assert commands["states"] == {"succeeded": 20}


def test_unhealthy_bundle_rolls_back_on_the_canary_and_halts(rig: Rig) -> None:
    """Bad input: a signed bundle whose package fails the devices' smoke test (OK = False)."""
    rig.upload("sohoa-app-0.2.0.bundle", app_bundle(rig.tmp, rig.private, "0.2.0", body="OK = False\n"))
    rig.rollout("r-unhealthy", "sohoa-app-0.2.0.bundle", PHASES)
    done = rig.settle("r-unhealthy")
    summary = done["summary"]
    assert summary["status"] == "halted" and "phase 1" in summary["halt_reason"], summary
    assert summary["states"] == {"rolled_back": 1, "pending": 19}
    phase = _phase_of(done)
    [canary] = [d for d in DEVICES if phase[d] == 0]
    assert "health check 'smoke' failed" in done["devices"][canary]["detail"]
    assert SlotStore(rig.devices[canary].root).active() == "a" and probe(rig.devices[canary].root) == ("0.1.0", True)
    for device_id in DEVICES:
        if device_id == canary:
            continue
        device = rig.devices[device_id]
        assert device.seen.commands == [], f"{device_id} of a later phase was touched"
        assert not SlotStore(device.root).slot_dir("b").exists()
        assert done["devices"][device_id]["state"] == "pending"


@pytest.mark.parametrize("fault", ["flipped_byte", "wrong_key"])
def test_tampered_or_foreign_bundle_is_refused_by_every_device(rig: Rig, fault: str) -> None:
    """Bad input: the good bundle with one byte of its wheel flipped; a bundle signed with a key
    the devices do not trust. One phase of 100% that halts only when every device failed, so
    every one of the 20 devices is offered it and must refuse it."""
    if fault == "flipped_byte":
        good = app_bundle(rig.tmp, rig.private, "0.2.0")
        bundle = flip_byte(good, good.read_bytes().index(b"PK\x03\x04") + 40)
    else:
        other_private, _ = generate_keys(rig.tmp / "other-keys")
        bundle = app_bundle(rig.tmp, other_private, "0.2.0")
    rig.upload("sohoa-app-0.2.0.bundle", bundle)
    rig.rollout(f"r-{fault}", "sohoa-app-0.2.0.bundle", [{"percent": 100, "error_threshold": 1.0}])
    done = rig.settle(f"r-{fault}")
    assert done["summary"]["status"] == "halted" and done["summary"]["states"] == {"failed": 20}, done["summary"]
    for device_id, device in rig.devices.items():
        states = [r.state for r in device.seen.reports]
        assert states[-1] == "failed" and "installing" not in states, (device_id, states)
        assert (done["devices"][device_id]["detail"] or "").startswith("bundle refused"), done["devices"][device_id]
        store = SlotStore(device.root)
        assert store.active() == "a" and not store.slot_dir("b").exists()
        assert not list((device.root / "downloads").glob("*.bundle"))


def test_cancelled_offer_waiting_in_the_broker_is_not_installed(rig: Rig) -> None:
    """Bad input: the fleet's offer reaches the broker while the device is offline; the rollout
    is cancelled; the device comes back, receives the stale offer from its persistent session,
    and must install nothing (the fleet answers 410 for the withdrawn offer)."""
    device = rig.devices["kiosk-0007"]
    device.disconnect()
    ops = fleet_state(rig.fleet.app).services.operations
    assert ops is not None
    rig.upload("sohoa-app-0.2.0.bundle", app_bundle(rig.tmp, rig.private, "0.2.0"))
    rig.rollout("r-cancel", "sohoa-app-0.2.0.bundle", [{"percent": 100}], device_ids=["kiosk-0007"])
    ops.tick()  # published (QoS 1, acknowledged by the broker) into the device's session
    [offer] = rig.fleet.json("GET", "/commands", params={"rollout_id": "r-cancel"})["commands"]
    assert offer["state"] == "queued" and offer["delivered_at"] is None
    rig.fleet.json("POST", "/rollouts/r-cancel/cancel")
    assert rig.fleet.json("GET", f"/commands/{offer['id']}")["state"] == "rejected"

    device.connect()
    wait_until(lambda: any(r.state == "failed" for r in device.seen.reports), 30,
               "the returning device to act on the queued offer and give up")
    assert device.seen.commands == ["update"], "the broker did not hand the stale offer over: nothing was tested"
    failed = [r for r in device.seen.reports if r.state == "failed"][-1]
    assert "withdrew" in (failed.detail or "") and "cancelled" in (failed.detail or ""), failed.detail
    assert [r.state for r in device.seen.reports] == ["downloading", "failed"]
    store = SlotStore(device.root)
    assert store.active() == "a" and not store.slot_dir("b").exists() and probe(device.root) == ("0.1.0", True)
    assert not list((device.root / "downloads").glob("*"))
    assert rig.fleet.json("GET", f"/commands/{offer['id']}")["state"] == "rejected"  # the late ack changes nothing
    assert rig.progress("r-cancel")["summary"]["status"] == "cancelled"


def test_offer_cancelled_while_the_device_waits_to_install_is_not_installed(rig: Rig) -> None:
    """Bad input: the clerk opens a dossier just as the bundle is verified, so the device holds the
    downloaded bundle and waits (reported ``waiting``); the rollout is cancelled meanwhile. When the
    dossier closes the device asks the fleet again, hears 410, and installs nothing."""
    device = rig.devices["kiosk-0008"]

    def open_a_dossier(message: UpdateProgress) -> None:
        if message.state == "verifying" and not device.counter.dossier_open():
            device.counter.open()

    device.on_report = open_a_dossier
    rig.upload("sohoa-app-0.2.0.bundle", app_bundle(rig.tmp, rig.private, "0.2.0"))
    rig.rollout("r-late-cancel", "sohoa-app-0.2.0.bundle", [{"percent": 100}], device_ids=["kiosk-0008"])

    def state() -> dict[str, Any]:
        progress: dict[str, Any] = rig.progress("r-late-cancel")["devices"]["kiosk-0008"]
        return progress

    wait_until(lambda: state()["state"] == "waiting", 30, "the device to wait for the dossier")
    assert state()["detail"] == "a dossier is open at the counter"
    rig.fleet.json("POST", "/rollouts/r-late-cancel/cancel")
    device.counter.cancel()  # the clerk is done
    wait_until(lambda: device.seen.reports[-1].state == "failed", 30, "the device to give the update up")
    states = [r.state for r in device.seen.reports]
    assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s] == [
        "downloading", "verifying", "waiting", "failed"]
    reason = device.seen.reports[-1].detail or ""
    assert "withdrew" in reason and "cancelled" in reason, reason
    store = SlotStore(device.root)
    assert store.active() == "a" and not store.slot_dir("b").exists() and probe(device.root) == ("0.1.0", True)
    assert not list((device.root / "downloads").glob("*.bundle"))
    assert not device.counter.snapshot().update_held and device.counter.open().state == "open"
