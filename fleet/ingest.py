"""MQTT ingest: devices' status, telemetry and events into the database.

One :class:`Ingest` is one worker: an MQTT v5 client with a fixed client id and a persistent
session. Alone, it subscribes to ``sohoa/v1/+/#``. With ``broker.group`` set, it subscribes to
the shared subscription ``$share/<group>/sohoa/v1/+/#`` so several workers (in one process or
many, on any standard broker cluster) share the load; retained status messages are not
delivered to shared subscriptions, so each worker then also holds a plain subscription to
``sohoa/v1/+/status`` (applying a status twice is harmless). Mosquitto 2.0 forgets an offline
session's *shared* subscriptions when it restarts, which is why one worker uses a plain one.

Messages are acknowledged by hand, only after the transaction holding them has committed: a
crash at any point means redelivery, never loss, and writes are idempotent on message id, so
redelivery means no duplicates. After the commit, and before the broker's acknowledgement, each
device is told which of its messages are now stored (``stored``, with ``ingest.confirm_stored``):
devices keep a message until then and send it again if it does not come, so a broker that loses
what it had acknowledged (killed before its save, a shared subscription forgotten across a
restart) loses nothing (see ``docs/protocol.md``, End-to-end acknowledgement). A message that
does not fit the contract is counted by reason, logged without its payload, acknowledged (so it
is not redelivered forever) and dropped. A
message whose only fault is fields this fleet does not know (a newer agent's additive change,
see :mod:`protocol.messages`) is kept: the fields are counted in
``sohoa_fleet_unknown_fields_total{type,field}``, each new name logged once, and events and
telemetry samples are stored as sent, so the new fields are there for a newer fleet. A device
whose certificate is revoked but whose connection is still up (brokers check certificates only at
the handshake) is refused here: its messages are counted (``reason="revoked"``), acknowledged and
dropped, and an audit entry says so, at most once a minute per device.

>>> from fleet.config import BrokerConfig, FleetConfig
>>> Ingest.subscriptions(FleetConfig())
['sohoa/v1/+/#']
>>> Ingest.subscriptions(FleetConfig(broker=BrokerConfig(group="ingest")))
['$share/ingest/sohoa/v1/+/#', 'sohoa/v1/+/status']
"""

