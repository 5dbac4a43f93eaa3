"""Ingest through a real mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from fleet.api.app import create_app
from fleet.ingest import fast_decode
from fleet.models import Event, Page, TelemetrySample
from protocol.errors import ProtocolError
from protocol.messages import MAX_PAYLOAD_BYTES, decode, encode
from tests.authn import login
from tests.fleet.conftest import Publisher, ingest_of, make_config, state_of, wait_for
from tests.fleet.messages import fault, page_event, status, telemetry
from tests.services import Mosquitto

DEVICE = "kiosk-0001"
EVENT_TOPIC = f"sohoa/v1/{DEVICE}/event"


def metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def count(client: TestClient, model: type[Event] | type[Page] | type[TelemetrySample]) -> int:
    with state_of(client).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def mosquitto_pub(broker: Mosquitto, topic: str, *, message: str | None = None, file: Path | None = None) -> None:
    args = ["mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", topic]
    args += ["-f", str(file)] if file is not None else ["-m", message or ""]
    subprocess.run(args, check=True, timeout=10)


def test_bad_messages_are_counted_by_reason_and_ingest_goes_on(
    client: TestClient, mosquitto: Mosquitto, tmp_path: Path, caplog: object
) -> None:
    """Bad input tried, each with mosquitto_pub: malformed JSON, schema_version 99, a 1 MB
    payload, and a topic outside the contract's channels. Each is refused and counted under
    its reason; the secret-looking text in them never reaches the log; a valid event sent
    right after is stored."""
    secret = "079123456789"  # looks like a CCCD number: must never be logged
    wrong_version = json.loads(encode(fault(DEVICE)))
    wrong_version["schema_version"] = 99
    wrong_version["message"] = secret
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"schema_version": 1, "pad": secret * (1024 * 1024 // len(secret))}))
    mosquitto_pub(mosquitto, EVENT_TOPIC, message='{"schema_version": 1, ' + secret)
    mosquitto_pub(mosquitto, EVENT_TOPIC, message=json.dumps(wrong_version))
    mosquitto_pub(mosquitto, EVENT_TOPIC, file=big)
    mosquitto_pub(mosquitto, f"sohoa/v1/{DEVICE}/bogus", message=encode(fault(DEVICE)).decode())
    good = fault(DEVICE)
    mosquitto_pub(mosquitto, EVENT_TOPIC, message=encode(good).decode())

    with state_of(client).sessions() as session:
        wait_for(client, lambda: session.get(Event, good.id) is not None)
    for reason in ("malformed_json", "schema_version", "too_large", "unknown_topic"):
        assert metric(client, "sohoa_fleet_messages_rejected_total", reason=reason) == 1, reason
    assert metric(client, "sohoa_fleet_messages_ingested_total", channel="event") == 1
    assert count(client, Event) == 1
    assert secret not in caplog.text  # type: ignore[attr-defined]
    assert ingest_of(client).connected


def test_duplicate_events_are_stored_once(client: TestClient, publisher: Publisher) -> None:
    """Bad input tried: the same page_captured event (same id) published three times, twice in
    one burst and once after it was committed (at-least-once delivery)."""
    event = page_event(DEVICE, b"page one")
    payload = encode(event)
    publisher.publish(EVENT_TOPIC, payload)
    publisher.publish(EVENT_TOPIC, payload)
    with state_of(client).sessions() as session:
        wait_for(client, lambda: session.get(Event, event.id) is not None)
    publisher.publish(EVENT_TOPIC, payload)
    marker = fault(DEVICE)
    publisher.publish(EVENT_TOPIC, encode(marker))
    with state_of(client).sessions() as session:
        wait_for(client, lambda: session.get(Event, marker.id) is not None)
    assert count(client, Event) == 2
    assert count(client, Page) == 1
    assert metric(client, "sohoa_fleet_messages_duplicate_total") >= 1
    page = client.get(f"/api/v1/pages/{event.page.page_id}").json()
    assert page["sha256"] == event.page.sha256 and page["file_available"] is False


@pytest.mark.parametrize("group", [None, "ingest"])
def test_retained_status_and_last_will(tmp_path: Path, db_url: str, mosquitto: Mosquitto, group: str | None) -> None:
    """A device says online (retained) BEFORE the fleet starts: the fleet still learns it,
    alone or as a worker of a shared-subscription group (retained messages never reach
    shared subscriptions: the group's workers also subscribe to statuses plainly). Then the device dies without
    disconnecting (kill -9 of a client holding a Last Will): the broker publishes the Will,
    and the API and /metrics show the device offline."""
    will = encode(status(DEVICE, "offline")).decode()
    proc = subprocess.Popen(
        ["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-i", DEVICE,
         "-t", f"sohoa/v1/{DEVICE}/cmd", "--will-topic", f"sohoa/v1/{DEVICE}/status",
         "--will-payload", will, "--will-qos", "1", "--will-retain"],
        stdout=subprocess.DEVNULL,
    )
    try:
        subprocess.run(["mosquitto_pub", "-V", "5", "-p", str(mosquitto.port), "-q", "1", "-r",
                        "-t", f"sohoa/v1/{DEVICE}/status", "-m", encode(status(DEVICE, "online")).decode()],
                       check=True, timeout=10)
        config = make_config(tmp_path, db_url, mosquitto)
        config = config.model_copy(update={"broker": config.broker.model_copy(update={"group": group})})
        with TestClient(create_app(config)) as client:
            assert ingest_of(client).wait_connected(10)
            login(client)  # a province admin

            def shown() -> dict[str, object]:
                response = client.get(f"/api/v1/devices/{DEVICE}")
                return dict(response.json()) if response.status_code == 200 else {}

            wait_for(client, lambda: shown().get("online") is True)
            assert shown()["status"] == "online"
            assert metric(client, "sohoa_fleet_devices_online") == 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            wait_for(client, lambda: shown().get("status") == "offline")
            assert shown()["online"] is False
            assert metric(client, "sohoa_fleet_devices_online") == 0
            assert client.get("/api/v1/devices", params={"online": "false"}).json()[0]["id"] == DEVICE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_heartbeat_timeout_makes_a_silent_device_offline(tmp_path: Path, db_url: str, mosquitto: Mosquitto,
                                                          publisher: Publisher) -> None:
    """Bad situation tried: a device whose retained status still says online but which has
    sent nothing for longer than the heartbeat timeout (a dead link before the Will fires)."""
    config = make_config(tmp_path, db_url, mosquitto, heartbeat_timeout_s=60.0)
    skew = timedelta(0)
    with TestClient(create_app(config, clock=lambda: datetime.now(UTC) + skew)) as client:
        assert ingest_of(client).wait_connected(10)
        login(client)  # a province admin
        publisher.publish(f"sohoa/v1/{DEVICE}/status", encode(status(DEVICE, "online")), retain=True)
        publisher.publish(f"sohoa/v1/{DEVICE}/telemetry", encode(telemetry(DEVICE, state="jammed", events=3)))
        with state_of(client).sessions() as session:
            wait_for(client, lambda: session.scalar(select(func.count()).select_from(TelemetrySample)) == 1)
        first = client.get(f"/api/v1/devices/{DEVICE}").json()
        assert first["online"] is True, first
        assert first["scanner_state"] == "jammed" and first["outbox"]["events"] == 3
        assert first["telemetry"]["scanner"]["model"] == "SANE test"
        # No message comes any more; move the fleet's clock past the timeout instead of waiting.
        skew = timedelta(seconds=61)
        assert metric(client, "sohoa_fleet_devices_online") == 0
        later = client.get(f"/api/v1/devices/{DEVICE}").json()
        assert later["online"] is False and later["status"] == "online", later


def test_ingest_survives_broker_restart_and_its_own_absence(tmp_path: Path, db_url: str, mosquitto: Mosquitto) -> None:
    """Bad situations tried: the broker restarts under a running fleet; then the fleet is
    stopped, events are published while it is away, the broker restarts again, and the
    fleet comes back with the same client id: every event arrives exactly once."""
    config = make_config(tmp_path, db_url, mosquitto)
    sent: list[str] = []

    def publish_events(n: int) -> None:
        pub = Publisher(mosquitto)
        try:
            for i in range(n):
                event = page_event(DEVICE, f"page {len(sent)} {i}".encode(), sequence=len(sent) + 1)
                pub.publish(EVENT_TOPIC, encode(event))
                sent.append(event.id)
        finally:
            pub.close()

    def stored() -> set[str]:
        with state_of(client).sessions() as session:
            return set(session.scalars(select(Event.id)))

    with TestClient(create_app(config)) as client:
        ingest = ingest_of(client)
        assert ingest.wait_connected(10)
        publish_events(3)
        wait_for(client, lambda: stored() == set(sent))
        mosquitto.stop()
        mosquitto.start()
        assert ingest.wait_connected(30), "ingest did not reconnect"
        publish_events(3)
        wait_for(client, lambda: stored() == set(sent))
    # Fleet away: its persistent session queues what devices send, across a broker restart.
    publish_events(5)
    mosquitto.stop()
    mosquitto.start()
    # ...and also what is sent after the restart, while the fleet is still away (mosquitto 2.0
    # loses this for a shared subscription: the reason one worker subscribes plainly).
    publish_events(2)
    with TestClient(create_app(config)) as client:
        assert ingest_of(client).wait_connected(10)
        wait_for(client, lambda: stored() == set(sent))
        assert count(client, Event) == len(sent) == 13
        assert count(client, Page) == 13


def test_fast_decode_agrees_with_the_protocol() -> None:
    """Bad input tried: every reject reason (not JSON, a JSON list, schema 2, a missing field,
    a topic/device mismatch, an unknown channel, an oversized payload) plus valid messages on
    each channel: the ingest's fast path gives the same message or the same reason as
    protocol.decode."""
    good = [
        (EVENT_TOPIC, encode(page_event(DEVICE, b"x"))),
        (EVENT_TOPIC, encode(fault(DEVICE))),
        (f"sohoa/v1/{DEVICE}/status", encode(status(DEVICE, "online"))),
        (f"sohoa/v1/{DEVICE}/telemetry", encode(telemetry(DEVICE))),
    ]
    wrong_version = json.loads(encode(fault(DEVICE)))
    wrong_version["schema_version"] = 2
    missing = json.loads(encode(fault(DEVICE)))
    del missing["message"]
    bad = [
        (EVENT_TOPIC, b"{nope"),
        (EVENT_TOPIC, b"[1, 2]"),
        (EVENT_TOPIC, json.dumps(wrong_version).encode()),
        (EVENT_TOPIC, json.dumps(missing).encode()),
        ("sohoa/v1/kiosk-0002/event", encode(fault(DEVICE))),
        (f"sohoa/v1/{DEVICE}/nope", encode(fault(DEVICE))),
        (EVENT_TOPIC, b" " * (MAX_PAYLOAD_BYTES + 1)),
    ]
    for name, payload in good:
        assert fast_decode(name, payload) == decode(name, payload)
    for name, payload in bad:
        with pytest.raises(ProtocolError) as slow:
            decode(name, payload)
        with pytest.raises(ProtocolError) as fast:
            fast_decode(name, payload)
        assert fast.value.reason == slow.value.reason


def test_a_newer_agents_unknown_fields_are_ignored_counted_and_kept(
    client: TestClient, mosquitto: Mosquitto, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #7, staged rollouts. Input tried: what a newer agent sends with schema_version 1, a
    Telemetry with a new top-level and a new nested field (twice, with mosquitto_pub) and a
    page_captured event with new fields at its top and in its page (with paho); then the same
    Telemetry with a new field AND a bad value. The first three are stored, the new fields
    counted per message in sohoa_fleet_unknown_fields_total and logged once per name, never
    with their values; the event is stored as sent (new fields kept for a newer fleet); the
    fourth is still refused as invalid."""
    secret = "079123456789"  # looks like a CCCD number: an unknown field's value must never be logged
    telemetry_topic = f"sohoa/v1/{DEVICE}/telemetry"
    bad = json.loads(encode(telemetry(DEVICE)))
    bad["battery_percent"] = 80
    bad["cpu_percent"] = "lots"
    mosquitto_pub(mosquitto, telemetry_topic, message=json.dumps(bad))
    for _ in range(2):
        newer = json.loads(encode(telemetry(DEVICE)))
        newer["battery_percent"] = 87
        newer["scanner"]["firmware"] = secret
        mosquitto_pub(mosquitto, telemetry_topic, message=json.dumps(newer))
    event = page_event(DEVICE, b"page from a canary")
    sent = json.loads(encode(event))
    sent["operator_hint"] = secret
    sent["page"]["rotation_deg"] = 90
    publisher.publish(EVENT_TOPIC, json.dumps(sent).encode())

    with state_of(client).sessions() as session:
        wait_for(client, lambda: session.get(Event, event.id) is not None and count(client, TelemetrySample) == 2)
        stored = session.get(Event, event.id)
        assert stored is not None and stored.payload["page"]["rotation_deg"] == 90
    assert count(client, Page) == 1
    unknown = "sohoa_fleet_unknown_fields_total"
    assert metric(client, unknown, type="telemetry", field="battery_percent") == 2
    assert metric(client, unknown, type="telemetry", field="scanner.firmware") == 2
    assert metric(client, unknown, type="page_captured", field="operator_hint") == 1
    assert metric(client, unknown, type="page_captured", field="page.rotation_deg") == 1
    assert metric(client, "sohoa_fleet_messages_rejected_total", reason="invalid") == 1
    assert metric(client, "sohoa_fleet_messages_ingested_total", channel="telemetry") == 2
    device = client.get(f"/api/v1/devices/{DEVICE}").json()
    assert device["version"] == "0.1.0" and device["scanner_state"] == "ready"  # the telemetry was applied
    lines = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert sorted(line.split("ignored: ")[1].split(" ")[0] for line in lines) == [
        "battery_percent", "operator_hint", "page.rotation_deg", "scanner.firmware"]
    assert secret not in caplog.text


def test_unknown_field_labels_are_capped() -> None:
    """Bad input tried: a device inventing more field names than the metric may label. Past the
    cap every new name counts as _other (reported for logging once), known ones keep counting."""
    from fleet.metrics import MAX_UNKNOWN_FIELD_LABELS, OTHER_FIELD, FleetMetrics

    metrics = FleetMetrics()
    names = [f"field_{i}" for i in range(MAX_UNKNOWN_FIELD_LABELS + 5)]
    first = metrics.count_unknown_fields("telemetry", names)
    assert first == [*names[:MAX_UNKNOWN_FIELD_LABELS], OTHER_FIELD]
    assert metrics.count_unknown_fields("telemetry", ["brand_new", names[0]]) == []
    counter = metrics.unknown_fields
    assert counter.labels(type="telemetry", field=OTHER_FIELD)._value.get() == 6
    assert counter.labels(type="telemetry", field=names[0])._value.get() == 2
