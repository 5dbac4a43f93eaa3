"""Bad input: hostile MQTT payloads from an enrolled device into the fleet's ingest. Malformed and
invalid-UTF-8 JSON, wrong types, unknown event types, huge and deeply nested fields, wrong topics,
another device's id: each is refused with a counted reason (or, when its only fault is fields the
fleet does not know, kept), never raises, and a good message in the same batch is stored (nothing
lost). Generated against the ingest's database half (:class:`fleet.ingest.Writer`, SQLite); then a
bounded pass through the real mosquitto and the running ingest, which keeps running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.db import make_engine, migrate, session_factory
from fleet.ingest import Incoming, Writer
from fleet.metrics import FleetMetrics
from fleet.models import Event, TelemetrySample
from protocol.messages import MAX_PAYLOAD_BYTES, Message, encode
from protocol.topics import Channel, topic
from tests.fleet.conftest import Publisher, state_of, wait_for
from tests.fleet.messages import fault, page_event, status, telemetry
from tests.fuzzing import fuzz_settings, tried

pytestmark = pytest.mark.fuzz

DEVICE = "kiosk-fuzz-01"

JSON_LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
               | st.floats(allow_nan=False) | st.text(max_size=40))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _templates() -> list[tuple[Channel, dict[str, Any]]]:
    """Good messages of every channel, as JSON objects to damage."""
    messages: list[tuple[Channel, Message]] = [
        (Channel.EVENT, page_event(DEVICE, b"a page")), (Channel.EVENT, fault(DEVICE)),
        (Channel.TELEMETRY, telemetry(DEVICE)), (Channel.STATUS, status(DEVICE, "online"))]
    return [(channel, json.loads(encode(m))) for channel, m in messages]


TEMPLATES = _templates()


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic, payload): a good message damaged one way or several."""
    channel, template = draw(st.sampled_from(TEMPLATES))
    doc = json.loads(json.dumps(template))
    target = doc["page"] if "page" in doc and draw(st.booleans()) else doc
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["retype", "drop", "unknown", "huge", "deep", "type", "device"]))
        keys = sorted(target)
        if kind == "retype":
            target[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
        elif kind == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif kind == "unknown":
            target[draw(st.text(min_size=1, max_size=20))] = draw(JSON_VALUES)
        elif kind == "huge":
            target[draw(st.sampled_from(keys))] = "đ" * draw(st.sampled_from([300, 70_000, MAX_PAYLOAD_BYTES]))
        elif kind == "deep":
            target[draw(st.sampled_from(keys))] = _deep(draw(st.sampled_from([50, 900, 5000])))
        elif kind == "type":
            doc["type"] = draw(st.text(max_size=30) | JSON_VALUES)
        else:
            doc["device_id"] = draw(st.sampled_from(["kiosk-other-01", "", "../x", "KIOSK"]))
    try:
        payload = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    except (RecursionError, ValueError):
        payload = b"{" * 5000
    framing = draw(st.sampled_from(["as_is", "as_is", "truncate", "bad_utf8", "array", "bytes"]))
    if framing == "truncate":
        payload = payload[: draw(st.integers(min_value=0, max_value=max(0, len(payload) - 1)))]
    elif framing == "bad_utf8":
        at = draw(st.integers(min_value=0, max_value=len(payload)))
        payload = payload[:at] + b"\xff\xfe\xc3" + payload[at:]
    elif framing == "array":
        payload = b"[" + payload + b"]"
    elif framing == "bytes":
        payload = draw(st.binary(max_size=200))
    where = draw(st.sampled_from(["own", "own", "own", "other", "cmd", "unknown_channel", "bad"]))
    name = {"own": topic(DEVICE, channel), "other": topic("kiosk-other-01", channel),
            "cmd": f"sohoa/v1/{DEVICE}/cmd", "unknown_channel": f"sohoa/v1/{DEVICE}/secrets",
            "bad": draw(st.sampled_from(["sohoa/v1//event", "sohoa/v2/x/event", f"sohoa/v1/{DEVICE}/event/x", "#"]))}
    return name[where], payload


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the generated inputs test the ingest's checks, not the database."""
    return f"sqlite:///{tmp_path}/fleet.db"


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path}/fuzz.db")
    migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _count(metrics: FleetMetrics, name: str) -> float:
    return sum(sample.value for metric in metrics.registry.collect() if metric.name == name
               for sample in metric.samples if sample.name == name + "_total")