import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, Select, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fleet.auth.models import AuditEntry
from fleet.config import BrokerConfig, FleetConfig
from fleet.db import RawJSON, WalCheckpointer, bulk_insert
from fleet.dossiers import registry
from fleet.enroll.models import EnrollmentRow
from fleet.metrics import MAX_UNKNOWN_FIELD_LABELS, OTHER_FIELD, FleetMetrics
from fleet.models import Device, Event, Page, StoredFile, TelemetrySample
from fleet.progress import digitized
from protocol.errors import ProtocolError
from protocol.messages import (
    EVENT_ADAPTER,
    MAX_PAYLOAD_BYTES,
    MAX_STORED_IDS,
    Decoded,
    DossierClosed,
    Message,
    PageCaptured,
    Status,
    Stored,
    Telemetry,
    decode,
    encode,
)
from protocol.reconnect import PahoReconnects
from protocol.topics import CONFIRMED, FLEET_TO_DEVICE, ROOT, Channel, device_filter, parse_topic, shared, topic

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Incoming:
    """One MQTT message as received, before it is checked."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retain: bool = False
    received_at: datetime | None = None
    generation: int = 0


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Writer:
    """Checks a batch of raw messages and writes it in one transaction (the database half of
    ingest, usable without a broker).

    >>> from fleet.db import make_engine, migrate, session_factory
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> writer = Writer(session_factory(engine), FleetMetrics())
    >>> writer.write([Incoming("sohoa/v1/kiosk-1/event", b"{not json")])
    0
    """

    def __init__(self, sessions: sessionmaker[Session], metrics: FleetMetrics) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.hooks: list[Callable[[Session, list[Decoded]], None]] = []
        """Called inside each batch's transaction with its messages (fleet operations: acks, reports)."""
        self._revoked_audited: dict[str, float] = {}  # device: when its refusal was last audited
        self.confirming = False
        """Collect what :meth:`take_confirmations` returns (the ingest sets it with ``ingest.confirm_stored``)."""
        self._confirmations: dict[str, list[str]] = {}

    def take_confirmations(self) -> dict[str, list[str]]:
        """Per device, the ids of its outbox messages committed (or found already stored) since
        the last call: what :class:`Stored` tells it."""
        taken, self._confirmations = self._confirmations, {}
        return taken

    def write(self, items: Sequence[Incoming]) -> int:
        """Write what fits the contract; count and drop the rest. Returns messages stored.
        Raises only when the database is unreachable (the caller retries the batch)."""
        good: list[tuple[Incoming, Decoded]] = []
        for item in items:
            try:
                decoded = fast_decode(item.topic, item.payload)
            except ProtocolError as exc:
                self.metrics.rejected.labels(reason=exc.reason).inc()
                log.warning("rejected a message (%s): %s", exc.reason, exc.detail)
                continue
            if decoded.ignored:
                self._unknown_fields(decoded)
            good.append((item, decoded))
        if not good:
            return 0
        try:
            return len(good) - self._store(good)
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            log.warning("batch of %d failed (%s); writing one by one", len(good), type(exc).__name__)
        stored = 0
        for pair in good:
            try:
                stored += 1 - self._store([pair])
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                self.metrics.rejected.labels(reason="store_failed").inc()
                log.error("could not store a %s message from %s (%s)", pair[1].channel.value,
                          pair[1].device_id, type(exc).__name__)
        return stored

    def _audit_revoked(self, session: Session, revoked: dict[str, str | None],
                       batch: Sequence[tuple[Incoming, Decoded]]) -> None:
        """An audit entry per revoked device still publishing, at most one a minute each."""
        now = time.monotonic()
        for device_id, unit in revoked.items():
            last = self._revoked_audited.get(device_id)
            if last is not None and now - last < 60:
                continue
            self._revoked_audited[device_id] = now
            count = sum(1 for _, decoded in batch if decoded.device_id == device_id)
            session.add(AuditEntry(at=utcnow(), actor=device_id[:128], actor_kind="device",
                                   action="ingest.revoked_refused", target=f"{count} message(s)",
                                   unit_code=unit, outcome="refused",
                                   detail="certificate revoked; still connected to the broker (refused at ingest)"))

    def _unknown_fields(self, decoded: Decoded) -> None:
        """Count fields ignored in a kept message; log each (type, field) the first time only."""
        kind = str(getattr(decoded.message, "type", decoded.channel.value))
        for field in self.metrics.count_unknown_fields(kind, decoded.ignored):
            if field == OTHER_FIELD:
                log.warning("more than %d unknown fields seen: further ones are counted as %s, not logged",
                            MAX_UNKNOWN_FIELD_LABELS, OTHER_FIELD)
            else:
                log.warning("%s messages carry a field this fleet does not know, ignored: %s (first from %s; "
                            "a newer agent?)", kind, field, decoded.device_id)

    def _store(self, batch: Sequence[tuple[Incoming, Decoded]]) -> int:
        """Write the batch in one transaction; returns how many of its messages were refused
        because their device's certificate is revoked (a revoked kiosk that is still connected:
        the broker checks certificates only when a client connects)."""
        now = utcnow()
        received_batch = batch
        events: dict[str, dict[str, Any]] = {}
        pages: dict[str, dict[str, Any]] = {}
        closed: dict[str, DossierClosed] = {}
        samples: dict[str, dict[str, Any]] = {}
        # Per device, in arrival order: first and last time heard, last status, newest telemetry.
        first: dict[str, datetime] = {}
        last: dict[str, datetime] = {}
        statuses: dict[str, tuple[Status, datetime]] = {}
        reports: dict[str, Telemetry] = {}
        for item, decoded in batch:
            msg = decoded.message
            device_id = decoded.device_id
            received = item.received_at or now  # the batch's time: within batch_latency of arrival
            # A retained message is old news delivered on (re)subscription: it says what the
            # device last said, not that it is alive now.
            seen = min(msg.ts, received) if item.retain else received
            if device_id not in first or seen < first[device_id]:
                first[device_id] = seen
            if device_id not in last or seen > last[device_id]:
                last[device_id] = seen
            if decoded.channel is Channel.EVENT:
                events[msg.id] = {
                    "id": msg.id,
                    "device_id": device_id,
                    "type": getattr(msg, "type", "unknown"),
                    "severity": getattr(msg, "severity", "info"),
                    "ts": msg.ts,
                    "received_at": received,
                    # The event as the device sent it: validated JSON, stored without re-encoding.
                    "payload": RawJSON(item.payload.decode()),
                }
                if isinstance(msg, PageCaptured):
                    pages[msg.page.page_id] = _page_row(msg, received)
                elif isinstance(msg, DossierClosed):
                    closed[msg.id] = msg
            elif isinstance(msg, Status):
                statuses[device_id] = (msg, seen)
            elif isinstance(msg, Telemetry):
                if device_id not in reports or msg.ts >= reports[device_id].ts:
                    reports[device_id] = msg
                samples[msg.id] = {
                    "id": msg.id, "device_id": device_id, "ts": msg.ts, "data": RawJSON(item.payload.decode())
                }
        with self.sessions.begin() as session:
            ids = sorted(first)
            bulk_insert(session.connection(), Device.__table__,
                        [{"id": i, "first_seen": first[i], "last_seen": last[i], "status": "unknown"} for i in ids])
            units: dict[str, str | None] = {}
            revoked: dict[str, str | None] = {}  # device: its unit
            for device, enrolled in session.execute(_devices_and_enrollments(ids)):
                if device.revoked_at is not None:
                    revoked[device.id] = device.unit_code
                    continue
                _apply(device, last[device.id], statuses.get(device.id), reports.get(device.id))
                if enrolled is not None and device.unit_code != enrolled:
                    device.unit_code = _enrolled_unit(device.id, enrolled, statuses.get(device.id))
                units[device.id] = device.unit_code
            if revoked:
                events, pages, samples = (
                    {key: row for key, row in rows.items() if row["device_id"] not in revoked}
                    for rows in (events, pages, samples))
                self._audit_revoked(session, revoked, batch)
                batch = [pair for pair in batch if pair[1].device_id not in revoked]
            foreign = _foreign_files(session, pages)
            if foreign:
                # A device may name only files it uploaded itself: HEAD /files tells any device
                # whether a hash is held, and a page would hand that file to its own unit.
                for page_id, uploader in foreign.items():
                    row = pages.pop(page_id)
                    log.warning("page %s from %s names file %s uploaded by %s: page refused", page_id,
                                row["device_id"], str(row["sha256"])[:12], uploader)
                self.metrics.rejected.labels(reason="foreign_file").inc(len(foreign))
            for row in pages.values():  # the unit the page was captured for, kept if the device moves
                row["unit_code"] = units.get(row["device_id"])
            session.flush()
            connection = session.connection()
            # An event already stored (a redelivery) is the one row its insert leaves alone.
            known = len(events) - bulk_insert(connection, Event.__table__, list(events.values()))
            if known:
                self.metrics.duplicates.inc(known)
            bulk_insert(connection, Page.__table__, list(pages.values()))
            digitized.record(connection, pages.values())  # dossiers' first accepted pages
            registry.record_pages(connection, pages.values())
            registry.record_closed(connection, [(event, units.get(event.device_id)) for event in closed.values()
                                                if event.device_id not in revoked])
            bulk_insert(connection, TelemetrySample.__table__, list(samples.values()))
            for hook in self.hooks:
                hook(session, [decoded for _, decoded in batch])
        for _, decoded in batch if self.confirming else ():
            if decoded.channel in CONFIRMED:
                self._confirmations.setdefault(decoded.device_id, []).append(decoded.message.id)
        refused = len(received_batch) - len(batch)
        if refused:
            self.metrics.rejected.labels(reason="revoked").inc(refused)
            log.warning("refused %d messages from revoked devices still connected: %s", refused,
                        ", ".join(sorted(revoked)))
        committed = utcnow()
        per_channel: dict[Channel, int] = {}
        oldest: datetime | None = None
        for item, decoded in batch:
            per_channel[decoded.channel] = per_channel.get(decoded.channel, 0) + 1
            ts = decoded.message.ts
            if not item.retain and (oldest is None or ts < oldest):
                oldest = ts
        for channel, n in per_channel.items():
            self.metrics.ingested.labels(channel=channel.value).inc(n)
        if oldest is not None:
            # Once per batch, for its oldest message: the worst lag, at no cost per message.
            lag = max(0.0, (committed - oldest).total_seconds())
            self.metrics.lag.observe(lag)
            self.metrics.last_lag.set(lag)
        self.metrics.batches.inc()
        return refused


