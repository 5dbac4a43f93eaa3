"""Fleet operations at run time: desired settings out (retained ``config/desired``), commands out
(``cmd``), acknowledgements, reports and update progress in, rollouts stepped.

* What comes in arrives through the ingest writer (:meth:`Operations.hook`, called inside the
  batch's transaction, so an ack is stored exactly when the ingest acknowledges the message).
* What goes out is written to the database first (a command row ``queued``, a device's desired
  version) and published by the driver thread: a command is (re)published while queued, and
  again each time its device comes back online (the device ignores a command id it has seen).
  Nothing is marked ``delivered`` before the device's own acknowledgement.
* Queued commands whose deadline passes become ``timed_out``; running rollouts are stepped on
  each ``update`` report and on every tick (device timeouts).

>>> Operations.command_rank("in_progress") > Operations.command_rank("delivered")
True
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import FleetConfig
from fleet.leases import Lease
from fleet.models import Device
from fleet.operations.models import CommandRow, DeviceConfig, RolloutRow, SettingsLayer
from fleet.operators.push import operator_lists
from fleet.progress.units import unit_parents
from fleet.rollouts import Rollout, effective_settings, settings_fingerprint
from protocol.messages import (
    Command,
    CommandAck,
    CommandName,
    ConfigDesired,
    ConfigReported,
    Decoded,
    Status,
    UpdateProgress,
    encode,
)
from protocol.reconnect import PahoReconnects
from protocol.topics import Channel, topic

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "rejected"})
_RANK = {"queued": 0, "delivered": 1, "in_progress": 2}


def utcnow() -> datetime:
    return datetime.now(UTC)


def recompute_desired(session: Session, device_ids: Iterable[str] | None, now: datetime) -> list[str]:
    """Recompute the effective desired settings of these devices (None: every device known);
    bump the version of those whose settings changed. Returns the ids bumped."""
    layers = list(session.scalars(select(SettingsLayer)))
    fleet_layer = next((lay.settings for lay in layers if lay.scope == "fleet"), None)
    units = {lay.key: lay.settings for lay in layers if lay.scope == "unit"}
    own = {lay.key: lay.settings for lay in layers if lay.scope == "device"}
    units_of = {device_id: unit for device_id, unit in session.execute(select(Device.id, Device.unit_code))}
    if device_ids is None:
        wanted = set(units_of) | set(own) | set(session.scalars(select(DeviceConfig.device_id)))
    else:
        wanted = set(device_ids)
    parent_of = unit_parents(session) if units else {}
    bumped = []
    for device_id in sorted(wanted):
        settings = effective_settings(fleet_layer, units_of.get(device_id), units, parent_of, own.get(device_id))
        fingerprint = settings_fingerprint(settings)
        row = session.get(DeviceConfig, device_id)
        if row is None:
            session.add(DeviceConfig(device_id=device_id, desired=settings, desired_version=1,
                                     fingerprint=fingerprint, desired_at=now))
            bumped.append(device_id)
        elif row.fingerprint != fingerprint:
            row.desired, row.fingerprint, row.desired_at = settings, fingerprint, now
            row.desired_version += 1
            bumped.append(device_id)
    return bumped


def new_command(
    session: Session,
    device_id: str,
    name: CommandName,
    args: Mapping[str, Any],
    deadline: datetime,
    now: datetime,
    *,
    rollout_id: str | None = None,
) -> CommandRow:
    """Queue a command (the driver publishes it)."""
    row = CommandRow(id=uuid.uuid4().hex, device_id=device_id, name=name, args=dict(args), state="queued",
                     deadline=deadline, created_at=now, updated_at=now, rollout_id=rollout_id)
    session.add(row)
    return row


def offer_updates(session: Session, rollout: Rollout, row: RolloutRow, now: datetime) -> None:
    """Step the rollout and queue ``update`` commands for the devices it offers now."""
    step = rollout.step(now)
    deadline = now + timedelta(seconds=rollout.device_timeout_s)
    for device_id in step.offer:
        new_command(session, device_id, "update", row.offer, deadline, now, rollout_id=rollout.rollout_id)
    if step.advanced_to is not None:
        log.info("rollout %s advanced to phase %s", rollout.rollout_id, step.advanced_to)
    if step.halted:
        log.warning("rollout %s halted: %s", rollout.rollout_id, step.halted)
    if step.completed:
        log.info("rollout %s completed", rollout.rollout_id)
    doc = rollout.model_dump(mode="json")
    if doc != row.doc:  # ticks step every running rollout: write only what changed
        row.doc, row.status, row.updated_at = doc, rollout.status, now
    if rollout.status in ("cancelled", "halted"):
        # Offers not yet taken by a device are withdrawn: nothing installs after a cancel or a
        # halt. One already in the broker for an offline device is refused by the bundle URL
        # (410, see fleet/api/routes/bundles.py) when the device comes back and acts on it.
        for command in session.scalars(select(CommandRow).where(CommandRow.rollout_id == rollout.rollout_id,
                                                                CommandRow.state == "queued")):
            command.state, command.updated_at = "rejected", now
            command.detail = f"rollout {rollout.status} before delivery"


class Operations:
    """One per fleet process: the hook for the ingest writer and the driver thread."""

    def __init__(
        self,
        config: FleetConfig,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
        tick_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        """``rng``: where the jittered reconnect delays are drawn from (a seeded one replays them)."""
        self.config = config
        self.sessions = sessions
        self.clock = clock
        self.tick_s = tick_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None
        """With several fleet nodes: the driver ticks only while this node holds it (the ingest
        hook, which records what devices answer, runs on every node)."""
        self.connected = threading.Event()
        self._operators_sent: dict[str, str] = {}
        """Device id -> the operator list last published to it (its content, without id and time)."""
        self._operators_dirty = True
        broker = config.broker
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{broker.client_id}-ops",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.reconnects = PahoReconnects(self.client, broker.reconnect_schedule(rng))
        """The publisher's jittered reconnect delays (:mod:`protocol.reconnect`)."""
        self.can_connect = True
        if broker.tls:  # mutual TLS with its own identity: the broker makes the CN the client id
            if broker.ops_cert_file is None or broker.ops_key_file is None:
                log.error("the broker needs a client certificate and broker.ops_cert_file/ops_key_file are unset: "
                          "commands and desired settings are not published")
                self.can_connect = False
            else:
                self.client.tls_set(ca_certs=str(broker.ca_file), certfile=str(broker.ops_cert_file),
                                    keyfile=str(broker.ops_key_file))

    @staticmethod
    def command_rank(state: str) -> int:
        return _RANK.get(state, 3)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        broker = self.config.broker
        if self.can_connect:
            self.client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
            self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="fleet-operations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def wake(self) -> None:
        self._wake.set()

    def operators_changed(self) -> None:
        """A unit's operators changed: publish the devices' lists again where they differ."""
        self._operators_dirty = True
        self._wake.set()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any = None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the operations publisher: %s", reason_code)
            return
        self.reconnects.connected()
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        delay = self.reconnects.failed()
        log.warning("the operations publisher cannot reach the broker; retrying in %.1f s", delay)

    def _on_disconnect(self, *_args: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self._stop.is_set():
            return
        if was:
            delay = self.reconnects.lost()
            log.warning("the operations publisher lost the broker; reconnecting in %.1f s", delay)
        else:  # closed before the broker accepted the session
            self.reconnects.failed()

    # --- messages in (inside the ingest's transaction) ----------------------------------------

    def hook(self, session: Session, messages: list[Decoded]) -> None:
        now = self.clock()
        touched = False
        for decoded in messages:
            message = decoded.message
            if isinstance(message, CommandAck):
                self._on_ack(session, message, now)
            elif isinstance(message, ConfigReported):
                self._on_reported(session, message, now)
            elif isinstance(message, UpdateProgress):
                self._on_progress(session, message, now)
            elif isinstance(message, Status) and message.state == "online":
                self._on_online(session, decoded.device_id, now)
            else:
                continue
            touched = True
        if touched:
            self._wake.set()

    def _on_ack(self, session: Session, ack: CommandAck, now: datetime) -> None:
        row = session.get(CommandRow, ack.command_id)
        if row is None or row.device_id != ack.device_id:
            return
        if row.delivered_at is None:
            row.delivered_at = now  # any answer from the device means it has the command
        if row.state == "timed_out" and ack.state == "rejected":
            return  # the device refused it for the deadline that timed it out here
        if row.state in TERMINAL and row.state != "timed_out":
            return
        if self.command_rank(ack.state) < self.command_rank(row.state):
            return  # late or duplicate
        row.state, row.updated_at = ack.state, now
        if ack.detail is not None:
            row.detail = ack.detail
        if row.rollout_id is not None and ack.state in ("rejected", "failed"):
            self._record(session, row.rollout_id, row.device_id, "failed", now, ack.detail)

    def _on_reported(self, session: Session, reported: ConfigReported, now: datetime) -> None:
        row = session.get(DeviceConfig, reported.device_id)
        if row is None:
            return
        if row.reported_version is not None and reported.version < row.reported_version:
            return
        row.reported, row.reported_version = reported.settings, reported.version
        row.applied, row.error, row.reported_at = reported.applied, reported.error, now

    def _on_progress(self, session: Session, progress: UpdateProgress, now: datetime) -> None:
        state = progress.state
        self._record(session, progress.rollout_id, progress.device_id, state, now, progress.detail)

    def _record(self, session: Session, rollout_id: str, device_id: str, state: Any, now: datetime,
                detail: str | None) -> None:
        row = session.get(RolloutRow, rollout_id, with_for_update=True)
        if row is None:
            return
        rollout = Rollout.model_validate(row.doc)
        if device_id not in rollout.devices:
            return
        rollout.record(device_id, state, now, detail)
        offer_updates(session, rollout, row, now)

    def _on_online(self, session: Session, device_id: str, now: datetime) -> None:
        # Publish again what the device has not answered: a session the broker lost, a device
        # that never subscribed before. The device ignores a command id it has seen.
        for row in session.scalars(select(CommandRow).where(CommandRow.device_id == device_id,
                                                            CommandRow.state == "queued")):
            row.published_at = None
        recompute_desired(session, [device_id], now)
        self._operators_sent.pop(device_id, None)  # a device back online gets its list (again)
        self._operators_dirty = True
        config = session.get(DeviceConfig, device_id)
        if config is not None and (config.reported_version or 0) < config.desired_version:
            config.published_version = None

    # --- the driver ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self.lease is not None and not self.lease.held():
                continue  # another fleet node drives operations
            try:
                self.tick()
            except Exception:  # the driver must keep going (database briefly away, ...)
                log.exception("fleet operations tick failed")

    def tick(self) -> None:
        """Expire, step, publish. Safe to call from anywhere (tests call it directly)."""
        now = self.clock()
        with self.sessions.begin() as session:
            for row in session.scalars(select(CommandRow).where(CommandRow.state == "queued",
                                                                CommandRow.deadline < now)):
                row.state, row.updated_at, row.detail = "timed_out", now, "deadline passed before the device took it"
                if row.rollout_id is not None:
                    self._record(session, row.rollout_id, row.device_id, "timed_out", now, row.detail)
            for rollout_row in session.scalars(select(RolloutRow).where(RolloutRow.status == "running")):
                offer_updates(session, Rollout.model_validate(rollout_row.doc), rollout_row, now)
        if not self.connected.is_set():
            return
        self._publish_desired(now)
        self._publish_commands(now)
        if self._operators_dirty:
            self._publish_operators()

    def _publish(self, device_id: str, channel: Channel, payload: bytes, *, retain: bool) -> bool:
        info = self.client.publish(topic(device_id, channel), payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(5)
        except RuntimeError:
            return False
        return info.is_published()

    def _publish_operators(self) -> None:
        self._operators_dirty = False
        with self.sessions() as session:
            lists = operator_lists(session)
        for device_id, operators in lists.items():
            content = operators.model_dump_json(include={"version", "operators"})
            if self._operators_sent.get(device_id) == content:
                continue
            if self._publish(device_id, Channel.OPERATORS, encode(operators), retain=True):
                self._operators_sent[device_id] = content
            else:
                self._operators_dirty = True  # the next tick tries again

    def _publish_desired(self, now: datetime) -> None:
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(DeviceConfig).where(
                (DeviceConfig.published_version.is_(None))
                | (DeviceConfig.published_version != DeviceConfig.desired_version))))
            for row in rows:
                desired = ConfigDesired(device_id=row.device_id, version=row.desired_version, settings=row.desired)
                if self._publish(row.device_id, Channel.CONFIG_DESIRED, encode(desired), retain=True):
                    row.published_version = row.desired_version

    def _publish_commands(self, now: datetime) -> None:
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(CommandRow).where(CommandRow.state == "queued",
                                                                 CommandRow.published_at.is_(None))))
            for row in rows:
                command = Command(id=row.id, device_id=row.device_id, name=row.name,
                                  deadline=row.deadline, args=row.args)
                if self._publish(row.device_id, Channel.CMD, encode(command), retain=False):
                    row.published_at = now