def _stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return sum(session.scalar(select(func.count()).select_from(table)) or 0
                   for table in (Event, TelemetrySample))


def test_hostile_payloads_are_refused_and_counted_and_nothing_is_lost(
        sqlite_sessions: sessionmaker[Session]) -> None:
    """Each batch: a few hostile messages around one good event. Every hostile message is either
    refused with a counted reason or kept as a valid message (whose only fault was unknown fields);
    the writer never raises and the good event is always stored."""
    metrics = FleetMetrics()
    writer = Writer(sqlite_sessions, metrics)

    @given(st.lists(hostile(), min_size=1, max_size=4), st.integers(min_value=0, max_value=4))
    @fuzz_settings(30)
    def check(bad: list[tuple[str, bytes]], at: int) -> None:
        tried("mqtt_ingest", len(bad))
        good = fault(DEVICE)
        items = [Incoming(name, payload) for name, payload in bad]
        items.insert(min(at, len(items)), Incoming(topic(DEVICE, Channel.EVENT), encode(good)))
        rejected, ingested, before = (_count(metrics, "sohoa_fleet_messages_rejected"),
                                      _count(metrics, "sohoa_fleet_messages_ingested"), _stored(sqlite_sessions))
        stored = writer.write(items)
        with sqlite_sessions() as session:
            assert session.get(Event, good.id) is not None, "the good message was lost"
        refused = _count(metrics, "sohoa_fleet_messages_rejected") - rejected
        kept = _count(metrics, "sohoa_fleet_messages_ingested") - ingested
        assert refused + kept == len(items), (refused, kept, len(items))
        assert stored == kept
        assert _stored(sqlite_sessions) - before <= kept  # a kept status updates the device, adds no row

    check()


def test_hostile_payloads_through_the_broker_leave_the_ingest_running(
        client: TestClient, publisher: Publisher) -> None:
    """The same generator through the real mosquitto into the running ingest (one fixed bounded
    set): the ingest counts the refusals, stays connected, and stores a good event sent last."""
    state = state_of(client)
    ingest = state.services.ingest
    assert ingest is not None and ingest.wait_connected(10)
    cases: list[tuple[str, bytes]] = []

    @given(hostile())
    @fuzz_settings(25)
    def collect(case: tuple[str, bytes]) -> None:
        cases.append(case)

    collect()
    metrics = state.metrics

    def handled() -> float:
        return _count(metrics, "sohoa_fleet_messages_rejected") + _count(metrics, "sohoa_fleet_messages_ingested")

    before = handled()
    sent = 0
    for name, payload in cases:
        if not name.startswith("sohoa/v1/") or name.endswith("/cmd"):
            continue  # not a topic one may publish to, or one the ingest does not read
        publisher.publish(name, payload)
        sent += 1
    tried("mqtt_broker", sent)
    good = fault(DEVICE)
    publisher.publish(topic(DEVICE, Channel.EVENT), encode(good))

    def arrived() -> bool:
        with state.sessions() as session:
            return session.get(Event, good.id) is not None and handled() - before >= sent + 1

    wait_for(client, arrived, 30)
    # Each one counted (refused by reason, or kept) at least once: delivery is at-least-once, and a
    # batch the broker delivers again (the ingest reconnected under load) is counted again.
    assert handled() - before >= sent + 1
    assert ingest.connected
