"""Issue #7: a newer sender's additive change (an unknown optional field, schema_version still 1)
is ignored and reported, not refused; everything else the contract refuses stays refused."""

import json
from typing import Any

import pytest

from protocol import Channel, ProtocolError, topic
from protocol.messages import (
    MAX_UNKNOWN_FIELDS,
    Command,
    DossierClosed,
    DossierDocument,
    OutboxDepth,
    Page,
    PageCaptured,
    QualityVerdict,
    ScannerInfo,
    Status,
    Telemetry,
    decode,
    encode,
    utcnow,
)

DEVICE = "kiosk-0001"
SECRET = "001099012345 Nguyễn Văn A"  # looks like a CCCD number and a name: never in what is reported


def _telemetry() -> dict[str, Any]:
    report = Telemetry(device_id=DEVICE, agent_version="0.1.0", uptime_s=1, cpu_percent=1, memory_percent=1,
                       disk_free_bytes=1, disk_total_bytes=2, scanner=ScannerInfo(state="ready"),
                       outbox=OutboxDepth(events=0, files=0, bytes=0))
    data: dict[str, Any] = json.loads(encode(report))
    return data


def _page_event() -> dict[str, Any]:
    page = Page(page_id="p-00000001", sha256="a" * 64, size=10, content_type="image/png", width=1, height=1,
                source="scanner", batch_id="b1", sequence=1, captured_at=utcnow(), quality=QualityVerdict(ok=True))
    data: dict[str, Any] = json.loads(encode(PageCaptured(device_id=DEVICE, page=page)))
    return data


def _decode(channel: Channel, data: dict[str, Any], **kw: bool) -> Any:
    return decode(topic(DEVICE, channel), json.dumps(data).encode(), **kw)


def test_unknown_top_level_and_nested_fields_are_ignored_and_reported() -> None:
    """Tried: a newer agent's Telemetry with a new top-level field and new fields in two nested
    objects. Stored values are the known ones; the new fields are named, sorted."""
    data = _telemetry()
    data["battery_percent"] = 87
    data["scanner"]["firmware"] = "1.2.3"
    data["outbox"]["oldest_age_s"] = 12.5
    decoded = _decode(Channel.TELEMETRY, data)
    assert decoded.ignored == ("battery_percent", "outbox.oldest_age_s", "scanner.firmware")
    assert decoded.message.scanner == ScannerInfo(state="ready")
    assert not hasattr(decoded.message, "battery_percent")


def test_unknown_fields_in_events_deep_and_in_lists_are_ignored() -> None:
    """Tried: unknown fields at the event's top, in page, in page.quality (an optional nested
    object) and in every item of a list of objects (one name for all indexes)."""
    data = _page_event()
    data["operator_hint"] = "x"
    data["page"]["rotation_deg"] = 90
    data["page"]["quality"]["score"] = 0.9
    decoded = _decode(Channel.EVENT, data)
    assert decoded.ignored == ("operator_hint", "page.quality.score", "page.rotation_deg")
    assert isinstance(decoded.message, PageCaptured) and decoded.message.page.quality == QualityVerdict(ok=True)

    closed: dict[str, Any] = json.loads(encode(DossierClosed(
        device_id=DEVICE, dossier_code=None, session_id="s1",
        documents=[DossierDocument(sha256="b" * 64, name="x.1.pdf", pages=1, size=1)] * 2)))
    for document in closed["documents"]:
        document["pdfa_level"] = "2b"
    assert _decode(Channel.EVENT, closed).ignored == ("documents[].pdfa_level",)


def test_ignored_names_never_carry_values() -> None:
    """Tried: a personal-data-looking value in an unknown field. Only its name is reported."""
    data = _telemetry()
    data["citizen_note"] = SECRET
    decoded = _decode(Channel.TELEMETRY, data)
    assert decoded.ignored == ("citizen_note",)
    assert all("0010990" not in name and "Nguy" not in name for name in decoded.ignored)