_FAST_MODELS: dict[Channel, type[Status] | type[Telemetry]] = {Channel.STATUS: Status, Channel.TELEMETRY: Telemetry}


@functools.lru_cache(maxsize=65536)
def _parse_topic(topic_name: str) -> tuple[str, Channel]:
    """Topics repeat (a few per device): parse each once. Refused topics are not cached."""
    return parse_topic(topic_name)


def fast_decode(topic_name: str, payload: bytes) -> Decoded:
    """:func:`protocol.messages.decode`, twice as fast for the messages that fit: pydantic
    parses and validates the JSON in one pass. Whatever it refuses goes through
    ``decode`` itself, so a rejected message gets the contract's stable reason.

    >>> fast_decode("sohoa/v1/kiosk-1/event", b"[]")
    Traceback (most recent call last):
    ...
    protocol.errors.ProtocolError: malformed_json: not a JSON object
    """
    device_id, channel = _parse_topic(topic_name)
    if len(payload) > MAX_PAYLOAD_BYTES or (channel is not Channel.EVENT and channel not in _FAST_MODELS):
        return decode(topic_name, payload)
    message: Message
    try:
        if channel is Channel.EVENT:
            message = EVENT_ADAPTER.validate_json(payload)
        else:
            message = _FAST_MODELS[channel].model_validate_json(payload)
    except ValidationError:
        return decode(topic_name, payload)
    if message.device_id != device_id:
        raise ProtocolError("device_mismatch", "device_id differs from the topic")
    return Decoded(device_id, channel, message)


