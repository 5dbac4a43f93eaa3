"""Outbox to broker: messages go out QoS 1, at most ``window`` of them unacknowledged, and each
leaves the outbox only when the fleet confirmed it stored it (``stored``), or, with a fleet that
does not confirm, when the broker acknowledged it (PUBACK).

End to end: a broker that dies before its next save, or that forgets an offline shared
subscription across a restart, loses messages it had acknowledged; so once the fleet has been
heard confirming (:meth:`Publisher.on_stored`, remembered in the outbox), a PUBACK only starts a
timer, and a message not confirmed in time is sent again (``stored_timeout_s`` doubling per try up
to ``stored_timeout_max_s``, each wait ±25% at random so a fleet of kiosks does not re-send in
step). After a reconnect every unconfirmed message goes again, spread over a quarter of the
timeout; a confirmation also hastens the messages the broker took well before the one confirmed
(the fleet is back and they were probably lost). A fleet silent for ``stored_forget_s`` (rolled
back to a version that never confirms) is no longer waited for: the broker's word suffices again.

The link's network thread reports acknowledgements (:meth:`Publisher.on_published`); the
publisher's own thread (:meth:`Publisher.run`) publishes and forgets. An acknowledgement can
arrive before ``publish`` has returned its message id (paho's thread is faster than ours): it is
kept for a few seconds and matched then. After a reconnect everything not acknowledged goes
again: duplicates are fine (receivers deduplicate on ids), losses are not.

>>> from pathlib import Path
>>> from tempfile import TemporaryDirectory
>>> from device.delivery.outbox import Outbox
>>> from protocol.messages import AgentStarted
>>> class Broker:  # what the publisher needs of device.delivery.link.MqttLink
...     def __init__(self):
...         self.connected = threading.Event()
...         self.sent = []
...     def publish(self, topic, payload, qos=1):
...         self.sent.append(topic)
...         return len(self.sent)
>>> with TemporaryDirectory() as tmp, Outbox(Path(tmp)) as outbox:
...     broker = Broker()
...     publisher = Publisher(outbox, "kiosk-0001", window=8, link=broker)
...     publisher.emit(AgentStarted(device_id="kiosk-0001", agent_version="0.1.0"))
...     broker.connected.set()
...     publisher.on_connect()
...     publisher.step(), broker.sent
...     publisher.on_published(1)
...     publisher.step(), outbox.depth().events
(True, ['sohoa/v1/kiosk-0001/event'])
(False, 0)
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Protocol

from device.delivery.outbox import Outbox
from device.errors import OutboxFull
from protocol.errors import ProtocolError
from protocol.messages import Message, Stored, decode, encode
from protocol.topics import Channel, topic

log = logging.getLogger(__name__)

EARLY_ACK_S = 5.0
"""How long an acknowledgement that came before its ``publish`` returned is kept for matching."""

FLEET_CONFIRMS = "fleet_confirms"
"""The outbox note holding when the fleet last confirmed a message (absent: never, or forgotten)."""
NOTE_EVERY_S = 60.0
"""How often the time of the last confirmation is written down (a write per confirmation is waste)."""

class Link(Protocol):
    """What the publisher needs of the MQTT link (:class:`device.delivery.link.MqttLink`)."""

    connected: threading.Event

    def publish(self, topic_name: str, payload: bytes, qos: int = 1) -> int | None:
        """The message id, or None when nothing was queued (not connected)."""
        ...


class Publisher:
    """Moves outbox messages to the broker, keeping at most ``window`` unacknowledged.

    ``link`` may be given later (the link is made with :meth:`on_published` as its callback).
    """

    def __init__(self, outbox: Outbox, device_id: str, *, window: int, link: Link | None = None,
                 stored_timeout_s: float = 60.0, stored_timeout_max_s: float = 1800.0,
                 stored_forget_s: float = 7 * 86400.0, clock: Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.device_id = device_id
        self.window = window
        self.link = link
        self.stored_timeout_s = stored_timeout_s
        self.stored_timeout_max_s = stored_timeout_max_s
        self.stored_forget_s = stored_forget_s
        self.clock = clock
        self._stored_topic = topic(device_id, Channel.STORED)
        self._lock = threading.Lock()
        self._inflight: dict[int, str] = {}
        self._early: dict[int, float] = {}
        self._acked: list[str] = []
        self._confirmed: list[str] = []
        self._heard: float | None = None  # when the last confirmation arrived, not yet written down
        self._fleet_confirms = outbox.note(FLEET_CONFIRMS)
        self._last_seq = 0
        self._reset = True
        self._stop = threading.Event()
        self.published = 0
        self.resent = 0
        """Messages sent again because the fleet had not confirmed them (tests, telemetry)."""

    # --- what the rest of the agent calls ---------------------------------------------------------

    def emit(self, message: Message, channel: Channel = Channel.EVENT) -> None:
        """Store a message in the outbox (:meth:`run` sends it). If the disk is too full even for
        that, send it directly (best effort) and say so."""
        name = topic(self.device_id, channel)
        try:
            self.outbox.add_message(name, encode(message), message.id)
        except OutboxFull:
            log.error("disk full: a message for %s could not be stored; sending it without a copy", channel.value)
            if self.link is not None:
                self.link.publish(name, encode(message), qos=1)

    def drain(self, seconds: float) -> None:
        """Give the broker up to ``seconds`` to take what is queued, while connected (before a
        restart, a reboot or a stop; what is left goes after it)."""
        link = self.link
        deadline = time.monotonic() + seconds
        while (link is not None and link.connected.is_set() and self.outbox.depth().events
               and time.monotonic() < deadline):
            with self.outbox.changed:
                self.outbox.changed.wait(0.1)

    # --- the link's callbacks (paho's network thread) ---------------------------------------------

    def on_connect(self) -> None:
        with self._lock:
            self._reset = True
        self._wake()

    def on_stored(self, topic_name: str, payload: bytes) -> bool:
        """A message on ``stored``: remember its ids for the publisher's thread. False (and a
        warning, never the payload) when it is not a confirmation for this device."""
        try:
            decoded = decode(topic_name, payload)
        except ProtocolError as exc:
            log.warning("refused a stored confirmation: %s (%s)", exc.reason, exc.detail)
            return False
        message = decoded.message
        if topic_name != self._stored_topic or not isinstance(message, Stored):
            log.warning("refused a stored confirmation: not for this device")
            return False
        with self._lock:
            self._confirmed.extend(message.ids)
            self._heard = self.clock()
        self._wake()
        return True

    def waits_for_fleet(self) -> bool:
        """True when a message stays until the fleet confirms it (the fleet has been heard
        confirming within ``stored_forget_s``)."""
        heard = self._fleet_confirms
        return heard is not None and self.clock() - heard < self.stored_forget_s

    def on_published(self, mid: int) -> None:
        with self._lock:
            message_id = self._inflight.pop(mid, None)
            if message_id is None:
                self._early[mid] = time.monotonic()
            else:
                self._acked.append(message_id)
        self._wake()

    # --- the publisher's thread -------------------------------------------------------------------

    def inflight(self) -> int:
        """Messages published and not acknowledged yet."""
        with self._lock:
            return len(self._inflight)

    def _wake(self) -> None:
        with self.outbox.changed:
            self.outbox.changed.notify_all()

    def _wait(self, tries: int) -> float:
        """How long after the broker took it a message is sent again unless confirmed."""
        base = min(self.stored_timeout_s * 2 ** min(tries - 1, 20), self.stored_timeout_max_s)
        return float(base * random.uniform(0.75, 1.25))

    def _flush_confirmed(self) -> None:
        """Forget what the fleet confirmed; note that it confirms; hasten what was probably lost."""
        with self._lock:
            confirmed, self._confirmed = self._confirmed, []
            heard, self._heard = self._heard, None
        if heard is not None:
            if self._fleet_confirms is None:
                log.info("the fleet confirms what it stores: messages now stay until it does")
            if self._fleet_confirms is None or heard - self._fleet_confirms >= NOTE_EVERY_S:
                self.outbox.set_note(FLEET_CONFIRMS, heard)
                self._fleet_confirms = heard
        if not confirmed:
            return
        newest = self.outbox.confirm(confirmed)
        self._wake()  # whoever waits for the outbox to empty
        if newest is not None:
            now = self.clock()
            self.outbox.hasten(newest - self.stored_timeout_s, now, self.stored_timeout_s / 4)

    def _forget_silent_fleet(self) -> None:
        """The fleet has confirmed nothing for ``stored_forget_s``: trust the broker again."""
        if self._fleet_confirms is None or self.waits_for_fleet():
            return
        forgotten = self.outbox.forget_taken()
        self.outbox.set_note(FLEET_CONFIRMS, None)
        self._fleet_confirms = None
        log.warning("the fleet has confirmed nothing for %.0f h: the broker's acknowledgement suffices again; "
                    "%d message(s) it took are forgotten", self.stored_forget_s / 3600, forgotten)

    def _flush_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            if self.waits_for_fleet():
                self.outbox.messages_taken(acked, self.clock(), self._wait)
            else:
                self.outbox.remove_messages(acked)
        except sqlite3.OperationalError as exc:
            # Deleting needs a little space in the WAL: on a full disk, keep the ids and try
            # again (the messages may go twice meanwhile; receivers deduplicate).
            with self._lock:
                self._acked.extend(acked)
            raise OutboxFull(f"cannot forget acknowledged messages: {exc}") from None

    def step(self) -> bool:
        """Forget what was acknowledged, publish what fits in the window; True when something was sent."""
        link = self.link
        try:
            self._flush_acks()
        except OutboxFull as exc:
            # Keep publishing: forgetting can wait for space, delivering should not.
            log.debug("publisher: %s", exc)
        try:
            self._flush_confirmed()
            self._forget_silent_fleet()
        except sqlite3.OperationalError as exc:
            log.debug("publisher: cannot forget confirmed messages yet: %s", exc)
        if link is None or not link.connected.is_set():
            return False
        with self._lock:
            reset, self._reset = self._reset, False
            if reset:
                self._inflight.clear()
                self._last_seq = 0
            room = self.window - len(self._inflight)
            now = time.monotonic()
            self._early = {m: t for m, t in self._early.items() if now - t < EARLY_ACK_S}
            after = self._last_seq
            inflight = set(self._inflight.values())
        wall = self.clock()
        if reset and self._fleet_confirms is not None:
            # The broker may have restarted without what it had taken: send it all again, spread out.
            self.outbox.hasten(wall, wall, self.stored_timeout_s / 4)
        if room <= 0:
            return False
        items = self.outbox.pending_messages(after, room, now=wall)
        if len(items) < room:
            again = self.outbox.due_again(after, wall, room - len(items) + len(inflight))
            items += [item for item in again if item.id not in inflight][:room - len(items)]
        sent = False
        for item in items:
            mid = link.publish(item.topic, item.payload, qos=1)
            if mid is None:
                break
            sent = True
            self.published += 1
            if item.sent:
                self.resent += 1
            with self._lock:
                self._last_seq = max(self._last_seq, item.seq)
                if self._early.pop(mid, None) is not None:
                    self._acked.append(item.id)
                else:
                    self._inflight[mid] = item.id
        return sent

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.step():
                    continue
            except (OutboxFull, sqlite3.Error) as exc:
                log.warning("publisher: %s; retrying", exc)
                self._stop.wait(1.0)
                continue
            with self.outbox.changed:
                if not self._stop.is_set():
                    self.outbox.changed.wait(0.5)
        with contextlib.suppress(OutboxFull):
            self._flush_acks()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