def test_an_unknown_field_beside_a_real_error_still_refuses() -> None:
    """Tried: an unknown field plus a bad value (cpu_percent text), plus a missing required field,
    and an unknown field inside an event of an unknown type. All refused as invalid, and the
    error names fields, never the unknown field's value."""
    data = _telemetry()
    data["battery_percent"] = SECRET
    data["cpu_percent"] = "lots"
    with pytest.raises(ProtocolError) as info:
        _decode(Channel.TELEMETRY, data)
    assert info.value.reason == "invalid" and "0010990" not in str(info.value)

    data = _telemetry()
    data["battery_percent"] = 87
    del data["scanner"]
    with pytest.raises(ProtocolError, match="invalid"):
        _decode(Channel.TELEMETRY, data)

    event = _page_event()
    event["type"] = "page_rotated"
    event["new_field"] = 1
    with pytest.raises(ProtocolError, match="invalid"):
        _decode(Channel.EVENT, event)


@pytest.mark.parametrize("name", [SECRET, "Battery", "a" * 65, "x-y", "1st", ""])
def test_an_unknown_field_not_named_like_a_field_refuses(name: str) -> None:
    """Tried: unknown keys no contract would use (data as a key, capitals, too long, a dash, a
    leading digit, empty). Refused as invalid: nothing to count, and a name may be data."""
    data = _telemetry()
    data[name] = 1
    with pytest.raises(ProtocolError) as info:
        _decode(Channel.TELEMETRY, data)
    assert info.value.reason == "invalid"
    assert "0010990" not in str(info.value)


def test_too_many_unknown_fields_refuse() -> None:
    """Tried: MAX_UNKNOWN_FIELDS + 1 new fields at once (not an additive change); the limit itself passes."""
    data = _telemetry()
    for i in range(MAX_UNKNOWN_FIELDS):
        data[f"new_{i}"] = i
    assert len(_decode(Channel.TELEMETRY, data).ignored) == MAX_UNKNOWN_FIELDS
    data["one_more"] = 1
    with pytest.raises(ProtocolError, match="invalid"):
        _decode(Channel.TELEMETRY, data)


def test_a_newer_schema_version_is_still_refused() -> None:
    """Tried: schema_version 2 with an otherwise valid Status plus a new field: a breaking change
    stays a hard reject, whatever else the message holds."""
    data: dict[str, Any] = json.loads(encode(Status(device_id=DEVICE, state="online")))
    data["schema_version"] = 2
    data["new_field"] = 1
    with pytest.raises(ProtocolError) as info:
        _decode(Channel.STATUS, data)
    assert info.value.reason == "schema_version"


def test_strict_mode_refuses_unknown_fields_and_models_still_forbid_them() -> None:
    """Tried: the same unknown field with strict=True, and a mistyped field when building a model
    in code (our own typo must fail)."""
    data = _telemetry()
    data["battery_percent"] = 87
    with pytest.raises(ProtocolError, match="invalid"):
        _decode(Channel.TELEMETRY, data, strict=True)
    with pytest.raises(ValueError, match="Extra inputs"):
        Status(device_id=DEVICE, state="online", agent_verison="0.1.0")  # type: ignore[call-arg]


def test_a_device_ignores_unknown_command_envelope_fields_but_keeps_args() -> None:
    """Tried: a newer fleet's command with a new envelope field: decoded, the field named; an
    unknown argument is kept in args (the agent's own argument model refuses it, with a reason)."""
    command: dict[str, Any] = json.loads(encode(Command(device_id=DEVICE, name="test_scan", deadline=utcnow(),
                                                        args={"dpi": 300, "new_arg": True})))
    command["priority"] = "high"
    decoded = _decode(Channel.CMD, command)
    assert decoded.ignored == ("priority",)
    assert isinstance(decoded.message, Command) and decoded.message.args == {"dpi": 300, "new_arg": True}


def test_clean_messages_report_nothing_ignored() -> None:
    assert _decode(Channel.TELEMETRY, _telemetry()).ignored == ()
