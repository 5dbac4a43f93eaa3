"""A small PKI (fleet CA, broker and ingest certificates, two enrolled kiosks) and a real
mosquitto running the TLS configuration that ``provisioning.broker`` generates."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning.broker import BrokerConfig, write_broker_config
from provisioning.ca import FLEET_INGEST, CertificateAuthority
from provisioning.identity import DeviceIdentity
from tests.services import ConfiguredMosquitto, free_port

TIMEOUT = 10.0


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    broker_cert: Path
    broker_key: Path
    ingest_cert: Path
    ingest_key: Path
    devices: dict[str, DeviceIdentity]
    crl: Path

    def enroll(self, device_id: str) -> DeviceIdentity:
        ident = DeviceIdentity(self.root / "devices" / device_id, device_id)
        issued = self.ca.sign_device(ident.csr(), device_id)
        ident.store(issued.pem, self.ca.certificate_pem, broker_url="mqtts://127.0.0.1:8883")
        self.devices[device_id] = ident
        return ident


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.create(tmp_path / "ca")
    broker_cert, broker_key = ca.issue_server(["localhost", "127.0.0.1"], tmp_path / "broker", name="broker")
    ingest_cert, ingest_key = ca.issue_service(FLEET_INGEST, tmp_path / "ingest")
    crl = ca.write_crl(tmp_path / "broker" / "crl.pem", [])
    p = Pki(tmp_path, ca, broker_cert, broker_key, ingest_cert, ingest_key, {}, crl)
    p.enroll("kiosk-a")
    p.enroll("kiosk-b")
    return p


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path) -> Iterator[ConfiguredMosquitto]:
    """mosquitto with the generated mutual-TLS config, every packet logged."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    cfg = BrokerConfig(
        tls_port=free_port(), tls_bind="127.0.0.1", cafile=pki.ca.cert_path or Path(), certfile=pki.broker_cert,
        keyfile=pki.broker_key, crlfile=pki.crl, acl_file=workdir / "acl", persistence_dir=workdir,
        log_file=workdir / "mosquitto.log", log_debug=True,
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read our 0600 keys.
        run_as_user="root" if os.geteuid() == 0 else None)
    conf, _ = write_broker_config(cfg, workdir / "mosquitto.conf")
    broker = ConfiguredMosquitto(conf, cfg.tls_port, workdir / "mosquitto.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Client:
    """A paho client that records what it receives and the reason codes it gets back."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    got: threading.Condition = field(default_factory=threading.Condition)
    pubacks: dict[int, int] = field(default_factory=dict)
    subacks: dict[int, list[int]] = field(default_factory=dict)

    def wait_message(self, topic: str, payload: bytes, timeout: float = TIMEOUT) -> None:
        with self.got:
            if not self.got.wait_for(lambda: (topic, payload) in self.messages, timeout):
                raise TimeoutError(f"{topic} {payload!r} not received; got {self.messages}")

    def wait_puback(self, mid: int, timeout: float = TIMEOUT) -> int:
        with self.got:
            if not self.got.wait_for(lambda: mid in self.pubacks, timeout):
                raise TimeoutError(f"no PUBACK for mid {mid}")
            return self.pubacks[mid]

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1 publish; returns the PUBACK reason code: 0 accepted, 135 not authorized
        (16, "accepted but no subscriber", is reported as 0)."""
        info = self.client.publish(topic, payload, qos=1)
        rc = self.wait_puback(info.mid)
        return 0 if rc == 16 else rc

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        with self.got:
            if not self.got.wait_for(lambda: mid in self.subacks, TIMEOUT):
                raise TimeoutError(f"no SUBACK for {topic}")
            return self.subacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_client(port: int, client_id: str, ca: Path, cert: Path | None, key: Path | None, *,
                session_expiry_s: int | None = None) -> Client:
    """Connect over TLS (client certificate optional) and wait until CONNACK or a refusal;
    ``session_expiry_s``: resume (or start) a persistent session kept that long."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
    rec = Client(c)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None) -> None:
        if not rc.is_failure:
            rec.connected.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, _rc: ReasonCode, _p: Properties | None) -> None:
        rec.disconnected.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with rec.got:
            rec.messages.append((msg.topic, bytes(msg.payload)))
            rec.got.notify_all()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: Properties) -> None:
        with rec.got:
            rec.pubacks[mid] = rc.value
            rec.got.notify_all()

    def on_subscribe(_c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: Properties) -> None:
        with rec.got:
            rec.subacks[mid] = [r.value for r in rcs]
            rec.got.notify_all()

    c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
    c.on_publish, c.on_subscribe = on_publish, on_subscribe
    if session_expiry_s is None:
        c.connect_async("127.0.0.1", port)
    else:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
        c.connect_async("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    return rec


def connect(port: int, client_id: str, ca: Path, cert: Path | None, key: Path | None, *,
            session_expiry_s: int | None = None) -> Client:
    """A connected client, or TimeoutError."""
    rec = make_client(port, client_id, ca, cert, key, session_expiry_s=session_expiry_s)
    if not rec.connected.wait(TIMEOUT):
        rec.close()
        raise TimeoutError(f"{client_id} did not connect")
    return rec
