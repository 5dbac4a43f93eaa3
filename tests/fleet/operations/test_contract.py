"""The fleet checks what an admin sends a device against the wire contract (:mod:`protocol`)
before storing or publishing it: a mistyped command argument or desired setting is a 422 naming
the field, and nothing reaches the broker (a real subscriber on the device's topics sees only
the valid ones); the valid ones still go through."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from protocol.messages import Command, ConfigDesired, Status, decode, encode
from protocol.topics import Channel, topic
from tests.fleet.conftest import Publisher, state_of, wait_for
from tests.services import Mosquitto

DEVICE = "kiosk-contract"


class DeviceTopics:
    """A subscriber on what the fleet publishes to one device (its ``cmd`` and ``config/desired``)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.received: list[Command | ConfigDesired] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([(topic(DEVICE, Channel.CMD), 1), (topic(DEVICE, Channel.CONFIG_DESIRED), 1)])
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        decoded = decode(message.topic, bytes(message.payload)).message
        assert isinstance(decoded, Command | ConfigDesired)
        with self._changed:
            self.received.append(decoded)
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[Command | ConfigDesired]], bool],
                 timeout: float = 15) -> list[Command | ConfigDesired]:
        with self._changed:
            assert self._changed.wait_for(lambda: done(self.received), timeout), self.received
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device_topics(mosquitto: Mosquitto) -> Any:
    topics = DeviceTopics(mosquitto)
    try:
        yield topics
    finally:
        topics.close()


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [".".join(str(p) for p in problem["loc"]) for problem in response.json()["detail"]]


def test_mistyped_arguments_and_settings_are_refused_before_anything_is_published(
    client: TestClient, publisher: Publisher, device_topics: DeviceTopics
) -> None:
    """Bad input: an argument ``reboot`` does not take (``forse``), one of the wrong type, a
    setting key that does not exist (``scan.dpii``), a value out of range (``scan.dpi`` 100)."""
    publisher.publish(topic(DEVICE, Channel.STATUS), encode(Status(device_id=DEVICE, state="online")), retain=True)
    wait_for(client, lambda: client.get(f"/api/v1/devices/{DEVICE}").status_code == 200)
    commands = f"/api/v1/devices/{DEVICE}/commands"

    assert _fields(client.post(commands, json={"name": "reboot", "args": {"forse": True}})) == ["body.args.forse"]
    assert _fields(client.post(commands, json={"name": "test_scan", "args": {"max_pages": "many"}})) == [
        "body.args.max_pages"]
    refused = client.put(f"/api/v1/settings/device/{DEVICE}", json={"settings": {"scan": {"dpii": 400}}})
    assert _fields(refused) == ["body.settings.scan.dpii"]
    assert "400" not in refused.text  # the value sent is never echoed
    assert _fields(client.put("/api/v1/settings/fleet/default", json={"settings": {"scan": {"dpi": 100}}})) == [
        "body.settings.scan.dpi"]
    assert client.get(commands).json() == []  # nothing queued
    assert client.get("/api/v1/settings/fleet/default").status_code == 404  # nothing stored

    # The valid ones go through, and are all the broker carries.
    queued = client.post(commands, json={"name": "reboot", "args": {"force": True}})
    assert queued.status_code == 201, queued.text
    layer = client.put(f"/api/v1/settings/device/{DEVICE}", json={"settings": {"scan": {"dpi": 400}}})
    assert layer.status_code == 200, layer.text
    ops = state_of(client).services.operations
    assert ops is not None
    ops.tick()  # publish now rather than on the driver's next tick (both are fine)
    received = device_topics.wait_for(lambda got: any(isinstance(m, Command) for m in got) and any(
        isinstance(m, ConfigDesired) and m.settings == {"scan": {"dpi": 400}} for m in got))
    sent_commands = [m for m in received if isinstance(m, Command)]
    assert [(c.name, c.args) for c in sent_commands] == [("reboot", {"force": True})]
    # Desired settings: the defaults the device got on coming online, then the valid layer only.
    desired = [m.settings for m in received if isinstance(m, ConfigDesired)]
    assert desired[-1] == {"scan": {"dpi": 400}} and all(d in ({}, {"scan": {"dpi": 400}}) for d in desired)
