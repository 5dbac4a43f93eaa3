"""A real mosquitto running the generated mutual-TLS configuration: each device speaks only for
itself, revoked and foreign certificates are refused."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest

from protocol.messages import MAX_PAYLOAD_BYTES
from provisioning.broker import PACKET_OVERHEAD_BYTES, AclViolation, scan_log
from provisioning.ca import CertificateAuthority, RevokedCertificate, reload_broker
from provisioning.identity import DeviceIdentity, probe_tls
from tests.provisioning.conftest import TIMEOUT, Client, Pki, connect, make_client
from tests.services import ConfiguredMosquitto

ALL = "$share/ingest/sohoa/v1/+/#"


def _ingest(pki: Pki, broker: ConfiguredMosquitto) -> Client:
    ingest = connect(broker.port, "fleet.ingest", pki.ca.cert_path or Path(), pki.ingest_cert, pki.ingest_key)
    assert ingest.subscribe(ALL) == [1]
    return ingest


def _device(pki: Pki, broker: ConfiguredMosquitto, device_id: str, client_id: str | None = None) -> Client:
    files = pki.devices[device_id].tls_files()
    return connect(broker.port, client_id or device_id, files.ca_certs, files.certfile, files.keyfile)


def test_device_cannot_publish_as_another(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: kiosk-a publishes on every channel of kiosk-b, and on a topic outside the tree.
    The ingest (fleet identity, shared subscription on every device) must never see them, the
    broker answers 'not authorized' and logs each denial."""
    ingest = _ingest(pki, tls_broker)
    a = _device(pki, tls_broker, "kiosk-a")
    try:
        for channel in ("status", "telemetry", "event", "cmd/ack", "config/reported", "update"):
            assert a.publish(f"sohoa/v1/kiosk-b/{channel}", b"forged") == 135
        assert a.publish("elsewhere/x", b"forged") == 135
        # kiosk-a may publish its own events: once this arrives, anything sent before it would have too.
        assert a.publish("sohoa/v1/kiosk-a/event", b"mine") == 0
        ingest.wait_message("sohoa/v1/kiosk-a/event", b"mine")
        assert all(payload != b"forged" for _, payload in ingest.messages)
        tls_broker.wait_log("Denied PUBLISH from kiosk-a", 7)
        log = tls_broker.log_text()
        assert "Denied PUBLISH from kiosk-a (d0, q1, r0, m1, 'sohoa/v1/kiosk-b/status'" in log
        violations = scan_log(log.splitlines())
        assert AclViolation("kiosk-a", "publish", "sohoa/v1/kiosk-b/event") in violations
        assert not [v for v in violations if v.topic.startswith("sohoa/v1/kiosk-a/")]
    finally:
        a.close()
        ingest.close()