def _apply(device: Device, seen: datetime, status: tuple[Status, datetime] | None, report: Telemetry | None) -> None:
    """What a batch says about one device."""
    if seen > device.last_seen:
        device.last_seen = seen
    if status is not None:
        msg, at = status
        device.status = msg.state
        device.status_at = at
        if msg.agent_version:
            device.agent_version = msg.agent_version
        if msg.unit:
            device.unit_code = msg.unit
    if report is not None and (device.last_telemetry_at is None or report.ts >= device.last_telemetry_at):
        device.agent_version = report.agent_version
        device.scanner_state = report.scanner.state
        device.scanner_model = report.scanner.model
        device.outbox_events = report.outbox.events
        device.outbox_files = report.outbox.files
        device.outbox_bytes = report.outbox.bytes
        device.accepting_scans = report.accepting_scans
        device.last_telemetry = report.model_dump(mode="json")
        device.last_telemetry_at = report.ts


def _devices_and_enrollments(ids: list[str]) -> Select[Device, str]:
    """The batch's devices, locked, each with the unit of its accepted enrollment or None (an
    enrolled device's unit is its enrollment's, whatever its status messages claim): one query."""
    enrollment = (EnrollmentRow.device_id == Device.id) & (EnrollmentRow.state == "accepted")
    return (select(Device, EnrollmentRow.unit_code).outerjoin(EnrollmentRow, enrollment)
            .where(Device.id.in_(ids)).with_for_update(of=Device))


def _enrolled_unit(device_id: str, unit: str, status: tuple[Status, datetime] | None) -> str:
    """A status may not move an enrolled device to another unit (it could claim any): say so."""
    if status is not None and status[0].unit and status[0].unit != unit:
        log.warning("status of %s claims unit %s; it is enrolled in %s, which stays", device_id, status[0].unit, unit)
    return unit


