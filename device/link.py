"""The agent's one MQTT connection (paho-mqtt 2.x, MQTT v5, VERSION2 callbacks).

Client id = device id, persistent session (``clean_start=False`` with a session expiry) so
commands sent while the device was away wait at the broker, a Last Will that marks the device
``offline`` (retained) and a retained ``online`` on every connect. Callbacks run on paho's
network thread: they hand work over and return quickly.

>>> link = MqttLink("kiosk-0001", BrokerConfig(), "0.1.0", on_message=print)  # doctest: +SKIP
>>> link.start(); link.connected.wait(5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import BrokerConfig
from protocol.messages import Status, encode
from protocol.topics import Channel, topic

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]


class MqttLink:
    """One paho client with the house's conventions; see the module docstring."""

    def __init__(
        self,
        device_id: str,
        broker: BrokerConfig,
        agent_version: str,
        on_message: MessageHandler,
        unit: str | None = None,
        on_connect: Callable[[], None] | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self.broker = broker
        self.agent_version = agent_version
        self.unit = unit
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_published = on_published
        self.connected = threading.Event()
        self._closing = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        client.will_set(
            topic(device_id, Channel.STATUS), encode(Status(device_id=device_id, state="offline")), qos=1, retain=True
        )
        client.reconnect_delay_set(
            min_delay=max(1, round(broker.reconnect_min_s)), max_delay=max(1, round(broker.reconnect_max_s))
        )
        client.max_inflight_messages_set(broker.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after a loss."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry_s
        self._client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        log.info("connected to the broker at %s:%s", self.broker.host, self.broker.port)
        online = Status(device_id=self.device_id, state="online", agent_version=self.agent_version, unit=self.unit)
        client.publish(topic(self.device_id, Channel.STATUS), encode(online), qos=1, retain=True)
        client.subscribe([(topic(self.device_id, Channel.CMD), 1), (topic(self.device_id, Channel.CONFIG_DESIRED), 1)])
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect()

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._closing:
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # a bad message must never stop the network thread
            log.exception("handling an incoming message failed")

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if self._on_published is not None:
            self._on_published(mid)

    # --- use ------------------------------------------------------------------------------------

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Publish; returns the message id, or None when not connected (nothing was queued)."""
        if not self.connected.is_set():
            return None
        info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    def close(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained) when connected, then disconnect and stop the network thread."""
        self._closing = True
        if self.connected.is_set():
            offline = Status(device_id=self.device_id, state="offline")
            info = self._client.publish(topic(self.device_id, Channel.STATUS), encode(offline), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.debug("offline status not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
