"""Message models. Every message carries the schema version, a unique id (delivery is
at-least-once: receivers deduplicate on it), the device id and the device's timestamp.

>>> from protocol.messages import Status, encode, decode
>>> raw = encode(Status(device_id="kiosk-0001", state="online", agent_version="0.1.0"))
>>> decode("sohoa/v1/kiosk-0001/status", raw).message.state
'online'

Compatibility (staged rollouts run newer agents beside an older fleet, and a newer fleet beside
older agents):

- An *additive* change (a new optional field, in a message or in a nested object) keeps
  ``schema_version``. A receiver ignores fields it does not know: :func:`decode` drops them,
  validates the rest, and names them in :attr:`Decoded.ignored` (paths, never values) so the
  receiver can count them. The models themselves keep ``extra="forbid"``: what a program builds
  with a mistyped field still fails, in its tests.
- A *breaking* change (a field removed, renamed, made required or given another type or
  meaning) bumps ``schema_version``; a receiver refuses a version it does not know (reason
  ``schema_version``). A new event ``type`` or command name is neither: its receiver is upgraded
  first (an older fleet refuses an unknown event as ``invalid``, an older agent rejects an
  unknown command in its ``cmd/ack``).
- Only unknown fields are forgiven: a known field with a bad value, a missing required field or
  an unknown event type still refuses the whole message (reason ``invalid``), and so does an
  unknown field whose name no contract would use (not ``snake_case`` ASCII of at most
  64 characters, e.g. data sent as a key) or more than :data:`MAX_UNKNOWN_FIELDS` of them.
- The open dictionaries are not envelope: command arguments (:mod:`protocol.commands`) and
  remote settings (:mod:`protocol.settings`) forbid unknown keys. The fleet checks them before it
  publishes; a device refuses an argument or a setting it does not know, with a reason the fleet
  shows (``cmd/ack`` detail, ``config/reported`` error), because ignoring what it was asked to do
  would be silently wrong. So devices learn a new argument or setting before the fleet offers it.

>>> payload = raw.replace(b'"unit"', b'"battery_percent":87,"unit"')
>>> decode("sohoa/v1/kiosk-0001/status", payload).ignored
('battery_percent',)
"""

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from protocol.errors import ProtocolError
from protocol.topics import DEVICE_ID_PATTERN, Channel, parse_topic

SCHEMA_VERSION: Literal[1] = 1
MAX_PAYLOAD_BYTES = 256 * 1024
"""Larger payloads are refused unread: page images travel over HTTP, not MQTT."""

