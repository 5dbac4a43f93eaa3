"""Outbox to broker: messages go out QoS 1, at most ``window`` of them unacknowledged, and each
leaves the outbox only when the broker acknowledged it (PUBACK).

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
import sqlite3
import threading
import time
from typing import Protocol

from device.delivery.outbox import Outbox
from device.errors import OutboxFull
from protocol.messages import Message, encode
from protocol.topics import Channel, topic

log = logging.getLogger(__name__)

EARLY_ACK_S = 5.0
"""How long an acknowledgement that came before its ``publish`` returned is kept for matching."""

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

    def __init__(self, outbox: Outbox, device_id: str, *, window: int, link: Link | None = None) -> None:
        self.outbox = outbox
        self.device_id = device_id
        self.window = window
        self.link = link
        self._lock = threading.Lock()
        self._inflight: dict[int, str] = {}
        self._early: dict[int, float] = {}
        self._acked: list[str] = []
        self._last_seq = 0
        self._reset = True
        self._stop = threading.Event()
        self.published = 0

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

    def _flush_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        try:
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
        if link is None or not link.connected.is_set():
            return False
        with self._lock:
            if self._reset:
                self._reset = False
                self._inflight.clear()
                self._last_seq = 0
            room = self.window - len(self._inflight)
            now = time.monotonic()
            self._early = {m: t for m, t in self._early.items() if now - t < EARLY_ACK_S}
            after = self._last_seq
        if room <= 0:
            return False
        sent = False
        for item in self.outbox.pending_messages(after, room):
            mid = link.publish(item.topic, item.payload, qos=1)
            if mid is None:
                break
            sent = True
            self.published += 1
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