def test_device_cannot_subscribe_to_another(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: kiosk-a subscribes to kiosk-b's command topic, to every device's commands and to
    '#'. The fleet then sends kiosk-b a command and a retained desired config: kiosk-a receives
    neither, only its own command, and the subscriptions stand in the log as violations."""
    ingest = _ingest(pki, tls_broker)
    a = _device(pki, tls_broker, "kiosk-a")
    b = _device(pki, tls_broker, "kiosk-b")
    try:
        assert b.subscribe("sohoa/v1/kiosk-b/cmd") == [1]
        retained = ingest.client.publish("sohoa/v1/kiosk-b/config/desired", b"retained-config", qos=1, retain=True)
        assert ingest.wait_puback(retained.mid) in (0, 16)  # held by the broker before kiosk-a subscribes
        for sub in ("sohoa/v1/kiosk-b/cmd", "sohoa/v1/+/cmd", "sohoa/v1/kiosk-b/config/desired", "#"):
            a.subscribe(sub)  # mosquitto grants the SUBACK but filters every delivery by the ACL
        assert ingest.publish("sohoa/v1/kiosk-b/cmd", b"for-b") == 0
        b.wait_message("sohoa/v1/kiosk-b/cmd", b"for-b")
        assert a.subscribe("sohoa/v1/kiosk-a/cmd") == [1]
        assert ingest.publish("sohoa/v1/kiosk-a/cmd", b"for-a") == 0
        a.wait_message("sohoa/v1/kiosk-a/cmd", b"for-a")
        assert {t for t, _ in a.messages} == {"sohoa/v1/kiosk-a/cmd"}
        log = tls_broker.log_text()
        assert "kiosk-a 1 sohoa/v1/kiosk-b/cmd" in log
        violations = scan_log(log.splitlines())
        assert AclViolation("kiosk-a", "subscribe", "sohoa/v1/kiosk-b/cmd") in violations
        assert AclViolation("kiosk-a", "subscribe", "#") in violations
        assert not [v for v in violations if v.client == "kiosk-b" or v.topic == "sohoa/v1/kiosk-a/cmd"]
    finally:
        for c in (a, b, ingest):
            c.close()


def test_ingest_cannot_forge_device_messages(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: the fleet's own identity publishes a status 'as' kiosk-b. Its ACL lets it send
    only commands and desired config."""
    ingest = _ingest(pki, tls_broker)
    try:
        assert ingest.publish("sohoa/v1/kiosk-b/status", b"forged") == 135
        assert ingest.publish("sohoa/v1/kiosk-b/cmd", b"ok") == 0
        ingest.wait_message("sohoa/v1/kiosk-b/cmd", b"ok")
        assert ("sohoa/v1/kiosk-b/status", b"forged") not in ingest.messages
    finally:
        ingest.close()


def test_client_id_cannot_take_over_another_session(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: kiosk-a connects with client id 'kiosk-b' (which would kick kiosk-b off and take
    its persistent session). The broker forces client id = certificate CN: kiosk-b stays on."""
    b = _device(pki, tls_broker, "kiosk-b")
    a = _device(pki, tls_broker, "kiosk-a", client_id="kiosk-b")
    try:
        assert a.publish("sohoa/v1/kiosk-a/event", b"still-a") == 0
        assert not b.disconnected.is_set()
        assert b.publish("sohoa/v1/kiosk-b/event", b"still-b") == 0
        assert "as kiosk-a (" in tls_broker.log_text()
    finally:
        a.close()
        b.close()


def test_revoked_certificate_refused_after_crl_reload(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: kiosk-b's certificate after the fleet revoked it. Once the CRL is rewritten and
    the broker gets SIGHUP, the TLS handshake fails with 'certificate revoked' (what the device
    shows instead of retrying), and MQTT never connects; kiosk-a is unaffected."""
    ident_b = pki.devices["kiosk-b"]
    assert probe_tls("127.0.0.1", tls_broker.port, ident_b.ssl_context(), server_hostname="localhost",
                     settle=0.3) == "ok"
    first = _device(pki, tls_broker, "kiosk-b")
    first.close()

    serial = ident_b.certificate().serial_number
    pki.ca.write_crl(pki.crl, [RevokedCertificate(serial, dt.datetime.now(dt.UTC))])
    assert tls_broker.proc is not None
    reloads = tls_broker.log_text().count("Reloading config")
    reload_broker(tls_broker.proc.pid)  # what the fleet calls after a revocation
    tls_broker.wait_log("Reloading config", reloads + 1)

    assert probe_tls("127.0.0.1", tls_broker.port, ident_b.ssl_context(), server_hostname="localhost") == "revoked"
    files = ident_b.tls_files()
    refused = make_client(tls_broker.port, "kiosk-b", files.ca_certs, files.certfile, files.keyfile)
    try:
        assert refused.disconnected.wait(TIMEOUT)
        assert not refused.connected.is_set()
    finally:
        refused.close()
    assert "certificate verify failed" in tls_broker.log_text()
    a = _device(pki, tls_broker, "kiosk-a")
    a.close()


def test_unknown_ca_refused(pki: Pki, tls_broker: ConfiguredMosquitto, tmp_path: Path) -> None:
    """Bad input: a certificate for 'kiosk-a' signed by another CA (same subject, right CN),
    and a TLS client with no certificate at all."""
    rogue_ca = CertificateAuthority.create(tmp_path / "rogue-ca", name="Sohoa Fleet CA")
    rogue = DeviceIdentity(tmp_path / "rogue", "kiosk-a")
    rogue.store(rogue_ca.sign_device(rogue.csr(), "kiosk-a").pem, rogue_ca.certificate_pem)
    ctx = rogue.ssl_context()
    ctx.load_verify_locations(str(pki.ca.cert_path))  # the rogue trusts the real broker, to get that far
    assert probe_tls("127.0.0.1", tls_broker.port, ctx, server_hostname="localhost") == "unknown_ca"
    refused = make_client(tls_broker.port, "kiosk-a", pki.ca.cert_path or Path(), rogue.cert_path, rogue.key_path)
    try:
        assert refused.disconnected.wait(TIMEOUT)
        assert not refused.connected.is_set()
    finally:
        refused.close()

    bare = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    assert probe_tls("127.0.0.1", tls_broker.port, bare, server_hostname="localhost") == "bad_certificate"
    anonymous = make_client(tls_broker.port, "nobody", pki.ca.cert_path or Path(), None, None)
    try:
        assert anonymous.disconnected.wait(TIMEOUT)
        assert not anonymous.connected.is_set()
    finally:
        anonymous.close()
    assert "certificate verify failed" in tls_broker.log_text()


@pytest.mark.parametrize("rights", ["channels", "own_tree"])
def test_acl_rendering_scopes_devices(rights: str) -> None:
    """Bad input: a device id in ingest_identities (would hand a device the fleet's rights)."""
    from provisioning.broker import BrokerConfig, render_acl, render_mosquitto_conf

    base = {"cafile": Path("ca"), "certfile": Path("c"), "keyfile": Path("k"), "crlfile": Path("crl"),
            "acl_file": Path("acl"), "device_rights": rights}
    cfg = BrokerConfig.model_validate(base)
    acl = render_acl(cfg)
    assert "user fleet.ingest" in acl
    assert "topic read sohoa/v1/+/#" in acl
    device_lines = [line for line in acl.splitlines() if line.startswith("pattern")]
    assert device_lines and all("sohoa/v1/%u/" in line for line in device_lines)
    conf = render_mosquitto_conf(cfg)
    for line in ("require_certificate true", "use_identity_as_username true", "crlfile crl",
                 "allow_anonymous false", "use_username_as_clientid true"):
        assert line in conf
    assert "allow_anonymous true" not in conf
    demo = render_mosquitto_conf(BrokerConfig.model_validate({**base, "plain_loopback_port": 1883}))
    assert "listener 1883 127.0.0.1\nprotocol mqtt\nallow_anonymous true" in demo
    with pytest.raises(ValueError, match="service name"):
        BrokerConfig.model_validate({**base, "ingest_identities": ["kiosk-a"]})
    with pytest.raises(ValueError, match="extra"):
        BrokerConfig.model_validate({**base, "acl": "x"})


def test_events_queued_for_the_fleet_survive_a_broker_crash(pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Fault tried: the broker killed with SIGKILL (a crash, a power cut: nothing saved on the way
    out) while the fleet's ingest is away. A device's events were acknowledged by the broker, so
    its outbox has already deleted them; they wait only in the ingest's persistent session. Once
    the broker's next autosave has passed, all of them reach the ingest after the restart. With
    mosquitto's default autosave (1800 s) none did (checked: the setting removed and a 3 s pause
    instead of the wait, 0 of 20 arrived)."""
    ca = pki.ca.cert_path or Path()
    ingest = connect(tls_broker.port, "fleet.ingest", ca, pki.ingest_cert, pki.ingest_key, session_expiry_s=3600)
    assert ingest.subscribe("sohoa/v1/+/event") == [1]
    ingest.close()
    tls_broker.wait_log("Client fleet.ingest disconnected")  # away, not still taking deliveries
    a = _device(pki, tls_broker, "kiosk-a")
    try:
        for i in range(20):
            assert a.publish("sohoa/v1/kiosk-a/event", f"event-{i}".encode()) == 0
    finally:
        a.close()
    # The log line comes as a save starts; mosquitto is single-threaded, so once the next one is
    # logged, the first has been written. Two autosave intervals (2 s each) at most.
    saves = tls_broker.log_text().count("Saving in-memory database")
    tls_broker.wait_log("Saving in-memory database", saves + 2)
    tls_broker.kill9()
    tls_broker.start()
    ingest = connect(tls_broker.port, "fleet.ingest", ca, pki.ingest_cert, pki.ingest_key, session_expiry_s=3600)
    try:
        for i in range(20):
            ingest.wait_message("sohoa/v1/kiosk-a/event", f"event-{i}".encode())
    finally:
        ingest.close()


def test_the_broker_keeps_more_than_a_thousand_messages_for_an_away_ingest(
        pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """While the fleet restarts, every kiosk that reconnects publishes its status and its events
    into the ingest's session; mosquitto's default limit (1000 queued messages per session) drops
    the rest without a word. 1500 events queued while the ingest is away all reach it (with
    the default, 1000 did)."""
    ca = pki.ca.cert_path or Path()
    ingest = connect(tls_broker.port, "fleet.ingest", ca, pki.ingest_cert, pki.ingest_key, session_expiry_s=3600)
    assert ingest.subscribe("sohoa/v1/+/event") == [1]
    ingest.close()
    tls_broker.wait_log("Client fleet.ingest disconnected")
    a = _device(pki, tls_broker, "kiosk-a")
    try:
        infos = [a.client.publish("sohoa/v1/kiosk-a/event", f"queued-{i}".encode(), qos=1) for i in range(1500)]
        infos[-1].wait_for_publish(30)
        assert all(info.is_published() for info in infos)
    finally:
        a.close()
    assert "Outgoing messages are being dropped" not in tls_broker.log_text()
    ingest = connect(tls_broker.port, "fleet.ingest", ca, pki.ingest_cert, pki.ingest_key, session_expiry_s=3600)
    try:
        with ingest.got:
            assert ingest.got.wait_for(lambda: sum(t == "sohoa/v1/kiosk-a/event" for t, _ in ingest.messages) >= 1500,
                                       30), f"{len(ingest.messages)} of 1500 queued events reached the ingest"
    finally:
        ingest.close()


def test_broker_disconnects_a_device_sending_more_than_one_message_can_hold(
        pki: Pki, tls_broker: ConfiguredMosquitto) -> None:
    """Bad input: kiosk-a publishes one byte over the protocol's payload limit plus the broker's
    header allowance. The broker cuts it off (max_packet_size) and the ingest never receives the
    payload; a payload of exactly the protocol's limit still goes through."""
    ingest = _ingest(pki, tls_broker)
    a = _device(pki, tls_broker, "kiosk-a")
    try:
        largest = b"x" * MAX_PAYLOAD_BYTES
        assert a.publish("sohoa/v1/kiosk-a/event", largest) == 0
        ingest.wait_message("sohoa/v1/kiosk-a/event", largest)
        a.client.publish("sohoa/v1/kiosk-a/event", b"y" * (MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES + 1), qos=1)
        assert a.disconnected.wait(TIMEOUT), "the broker kept a client that sent an oversized packet"
        b = _device(pki, tls_broker, "kiosk-b")
        try:
            assert b.publish("sohoa/v1/kiosk-b/event", b"after") == 0
            ingest.wait_message("sohoa/v1/kiosk-b/event", b"after")
        finally:
            b.close()
        assert all(not payload.startswith(b"y") for _, payload in ingest.messages)
    finally:
        a.close()
        ingest.close()