MAX_UNKNOWN_FIELDS = 16
"""More unknown fields than this in one message is not an additive change: the message is refused."""
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""What a contract field name looks like; an unknown field named otherwise refuses the message."""

COMPATIBILITY_RULES = (
    "Additive changes (a new optional field, in a message or a nested object) keep "
    "`schema_version`: receivers ignore fields they do not know and count them (the fleet: "
    "`sohoa_fleet_unknown_fields_total{type,field}`). Models still forbid unknown fields for "
    "what a program builds itself, so a typo fails in its tests.",
    "Breaking changes (a field removed, renamed, made required, given another type or meaning) bump "
    "`schema_version`; an unknown version is refused (`schema_version`). A new event `type` or command "
    "name is neither: its receiver is upgraded first (an older fleet refuses an unknown event as "
    "`invalid`, an older agent rejects an unknown command in its `cmd/ack`).",
    "Only unknown fields are forgiven: a bad value in a known field, a missing required field or an "
    "unknown event type refuses the message (`invalid`), as does an unknown field not named in "
    f"`snake_case` ASCII of at most 64 characters, or more than {MAX_UNKNOWN_FIELDS} of them.",
    "Command `args` and desired `settings` are not envelope: their models (Command arguments, "
    "Remote settings below) forbid unknown keys on both sides. The fleet refuses them before "
    "publishing; a device refuses an argument or a setting it does not know, with the reason in "
    "`cmd/ack` `detail` or `config/reported` `error`. A new argument or setting is an additive "
    "change for the devices first: they are upgraded before the fleet offers it.",
)
"""The rules above, as ``docs/protocol.md`` states them."""

STORED_RULES = (
    "A device keeps each message of its outbox (events, `cmd/ack`, `config/reported`, `update`) until "
    "the fleet names its id on `stored`, which the fleet publishes after the database commit that holds it. "
    "The broker's acknowledgement (PUBACK) only starts a timer: a message the fleet has not confirmed "
    "within `broker.stored_timeout_s` of it (device config; doubling per try up to "
    "`broker.stored_timeout_max_s`, each delay drawn ±25% at random) is sent again. So is every "
    "unconfirmed message, spread over a quarter of that timeout, after the device reconnects (the broker "
    "may have restarted without them), and any message the broker took longer than the timeout before "
    "one the fleet has just confirmed.",
    "The fleet stores by id once and confirms every copy, re-sends included. A message the fleet refuses "
    "(it breaks this fleet's contract: often a newer agent ahead of its fleet) is not confirmed: the device "
    "keeps it and sends it again at the longest wait until an upgraded fleet stores it; the fleet counts "
    "each refusal (`sohoa_fleet_messages_rejected_total`) and the device's `outbox.events` shows what waits. "
    "Messages of a revoked device are neither stored nor confirmed.",
    "Degrading: a device waits for `stored` only once it has received one (remembered across restarts) "
    "and while the last one is younger than `broker.stored_forget_s` (7 days). Before that, and against "
    "a fleet that never confirms (an older one, or `ingest.confirm_stored: false`), the broker's PUBACK "
    "suffices, as it did before; a device that stops hearing confirmations for that long forgets, with a "
    "warning, what the broker took. An older agent does not subscribe to `stored`: the broker drops the "
    "fleet's confirmations for it and nothing else changes.",
)
"""End-to-end acknowledgement, as ``docs/protocol.md`` states it."""

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, description="The device's id, as in its topics")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of a file")]


def new_id() -> str:
    """A fresh message or object id: a UUIDv7 (RFC 9562) as text, 36 characters.

    Time-ordered (milliseconds since the epoch, then 74 random bits): ids made one after
    another sort together, so the fleet's primary-key indexes grow at their end instead of
    being written all over (a third less database work per event than random UUID4s).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | 0x7 << 76  # version 7
    value = (value & ~(0x3 << 62)) | 0x2 << 62  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def derived_id(key: str, kind: str) -> str:
    """The id of the ``kind`` message about object ``key`` (a page id, a session id): the same
    pair always gives the same id, so describing an object again (a retry after a full disk, a
    held page renamed) stores and delivers one message. A UUIDv7 ``key`` keeps its time prefix,
    so derived ids sort with the ones :func:`new_id` makes (the fleet's indexes grow at their end).

    >>> page_id = new_id()
    >>> derived_id(page_id, "page_captured") == derived_id(page_id, "page_captured")
    True
    >>> derived_id(page_id, "page_captured")[:13] == page_id[:13]  # the same millisecond
    True
    >>> derived_id(page_id, "doctype_corrected") != derived_id(page_id, "page_captured")
    True
    """
    value = int.from_bytes(hashlib.sha256(f"sohoa:{kind}:{key}".encode()).digest()[:16], "big")
    version = 8  # RFC 9562 "custom": derived from a key that carries no time
    try:
        parsed: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.version == 7:
        value = (parsed.int >> 80) << 80 | (value & ((1 << 80) - 1))
        version = 7
    value = (value & ~(0xF << 76)) | version << 76
    value = (value & ~(0x3 << 62)) | 0x2 << 62
    return str(uuid.UUID(int=value))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Fields every message has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Version of this contract")
    id: str = Field(default_factory=new_id, min_length=8, max_length=64, description="Unique message id")
    device_id: DeviceId
    ts: AwareDatetime = Field(default_factory=utcnow, description="When the device made the message")


