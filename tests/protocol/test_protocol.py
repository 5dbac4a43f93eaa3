"""The wire contract: round trips, every reject reason, and the generated document."""

import json

import pytest

from protocol import Channel, ProtocolError, parse_topic, topic
from protocol.docs import DOC_PATH, render
from protocol.messages import (
    MAX_PAYLOAD_BYTES,
    Page,
    PageCaptured,
    ScannerFault,
    Status,
    decode,
    encode,
    utcnow,
)

DEVICE = "kiosk-0001"


def _page() -> Page:
    return Page(page_id="p-00000001", sha256="a" * 64, size=10, content_type="image/png", width=1, height=1,
                source="scanner", batch_id="b1", sequence=1, captured_at=utcnow())


def test_event_round_trip_keeps_every_field() -> None:
    event = PageCaptured(device_id=DEVICE, page=_page())
    decoded = decode(topic(DEVICE, Channel.EVENT), encode(event))
    assert decoded.message == event
    assert decoded.channel is Channel.EVENT and decoded.device_id == DEVICE


def test_every_message_gets_a_unique_id() -> None:
    ids = {Status(device_id=DEVICE, state="online").id for _ in range(100)}
    assert len(ids) == 100


@pytest.mark.parametrize(
    ("topic_name", "payload", "reason"),
    [
        ("sohoa/v1/kiosk-0001/event", b"{not json", "malformed_json"),
        ("sohoa/v1/kiosk-0001/event", b"\xff\xfe", "malformed_json"),
        ("sohoa/v1/kiosk-0001/event", b"[1, 2]", "malformed_json"),
        ("sohoa/v1/kiosk-0001/status", json.dumps({"schema_version": 2, "device_id": DEVICE}).encode(),
         "schema_version"),
        ("sohoa/v1/kiosk-0001/status", json.dumps({"device_id": DEVICE}).encode(), "schema_version"),
        ("sohoa/v1/kiosk-0001/event", b"x" * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        ("sohoa/v1/kiosk-0001/bogus", b"{}", "unknown_topic"),
        ("sohoa/v2/kiosk-0001/event", b"{}", "unknown_topic"),
        ("sohoa/v1/Bad+Id/event", b"{}", "unknown_topic"),
        ("sohoa/v1/kiosk-0001/event", json.dumps({"schema_version": 1, "device_id": DEVICE, "type": "nope"}).encode(),
         "invalid"),
        ("sohoa/v1/kiosk-0002/status", encode(Status(device_id=DEVICE, state="online")), "device_mismatch"),
    ],
)
def test_bad_messages_are_refused_with_a_stable_reason(topic_name: str, payload: bytes, reason: str) -> None:
    """Tried: broken JSON, non-UTF-8 bytes, a JSON array, a newer and a missing schema version, an
    oversized payload, unknown channels and roots, a bad device id, an unknown event type, and a
    device id that differs from the topic's."""
    with pytest.raises(ProtocolError) as info:
        decode(topic_name, payload)
    assert info.value.reason == reason


def test_errors_never_echo_the_payload() -> None:
    secret = "001099012345|Nguyễn Văn A|01011990"
    payload = json.dumps({"schema_version": 1, "device_id": DEVICE, "type": "scanner_jammed",
                          "message": 5, "extra": secret}).encode()
    with pytest.raises(ProtocolError) as info:
        decode(topic(DEVICE, Channel.EVENT), payload)
    assert "001099012345" not in str(info.value)
    assert "Nguyễn" not in str(info.value)


def test_scanner_fault_types_are_the_issue_names() -> None:
    fault = ScannerFault(device_id=DEVICE, type="scanner_jammed", message="Document feeder jammed")
    assert decode(topic(DEVICE, Channel.EVENT), encode(fault)).message.type == "scanner_jammed"  # type: ignore[attr-defined]


def test_topics_refuse_wildcards_in_device_ids() -> None:
    for bad in ("a/b", "+", "#", "UPPER", "x"):
        with pytest.raises(ValueError, match="device id"):
            topic(bad, Channel.STATUS)
    assert parse_topic("sohoa/v1/kiosk-0001/config/desired") == (DEVICE, Channel.CONFIG_DESIRED)


def test_protocol_doc_is_current() -> None:
    """docs/protocol.md is generated from the models; regenerate with python -m protocol.docs --write."""
    assert DOC_PATH.read_text(encoding="utf-8") == render()
