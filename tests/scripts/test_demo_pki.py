"""``make demo``'s PKI and fleet config: the fleet's operations publisher (commands, desired
settings) has its own TLS identity on the demo's mutual-TLS broker, also when the PKI comes from an
earlier demo that had only the ingest's (issue #7 follow-up: without it, commands and settings
never reached the demo kiosk).

Fault tried: a PKI left by an earlier demo with only ``fleet.ingest`` (the demo re-runs
``provisioning init`` without ``--fresh``); what is checked is that the real operations publisher,
built from the demo's ``fleet.yaml``, connects to the demo's broker and that a command it publishes
to the kiosk's topic is delivered (read back with the ingest's identity)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import sessionmaker

from fleet.config import load as load_fleet_config
from fleet.operations.service import Operations
from protocol.topics import Channel, topic
from provisioning.cli import main as provisioning_main
from scripts import demo
from tests.services import ConfiguredMosquitto, free_port


@pytest.fixture
def demo_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The demo's var/demo and broker port moved under tmp_path; yields the port."""
    port = free_port()
    monkeypatch.setattr(demo, "VAR", tmp_path / "demo")
    monkeypatch.setattr(demo, "PKI", tmp_path / "demo" / "pki")
    monkeypatch.setattr(demo, "MQTT_PORT", port)
    yield port


def test_a_rerun_demo_gives_the_operations_publisher_its_identity(demo_dirs: int) -> None:
    port = demo_dirs
    # An earlier demo's PKI: the CA and the ingest's identity only.
    earlier = ["init", str(demo.PKI), "--tls-port", str(port), "--bind", "127.0.0.1"]
    if os.geteuid() == 0:
        earlier += ["--run-as", "root"]  # pytest's tmp dirs are 0700 root
    assert provisioning_main(earlier) == 0
    assert not (demo.PKI / "ingest" / "fleet.ops.crt").exists()
    ca_key_before = (demo.PKI / "ca" / "ca.key").read_bytes()

    demo._write_configs(60.0)
    conf = demo._provision()
    assert (demo.PKI / "ca" / "ca.key").read_bytes() == ca_key_before  # the same CA: enrolled kiosks stay valid
    config = load_fleet_config(demo.VAR / "fleet.yaml")
    broker = config.broker
    assert broker.ops_cert_file is not None and broker.ops_cert_file.exists()
    assert broker.ops_key_file is not None and broker.ops_key_file.stat().st_mode & 0o077 == 0
    assert broker.ops_cert_file != broker.cert_file

    received = threading.Event()
    with ConfiguredMosquitto(conf, port, demo.PKI / "broker" / "mosquitto.log"):
        reader = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=broker.client_id, protocol=mqtt.MQTTv5)
        assert broker.ca_file is not None
        reader.tls_set(ca_certs=str(broker.ca_file), certfile=str(broker.cert_file), keyfile=str(broker.key_file))
        subscribed = threading.Event()

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic == topic(demo.DEVICE_ID, Channel.CMD) and msg.payload == b"{}":
                received.set()

        reader.on_message = on_message
        reader.on_subscribe = lambda *_a: subscribed.set()
        reader.on_connect = lambda c, *_a: c.subscribe(topic(demo.DEVICE_ID, Channel.CMD), qos=1)
        reader.connect("127.0.0.1", port)
        reader.loop_start()
        ops = Operations(config, sessionmaker())  # only its MQTT client is used here: no database
        try:
            assert subscribed.wait(10), "the ingest identity could not subscribe"
            assert ops.can_connect, "the operations publisher has no TLS identity in the demo's config"
            ops.client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
            ops.client.loop_start()
            assert ops.connected.wait(10), "the operations publisher was refused by the demo's broker"
            assert ops._publish(demo.DEVICE_ID, Channel.CMD, b"{}", retain=False)
            assert received.wait(10), "the command did not reach the kiosk's topic"
        finally:
            ops.client.disconnect()
            ops.client.loop_stop()
            reader.disconnect()
            reader.loop_stop()