# --- status (retained; the Last Will says offline) -------------------------------------------


class Status(Message):
    """Retained on ``status``. The broker publishes ``state="offline"`` as the Last Will."""

    state: Literal["online", "offline"] = Field(description="online, or offline (clean stop or Last Will)")
    agent_version: str | None = Field(default=None, max_length=64, description="Agent version when online")
    unit: str | None = Field(
        default=None, max_length=64, description="Administrative unit the device serves (its config), when online"
    )


# --- telemetry ----------------------------------------------------------------------------------

ScannerState = Literal["ready", "scanning", "jammed", "cover_open", "no_docs", "error", "absent", "refused"]


class ScannerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    state: ScannerState = Field(description="What the scanner is doing or why it is not")
    model: str | None = Field(default=None, max_length=128, description="Vendor and model when known")


CameraState = Literal["closed", "ready", "absent"]


class CameraInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    state: CameraState = Field(description="closed: not opened yet; ready: frames flow; absent: missing or failing")
    model: str | None = Field(default=None, max_length=128, description="Camera model or backend when known")
    problem: str | None = Field(default=None, max_length=256, description="The last error when absent")


class OutboxDepth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    events: int = Field(
        ge=0, description="Messages not yet confirmed: by the fleet's `stored` once it has sent one, else by the broker"
    )
    files: int = Field(ge=0, description="Files waiting for the fleet's confirmation")
    bytes: int = Field(ge=0, description="Bytes of files waiting")


class Telemetry(Message):
    """Periodic health report, on ``telemetry``."""

    agent_version: str = Field(max_length=64, description="Running agent version")
    uptime_s: float = Field(ge=0, description="Seconds since the agent started")
    cpu_percent: float = Field(ge=0, description="CPU use since the last report, all cores")
    memory_percent: float = Field(ge=0, le=100, description="Memory in use")
    disk_free_bytes: int = Field(ge=0, description="Free bytes where the outbox lives")
    disk_total_bytes: int = Field(ge=0, description="Size of the outbox's file system")
    temperature_c: float | None = Field(default=None, description="SoC temperature where the board has one")
    scanner: ScannerInfo = Field(description="Scanner state")
    camera: CameraInfo | None = Field(default=None, description="Document camera state; null when none is configured")
    outbox: OutboxDepth = Field(description="What is still to be delivered")
    accepting_scans: bool = Field(default=True, description="False when scans are refused (disk low)")


# --- events -------------------------------------------------------------------------------------


class QualityVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ok: bool = Field(description="True when no issue was found")
    issues: list[str] = Field(default_factory=list, description="Issue codes, e.g. blurry, too_dark")


class Operator(BaseModel):
    """Who digitized a dossier: a unit's clerk, the public postal service's staff assigned to
    the counter (Decree 107/2021), or the citizen at a self-service kiosk."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["unit_staff", "postal_staff", "citizen"]
    id: str | None = Field(default=None, max_length=64,
                           description="The operator's opaque id at the fleet (staff only; never a name or ID number)")


class Page(BaseModel):
    """One captured page image. The file itself travels over HTTP, addressed by its sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    page_id: str = Field(min_length=8, max_length=64, description="Unique page id, made at capture")
    sha256: Sha256
    size: int = Field(ge=0, description="File size in bytes")
    content_type: str = Field(max_length=64, description="MIME type of the file, e.g. image/png")
    width: int = Field(ge=0, description="Pixels")
    height: int = Field(ge=0, description="Pixels")
    dpi: int | None = Field(default=None, ge=1, description="Resolution when known (scanner)")
    source: Literal["scanner", "camera", "folder"] = Field(description="Where the page came from")
    batch_id: str = Field(max_length=64, description="The scan batch (one ADF run, one folder import)")
    sequence: int = Field(ge=1, description="Position of the page in its batch, from 1")
    side: Literal["front", "back"] = Field(default="front", description="Duplex side")
    dossier_code: str | None = Field(default=None, max_length=64, description="Dossier the page belongs to")
    doctype: str | None = Field(
        default=None, max_length=64,
        description="Document type, when classified: a class id, or `unsure` when the device asks a person",
    )
    doctype_confidence: float | None = Field(default=None, ge=0, le=1, description="Classifier confidence")
    quality: QualityVerdict | None = Field(default=None, description="Quality verdict, when checked")
    dropped: bool = Field(default=False, description="Kept out of the dossier's PDF (e.g. blank back)")
    captured_at: AwareDatetime = Field(description="When the page was captured")
    operator: Operator | None = Field(
        default=None, description="Who captured it: the clerk signed in (kind and opaque id) or the citizen; "
        "none when the device does not know (a page outside a dossier, an older agent)")