def _foreign_files(session: Session, pages: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Pages (by page id) whose file the fleet holds as uploaded by another device: page id ->
    the uploader. A file not held yet is not foreign: the page event often arrives first."""
    if not pages:
        return {}
    shas = {str(row["sha256"]) for row in pages.values()}
    held = session.execute(select(StoredFile.sha256, StoredFile.uploaded_by).where(StoredFile.sha256.in_(shas)))
    uploaders = {sha: who for sha, who in held if who is not None}
    return {page_id: uploaders[row["sha256"]] for page_id, row in pages.items()
            if row["sha256"] in uploaders and uploaders[row["sha256"]] != row["device_id"]}


def _page_row(event: PageCaptured, received: datetime) -> dict[str, Any]:
    page = event.page
    return {
        "page_id": page.page_id,
        "device_id": event.device_id,
        "event_id": event.id,
        "batch_id": page.batch_id,
        "sequence": page.sequence,
        "side": page.side,
        "dossier_code": page.dossier_code,
        "sha256": page.sha256,
        "size": page.size,
        "content_type": page.content_type,
        "width": page.width,
        "height": page.height,
        "dpi": page.dpi,
        "source": page.source,
        "doctype": page.doctype,
        "confidence": page.doctype_confidence,
        "quality": page.quality.model_dump(mode="json") if page.quality is not None else None,
        "dropped": page.dropped,
        "captured_at": page.captured_at,
        "received_at": received,
        "operator_kind": page.operator.kind if page.operator is not None else None,
        "operator_id": page.operator.id if page.operator is not None else None,
    }


class Ingest:
    """One ingest worker: MQTT client + batching writer thread. ``start()``, ``stop()``.

    >>> from fleet.config import FleetConfig
    >>> from fleet.db import make_engine, migrate, session_factory
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> ingest = Ingest(FleetConfig(), session_factory(engine), FleetMetrics())
    >>> ingest.connected
    False
    """

    def __init__(self, config: FleetConfig, sessions: sessionmaker[Session], metrics: FleetMetrics,
                 rng: random.Random | None = None) -> None:
        """``rng``: where the jittered reconnect delays are drawn from (a seeded one replays them)."""
        self.config = config
        self._rng = rng
        self.reconnects: PahoReconnects | None = None
        """The client's reconnect delays (:mod:`protocol.reconnect`), once started."""
        self.metrics = metrics
        self.writer = Writer(sessions, metrics)
        self.writer.confirming = config.ingest.confirm_stored
        # Received, not yet written. The network thread wakes the writer only for the first
        # message and for a full batch, not for every message: waking it each time would hand
        # the GIL back and forth thousands of times a second.
        self._pending: deque[Incoming] = deque()
        self._arrived = threading.Condition()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._generation = 0
        self._session_up = False
        """The broker accepted our session (tells a lost connection from a failed attempt)."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._checkpointer: WalCheckpointer | None = None
        self._progress = threading.Condition()
        self.batches_done = 0

    @staticmethod
    def subscriptions(config: FleetConfig) -> list[str]:
        if config.broker.group is None:
            return [device_filter()]
        return [shared(config.broker.group, device_filter()), topic_status_filter()]

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed (the broker acknowledged the subscriptions)."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        broker = self.config.broker
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=_client_id(broker), protocol=mqtt.MQTTv5
        )
        if broker.tls:
            client.tls_set(ca_certs=str(broker.ca_file), certfile=str(broker.cert_file), keyfile=str(broker.key_file))
        client.manual_ack_set(True)
        self.reconnects = PahoReconnects(client, broker.reconnect_schedule(self._rng))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = broker.session_expiry_s
        props.ReceiveMaximum = broker.receive_maximum
        self._client = client
        engine = self.writer.sessions.kw.get("bind")
        on_file = isinstance(engine, Engine) and engine.url.database not in (None, "", ":memory:")
        if isinstance(engine, Engine) and engine.dialect.name == "sqlite" and on_file:
            self._checkpointer = WalCheckpointer(engine)
        self._thread = threading.Thread(target=self._run, name="fleet-ingest-writer", daemon=True)
        self._thread.start()
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s, clean_start=False,
                             properties=props)
        client.loop_start()
        log.info("ingest connecting to %s:%s as %s", broker.host, broker.port, broker.client_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Write and acknowledge what has been received, then disconnect (the session stays)."""
        self._stopping.set()
        with self._arrived:
            self._arrived.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()
        self.metrics.connected.set(0)
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    # --- MQTT callbacks (paho's network thread) ---

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if self.reconnects is not None:
            self.reconnects.connected()
        self._session_up = True

        with self._lock:
            self._generation += 1
        opts = SubscribeOptions(qos=1)
        client.subscribe([(t, opts) for t in self.subscriptions(self.config)])

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reason_codes: Any, _props: Any) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused the ingest subscriptions: %s", ", ".join(failed))
            return
        # Only now can nothing sent to the tree be missed (the broker holds our subscriptions).
        self._connected.set()
        self.metrics.connected.set(1)
        log.info("ingest connected and subscribed")

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        broker = self.config.broker
        delay = self.reconnects.failed() if self.reconnects is not None else 0.0
        log.warning("cannot reach the broker at %s:%s; retrying in %.1f s", broker.host, broker.port, delay)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._connected.clear()
        self.metrics.connected.set(0)
        was, self._session_up = self._session_up, False
        if self._stopping.is_set() or self.reconnects is None:
            return
        if was:
            delay = self.reconnects.lost()
            log.warning("ingest lost the broker (%s); reconnecting in %.1f s", reason_code, delay)
        else:  # closed before the broker accepted the session (refused, or a handshake cut short)
            self.reconnects.failed()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        item = Incoming(
            topic=msg.topic,
            payload=msg.payload,
            mid=msg.mid,
            qos=msg.qos,
            retain=bool(msg.retain),
            generation=self._generation,
        )
        with self._arrived:
            self._pending.append(item)
            waiting = len(self._pending)
            if waiting == 1 or waiting == self.config.ingest.batch_size:
                self._arrived.notify()

    # --- writer thread ---

    def _collect(self) -> list[Incoming] | None:
        """A batch: up to batch_size, no longer than batch_latency, cut short when no message
        came for idle_flush. None when stopping and nothing is left."""
        ingest = self.config.ingest
        idle = ingest.idle_flush_ms / 1000
        with self._arrived:
            while not self._pending:
                if self._stopping.is_set():
                    return None
                self._arrived.wait(0.5)
            deadline = time.monotonic() + ingest.batch_latency_ms / 1000
            seen = len(self._pending)
            while seen < ingest.batch_size and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(min(idle, remaining))
                if len(self._pending) == seen:
                    break  # the flow paused: write what we have
                seen = len(self._pending)
            return [self._pending.popleft() for _ in range(min(ingest.batch_size, len(self._pending)))]

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if self._write(batch):
                self._confirm()
                self._ack(batch)
            with self._progress:
                self.batches_done += 1
                self._progress.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, checking after every batch written (and once now).
        For tests, benchmarks and the demo: no polling loops, no sleeps."""
        with self._progress:
            return self._progress.wait_for(predicate, timeout)

    def _write(self, batch: list[Incoming]) -> bool:
        delay = 0.5
        while True:
            try:
                self.writer.write([i for i in batch if not _fleet_to_device(i.topic)])
                return True
            except Exception as exc:
                if not _is_connection_error(exc):
                    # A bug, not bad input: keep ingesting, and say so loudly.
                    log.exception("ingest could not write a batch of %d", len(batch))
                    self.metrics.rejected.labels(reason="store_failed").inc(len(batch))
                    return True
                log.warning("database unavailable (%s); retrying in %.1f s", type(exc).__name__, delay)
            if self._stopping.wait(delay):
                return False  # not acknowledged: the broker delivers it again next time
            delay = min(delay * 2, 10.0)

    def _confirm(self) -> None:
        """Tell each device what of its messages the commit holds (QoS 1: an offline device finds
        it in its session). A confirmation that gets lost costs a re-send, never a message."""
        confirmations = self.writer.take_confirmations()
        client = self._client
        if client is None or not confirmations:
            return
        sent = 0
        for device_id, ids in confirmations.items():
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), MAX_STORED_IDS):
                chunk = unique[start:start + MAX_STORED_IDS]
                client.publish(topic(device_id, Channel.STORED), encode(Stored(device_id=device_id, ids=chunk)),
                               qos=1)
                sent += len(chunk)
        if sent:
            self.metrics.confirmed.inc(sent)

    def _ack(self, batch: list[Incoming]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        for item in batch:
            # A message received before a reconnect is delivered again by the broker; its old
            # packet id may now name another message, so it must not be acknowledged.
            if item.qos > 0 and item.generation == generation:
                client.ack(item.mid, item.qos)


def _client_id(broker: BrokerConfig) -> str:
    """The configured client id; over TLS the certificate's CN, which the broker forces anyway
    (``use_username_as_clientid``): the persistent session is kept under that name."""
    if broker.cert_file is None:
        return broker.client_id
    from cryptography import x509

    from provisioning.ca import certificate_name

    name, _ = certificate_name(x509.load_pem_x509_certificate(broker.cert_file.read_bytes()))
    if name != broker.client_id:
        log.info("ingest client id is its certificate's CN %s (configured: %s)", name, broker.client_id)
    return name


def _fleet_to_device(topic_name: str) -> bool:
    """Commands, desired config and confirmations are ours, seen because the filter matches the whole tree."""
    return any(topic_name.endswith("/" + c.value) for c in FLEET_TO_DEVICE)


def topic_status_filter() -> str:
    """Every device's retained status (a plain subscription: shared ones get no retained)."""
    return f"{ROOT}/+/{Channel.STATUS.value}"
