"""20 simulated kiosks on a real mosquitto, each with a real updater (its own A/B slots) fetching
from a loopback HTTP server; a fleet-side loop drives them with ``fleet.rollouts``: commands go
out on ``cmd``, ``UpdateProgress`` comes back on ``update``. A good bundle rolls through every
phase; a bundle whose health check fails is rolled back on the canary and the rollout halts with
no later-phase device touched; a tampered bundle is refused by the canary and never installed.

This is what the agent and the fleet will do once wired (next session), with stand-ins for both."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.update_slots import SlotStore
from device.updater import UpdateOffer, Updater
from fleet.rollouts import PhaseSpec, Rollout
from images.bundle import generate_keys
from protocol.messages import Command, UpdateProgress, decode, encode
from protocol.topics import Channel, topic
from tests.images.device_harness import Recorder, bootstrap, config, probe
from tests.images.helpers import RangeServer, ServedFile, app_bundle, flip_byte, range_server
from tests.services import Mosquitto

DEVICES = [f"kiosk-{i:04d}" for i in range(1, 21)]
PHASES = [PhaseSpec(percent=5), PhaseSpec(percent=20), PhaseSpec(percent=100, success_threshold=0.9)]


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


class SimDevice:
    """A kiosk reduced to what updating needs: its MQTT link and its updater."""

    def __init__(self, device_id: str, root: Path, pub: Path, port: int) -> None:
        self.device_id, self.root = device_id, root
        self.commands: list[str] = []
        self.connected = threading.Event()
        self.client = _client(device_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.restarts = Recorder()
        self.updater = Updater(
            config(root, pub),
            device_id=device_id,
            current_version="0.1.0",
            report=self._report,
            restart=self.restarts.restart,
            health_checks={"broker": self.client.is_connected, "smoke": lambda: (probe(root) or ("", False))[1]},
        )
        self.workers: list[threading.Thread] = []
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None) -> None:
        client.subscribe(topic(self.device_id, Channel.CMD), qos=1)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = decode(msg.topic, bytes(msg.payload)).message
        assert isinstance(command, Command)
        self.commands.append(command.name)
        if command.name == "update":
            worker = threading.Thread(target=self.updater.run, args=(UpdateOffer.from_command(command),))
            self.workers.append(worker)
            worker.start()

    def _report(self, message: UpdateProgress) -> None:
        self.client.publish(topic(self.device_id, Channel.UPDATE), encode(message), qos=1)

    def close(self) -> None:
        for worker in self.workers:
            worker.join(timeout=60)
        self.client.disconnect()  # first: it wakes the network thread, so loop_stop returns at once
        self.client.loop_stop()


class FleetLoop:
    """The fleet's part: progress in, rollout decisions, update commands out."""

    def __init__(self, rollout: Rollout, offer: dict[str, object], port: int) -> None:
        self.rollout, self.offer = rollout, offer
        self.lock = threading.Lock()
        self.settled = threading.Event()
        self.client = _client("fleet-test")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("sohoa/v1/+/update", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        progress = decode(msg.topic, bytes(msg.payload)).message
        assert isinstance(progress, UpdateProgress)
        with self.lock:
            self.rollout.record(progress.device_id, progress.state, datetime.now(UTC), progress.detail)
            self._step()

    def _step(self) -> None:
        step = self.rollout.step(datetime.now(UTC))
        for device_id in step.offer:
            command = Command(device_id=device_id, name="update", deadline=datetime.now(UTC) + timedelta(hours=1),
                              args=self.offer)
            self.client.publish(topic(device_id, Channel.CMD), encode(command), qos=1)
        if self.rollout.status in ("completed", "halted"):
            self.settled.set()

    def start(self) -> None:
        with self.lock:
            self.rollout.start()
            self._step()

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes the network thread, so loop_stop returns at once
        self.client.loop_stop()


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with range_server() as srv:
        yield srv


def _fleet(tmp_path: Path, pub: Path, port: int) -> list[SimDevice]:
    template = tmp_path / "template"
    bootstrap(template, tmp_path)
    devices = []
    for device_id in DEVICES:
        root = tmp_path / "devices" / device_id
        shutil.copytree(template, root, symlinks=True)
        devices.append(SimDevice(device_id, root, pub, port))
    for device in devices:
        assert device.connected.wait(10)
    return devices


@pytest.mark.parametrize("case", ["good", "unhealthy", "tampered"])
def test_rollout_over_mqtt_with_twenty_devices(tmp_path: Path, mosquitto: Mosquitto, server: RangeServer,
                                               case: str) -> None:
    """Bad input: a bundle whose package fails the smoke test (OK = False); a bundle with one
    byte of its wheel flipped."""
    private, pub = generate_keys(tmp_path / "keys")
    bundle = app_bundle(tmp_path, private, "0.2.0", body="OK = False\n" if case == "unhealthy" else "OK = True\n")
    if case == "tampered":
        bundle = flip_byte(bundle, bundle.read_bytes().index(b"PK\x03\x04") + 40)
    server.files["/bundle"] = ServedFile(bundle.read_bytes())
    devices = _fleet(tmp_path, pub, mosquitto.port)
    rollout = Rollout.create(f"r-{case}", DEVICES, PHASES)
    loop = FleetLoop(rollout, {"rollout_id": rollout.rollout_id, "url": f"{server.base_url}/bundle",
                               "version": "0.2.0"}, mosquitto.port)
    try:
        loop.start()
        assert loop.settled.wait(120), rollout.summary()
    finally:
        loop.close()
        for device in devices:
            device.close()
    by_id = {d.device_id: d for d in devices}
    canary = rollout.plan[0]
    later = [d for ids in rollout.plan[1:] for d in ids]
    if case == "good":
        assert rollout.status == "completed" and rollout.summary()["states"] == {"succeeded": 20}
        for device in devices:
            assert SlotStore(device.root).active() == "b" and probe(device.root) == ("0.2.0", True)
        return
    assert rollout.status == "halted"
    expected = "rolled_back" if case == "unhealthy" else "failed"
    assert {rollout.devices[d].state for d in canary} == {expected}
    for device_id in canary:
        store = SlotStore(by_id[device_id].root)
        assert store.active() == "a" and probe(by_id[device_id].root) == ("0.1.0", True)
        if case == "tampered":
            assert not store.slot_dir("b").exists()  # refused before anything was written
    for device_id in later:
        assert by_id[device_id].commands == [], f"{device_id} of a later phase was touched"
        assert rollout.devices[device_id].state == "pending"
        assert not SlotStore(by_id[device_id].root).slot_dir("b").exists()