class EventBase(Message):
    severity: Literal["info", "warning", "error"] = Field(default="info", description="How much it matters")


class PageCaptured(EventBase):
    type: Literal["page_captured"] = "page_captured"
    page: Page


class BatchStarted(EventBase):
    type: Literal["batch_started"] = "batch_started"
    batch_id: str = Field(max_length=64)
    source: Literal["scanner", "camera", "folder"]


class BatchFinished(EventBase):
    type: Literal["batch_finished"] = "batch_finished"
    batch_id: str = Field(max_length=64)
    pages: int = Field(ge=0, description="Pages captured in the batch")
    outcome: Literal["complete", "interrupted"] = Field(description="interrupted: a fault stopped it")


ScannerFaultType = Literal[
    "scanner_jammed", "scanner_cover_open", "scanner_no_docs", "scanner_io_error", "scanner_gone"
]


class ScannerFault(EventBase):
    """The scanner stopped a batch. Pages captured before the fault are kept."""

    type: ScannerFaultType
    batch_id: str | None = Field(default=None, max_length=64)
    message: str = Field(max_length=256, description="What the backend said (no personal data)")


class ScannerPlug(EventBase):
    type: Literal["scanner_attached", "scanner_detached"]
    vendor_id: int = Field(ge=0, le=0xFFFF)
    product_id: int = Field(ge=0, le=0xFFFF)
    model: str | None = Field(default=None, max_length=128)


class ScanRefused(EventBase):
    type: Literal["scan_refused"] = "scan_refused"
    reason: Literal["disk_full", "no_scanner", "busy"]
    message: str = Field(max_length=256)


class DiskLow(EventBase):
    type: Literal["disk_low"] = "disk_low"
    free_bytes: int = Field(ge=0)
    min_free_bytes: int = Field(ge=0)


class AgentStarted(EventBase):
    type: Literal["agent_started"] = "agent_started"
    agent_version: str = Field(max_length=64)


class DoctypeCorrected(EventBase):
    """A clerk or citizen changed a page's type: the fleet keeps it as a training label."""

    type: Literal["doctype_corrected"] = "doctype_corrected"
    page_id: str = Field(max_length=64)
    sha256: Sha256
    previous: str | None = Field(max_length=64)
    doctype: str = Field(max_length=64)
    by: Literal["clerk", "citizen", "admin"]


class DossierDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: Sha256
    name: str = Field(max_length=128, description="<dossier code>.<sequence>.pdf")
    doctype: str | None = Field(default=None, max_length=64)
    pages: int = Field(ge=0)
    size: int = Field(ge=0)


class DossierClosed(EventBase):
    type: Literal["dossier_closed"] = "dossier_closed"
    dossier_code: str | None = Field(max_length=64, description="None for a walk-in not yet named")
    session_id: str = Field(max_length=64)
    page_ids: list[str] = Field(default_factory=list)
    documents: list[DossierDocument] = Field(default_factory=list)
    operator: Operator | None = Field(default=None, description="Who digitized it, when the device knows")


