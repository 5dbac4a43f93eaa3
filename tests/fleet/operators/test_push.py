"""The unit's operators pushed to its devices, through the suite's real mosquitto: the
operations driver publishes each device's retained ``operators`` list (hashes only, the ones
the device checks), again when an operator is retired, and only the operators of the device's
own unit."""

from __future__ import annotations

import queue
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from fleet.models import Device
from fleet.operations.service import Operations
from fleet.operators.models import CounterOperator
from protocol.messages import OperatorList, decode
from protocol.secrets import check_secret, hash_secret
from protocol.topics import Channel, topic
from tests.fleet.conftest import make_config
from tests.services import Mosquitto

NOW = datetime(2026, 1, 10, 3, tzinfo=UTC)


def _listen(port: int, device_id: str) -> tuple[mqtt.Client, queue.Queue[OperatorList]]:
    got: queue.Queue[OperatorList] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}", protocol=mqtt.MQTTv5)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        message = decode(msg.topic, bytes(msg.payload)).message
        assert isinstance(message, OperatorList)
        got.put(message)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic(device_id, Channel.OPERATORS), qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got


def test_each_device_gets_its_units_operators(tmp_path: Path, db_url: str, sessions: sessionmaker[Session],
                                             mosquitto: Mosquitto) -> None:
    with sessions.begin() as session:
        for device, unit in (("kiosk-a", "99001"), ("kiosk-c", "99003")):
            session.add(Device(id=device, unit_code=unit, first_seen=NOW, last_seen=NOW))
        for op_id, unit, kind in (("op-1", "99001", "unit_staff"), ("op-2", "99001", "postal_staff"),
                                  ("op-3", "99003", "unit_staff")):
            session.add(CounterOperator(id=op_id, unit_code=unit, kind=kind, label=op_id,
                                        pin_hash=hash_secret(f"{op_id}-pin"), card_hash=None, active=True,
                                        created_at=NOW, updated_at=NOW))
    operations = Operations(make_config(tmp_path, db_url, mosquitto), sessions)
    operations.start()
    listener, got = _listen(mosquitto.port, "kiosk-a")
    try:
        assert operations.connected.wait(10)
        operations.tick()
        first = got.get(timeout=10)
        assert [(o.id, o.kind) for o in first.operators] == [("op-1", "unit_staff"), ("op-2", "postal_staff")]
        assert first.operators[0].pin_hash is not None and check_secret("op-1-pin", first.operators[0].pin_hash)
        operations.tick()  # nothing changed: nothing sent again
        assert got.empty()
        with sessions.begin() as session:
            row = session.get(CounterOperator, "op-2")
            assert row is not None
            row.active, row.updated_at = False, datetime(2026, 1, 11, tzinfo=UTC)
        operations.operators_changed()
        operations.tick()
        second = got.get(timeout=10)
        assert [o.id for o in second.operators] == ["op-1"] and second.version > first.version
    finally:
        listener.loop_stop()
        listener.disconnect()
        operations.stop()
    # retained: a device subscribing later gets its list at once
    late, late_got = _listen(mosquitto.port, "kiosk-c")
    try:
        assert [o.id for o in late_got.get(timeout=10).operators] == ["op-3"]
    finally:
        late.loop_stop()
        late.disconnect()