AnyEvent = Annotated[
    PageCaptured
    | BatchStarted
    | BatchFinished
    | ScannerFault
    | ScannerPlug
    | ScanRefused
    | DiskLow
    | AgentStarted
    | DoctypeCorrected
    | DossierClosed,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


# --- commands and settings (their arguments: protocol.commands, protocol.settings) -------------

CommandName = Literal["reboot", "restart_agent", "test_scan", "collect_logs", "rotate_certificate", "update"]
CommandState = Literal["delivered", "in_progress", "succeeded", "failed", "timed_out", "rejected"]


class Command(Message):
    """Fleet -> device. ``device_id`` names the target; ``id`` is the command id."""

    name: CommandName
    deadline: AwareDatetime = Field(description="Not to be started after this")
    args: dict[str, Any] = Field(
        default_factory=dict, description="The command's arguments, as its model in Command arguments says"
    )


class CommandAck(Message):
    command_id: str = Field(max_length=64)
    state: CommandState
    detail: str | None = Field(default=None, max_length=512)


class ConfigDesired(Message):
    """Retained. The settings the fleet wants this device to run, with a version."""

    version: int = Field(ge=0)
    settings: dict[str, Any] = Field(description="Remote settings (RemoteSettings keys); a key left out stays local")


class ConfigReported(Message):
    version: int = Field(ge=0, description="The desired version this answers")
    applied: bool
    error: str | None = Field(default=None, max_length=1024, description="Why it was rejected")
    settings: dict[str, Any] = Field(default_factory=dict, description="What the device runs now")


class UpdateProgress(Message):
    """Device -> fleet, one per step of an update."""

    rollout_id: str = Field(max_length=64)
    version: str = Field(max_length=64)
    state: Literal[
        "waiting", "downloading", "verifying", "installing", "rebooting", "succeeded", "rolled_back", "failed"
    ] = Field(description="waiting: held until the maintenance window opens or no dossier is open (detail: which)")
    progress: float | None = Field(default=None, ge=0, le=1)
    detail: str | None = Field(default=None, max_length=512)


MAX_STORED_IDS = 2000
"""Most ids one :class:`Stored` carries (2,000 ids of 64 characters stay far under the payload limit)."""

MessageId = Annotated[str, Field(min_length=8, max_length=64)]


class Stored(Message):
    """Fleet -> device, after the fleet's database committed a batch: the ids of this device's
    messages (events, command acknowledgements, reported config, update progress) it now holds,
    including ones it already held (a re-send). The device keeps each message until it is named
    here, re-sending it meanwhile; a fleet that never sends this leaves the
    device trusting the broker's acknowledgement, as before."""

    ids: list[MessageId] = Field(
        min_length=1, max_length=MAX_STORED_IDS, description="Ids of messages stored (or already stored)"
    )


class OperatorEntry(BaseModel):
    """One counter operator a device may sign in: an opaque id, a kind, and the salted scrypt
    hashes of their PIN and staff-card token (:mod:`protocol.secrets`; never a secret in the
    clear, never a name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    kind: Literal["unit_staff", "postal_staff"]
    pin_hash: str | None = Field(default=None, max_length=160, pattern=r"^scrypt\$")
    card_hash: str | None = Field(default=None, max_length=160, pattern=r"^scrypt\$")


class OperatorList(Message):
    """Fleet -> device, retained: every active operator of the device's unit, the whole list each
    time (the device replaces what it had). ``version`` grows with each change."""

    version: int = Field(ge=0, description="Grows with each change of the list")
    operators: list[OperatorEntry] = Field(default_factory=list, max_length=2000)


_CHANNEL_MODEL: dict[Channel, type[Message]] = {
    Channel.STATUS: Status,
    Channel.TELEMETRY: Telemetry,
    Channel.CMD: Command,
    Channel.CMD_ACK: CommandAck,
    Channel.CONFIG_DESIRED: ConfigDesired,
    Channel.CONFIG_REPORTED: ConfigReported,
    Channel.UPDATE: UpdateProgress,
    Channel.STORED: Stored,
    Channel.OPERATORS: OperatorList,
}

AnyMessage = Message


@dataclass(frozen=True, slots=True)
class Decoded:
    device_id: str
    channel: Channel
    message: Message
    ignored: tuple[str, ...] = ()
    """Unknown fields dropped (a newer sender's additive change), as paths: ``page.quality.x``,
    ``documents[].x``. Names only, never values."""


def encode(message: Message) -> bytes:
    """Serialize a message for the wire (UTF-8 JSON)."""
    return message.model_dump_json(exclude_none=False).encode()


def decode(topic_name: str, payload: bytes, *, strict: bool = False) -> Decoded:
    """Check and parse one MQTT message. Raises :class:`ProtocolError` with a stable reason.

    Unknown fields are dropped and named in :attr:`Decoded.ignored` (the contract's
    compatibility rule, see the module docstring); ``strict=True`` refuses them instead.
    The payload is never echoed in the error: it may hold personal data.
    """
    device_id, channel = parse_topic(topic_name)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("malformed_json", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ProtocolError("malformed_json", "not a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProtocolError("schema_version", f"schema_version {str(version)[:16]!r}, expected {SCHEMA_VERSION}")
    ignored: tuple[str, ...] = ()
    try:
        message = _validate(channel, raw)
    except ValidationError as exc:
        if strict:
            raise _invalid(exc) from None
        ignored = _drop_unknown(channel, raw, exc)
        try:
            message = _validate(channel, raw)
        except ValidationError as again:
            raise _invalid(again) from None
    if message.device_id != device_id:
        raise ProtocolError("device_mismatch", "device_id differs from the topic")
    return Decoded(device_id, channel, message, ignored)


def _validate(channel: Channel, raw: dict[str, Any]) -> Message:
    if channel is Channel.EVENT:
        return EVENT_ADAPTER.validate_python(raw)
    return _CHANNEL_MODEL[channel].model_validate(raw)


def _invalid(exc: ValidationError) -> ProtocolError:
    """The ``invalid`` error naming at most five fields; a key that is not a field name (it may be
    data sent as a key) shows as ``?``."""
    fields = sorted({
        ".".join(str(p) if isinstance(p, int) or FIELD_NAME.match(p) else "?" for p in err["loc"])
        for err in exc.errors()
    })[:5]
    return ProtocolError("invalid", f"fields {fields}")


def _drop_unknown(channel: Channel, raw: dict[str, Any], exc: ValidationError) -> tuple[str, ...]:
    """Remove from ``raw`` the fields ``exc`` says are unknown; their paths, sorted.

    Raises the ``invalid`` :class:`ProtocolError` unless every error is an unknown field with a
    contract-like name (a bad value beside an unknown field refuses the message as before).
    """
    errors = exc.errors()
    if len(errors) > MAX_UNKNOWN_FIELDS or any(err["type"] != "extra_forbidden" for err in errors):
        raise _invalid(exc)
    paths: set[str] = set()
    for err in errors:
        # An event's errors start with its type (the discriminated union's tag), not a key.
        loc = err["loc"][1:] if channel is Channel.EVENT else err["loc"]
        name = loc[-1] if loc else None
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise _invalid(exc)
        parent: Any = raw
        for step in loc[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                raise _invalid(exc) from None
        if not isinstance(parent, dict) or name not in parent:
            raise _invalid(exc)
        del parent[name]
        paths.add(_path(loc))
    return tuple(sorted(paths))


def _path(loc: tuple[int | str, ...]) -> str:
    """``("documents", 0, "x")`` -> ``documents[].x``: one name for the field, whatever the index."""
    out = ""
    for step in loc:
        out += "[]" if isinstance(step, int) else ("." if out else "") + step
    return out
