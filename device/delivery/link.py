"""The agent's one MQTT connection (paho-mqtt 2.x, MQTT v5, VERSION2 callbacks).

Client id = device id, persistent session (``clean_start=False`` with a session expiry) so
commands sent while the device was away wait at the broker, a Last Will that marks the device
``offline`` (retained) and a retained ``online`` on every connect. Callbacks run on paho's
network thread: they hand work over and return quickly.

With a device identity (``device/enroll.py``) the link speaks mutual TLS with the device certificate to the
broker named in the enrollment answer (``mqtts://host:port``; a fleet may name a plain
``mqtt://`` broker on loopback, for tests and a one-machine demo). After a failed connect it asks the
broker why (:func:`provisioning.identity.probe_tls`): a certificate that is revoked or expired
will never be accepted, so the link stops reconnecting and reports it (``on_revoked``) instead of
retrying forever. The probe is a second TLS handshake, so it is rate-limited and skipped when the
broker is merely down or busy (:mod:`protocol.reconnect`, which also draws the jittered
reconnect delays: paho's own back-off doubles without jitter, and kiosks that lost a restarted
broker together would keep knocking together).

"Unknown CA" is not taken as final: OpenSSL says the same when the broker lacks our CA's CRL, a
fleet-side fault that would otherwise strand every kiosk; the link retries slowly.
:meth:`MqttLink.reconnect` picks up a renewed certificate.

>>> link = MqttLink("kiosk-0001", BrokerConfig(), "0.1.0", on_message=print)  # doctest: +SKIP
>>> link.start(); link.connected.wait(5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import BrokerConfig
from protocol.messages import Status, encode
from protocol.reconnect import Failure, PahoReconnects, ReconnectSchedule, classify
from protocol.topics import Channel, topic
from provisioning.identity import DeviceIdentity, probe_tls

REFUSED_FOR_GOOD = frozenset({"revoked", "expired"})
"""TLS verdicts after which reconnecting cannot help: the device shows "revoked" instead
("expired" only when this device's certificate really has; see :meth:`MqttLink._probe`)."""

PROBE_WAIT_S = 3.0
"""After a failure that starts a probe, the next attempt waits at least this long: the probe's
verdict (at most its 2 s of listening for an alert) comes before it."""

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
        identity: DeviceIdentity | None = None,
        on_revoked: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``identity``: connect with mutual TLS as this enrolled device (None: plain MQTT, as
        configured in ``broker``); ``on_revoked(verdict)`` runs once the broker refuses the
        certificate for good (on a probe thread); ``rng``: where reconnect delays are drawn
        from (a seeded one replays a schedule)."""
        self.device_id = device_id
        self.broker = broker
        self.agent_version = agent_version
        self.unit = unit
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_published = on_published
        self.connected = threading.Event()
        self._closing = False
        self.identity = identity
        self._on_revoked = on_revoked
        self._tls: ssl.SSLContext | None = None
        self._probing = threading.Lock()
        self.refused: str | None = None
        """Why the broker refuses this device for good ("revoked", "expired", "unknown_ca"), once known."""
        self.broker_refusal: str | None = None
        """What the broker last answered to a refused connect that may be the fleet's fault
        ("unknown_ca", "expired" with a valid certificate): the link keeps retrying, slowly, and
        forgets it on the next connect. For ``GET /status``."""
        self.gave_up = threading.Event()
        """Set when the link stopped reconnecting because of :attr:`refused`."""
        self.connects = 0
        """Successful connections so far (tests see a reconnect after a renewal)."""
        self.failures: Counter[Failure] = Counter()
        """Failed connection attempts by kind (:data:`protocol.reconnect.Failure`)."""
        self.probes = 0
        """TLS probes made (each one more handshake for the broker)."""
        self.schedule = ReconnectSchedule(first_s=broker.reconnect_min_s, cap_s=broker.reconnect_max_s,
                                          spread_s=broker.reconnect_spread_s,
                                          probe_interval_s=broker.tls_probe_interval_s, rng=rng)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        client.will_set(
            topic(device_id, Channel.STATUS), encode(Status(device_id=device_id, state="offline")), qos=1, retain=True
        )
        client.max_inflight_messages_set(broker.max_inflight)
        client.connect_timeout = broker.connect_timeout_s
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client
        self.reconnects = PahoReconnects(client, self.schedule)

    def address(self) -> tuple[str, int]:
        """Where the broker is: the enrollment answer's ``broker_url`` for an enrolled device,
        else ``broker.host``/``broker.port``."""
        url = self.identity.addresses().get("broker_url") if self.identity is not None else None
        if url:
            parts = urlsplit(url)
            if parts.hostname:
                return parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        return self.broker.host, self.broker.port

    def uses_tls(self) -> bool:
        """Mutual TLS for an enrolled device, unless the fleet named a plain ``mqtt://`` broker
        (the fleet allows that only on loopback: tests, a one-machine demo)."""
        if self.identity is None:
            return False
        url = self.identity.addresses().get("broker_url")
        return not (url and urlsplit(url).scheme == "mqtt")

    def _use_tls(self) -> None:
        """Configure TLS with the identity's current certificate; after a renewal the same
        context (paho takes one only once) loads the new certificate and key."""
        assert self.identity is not None
        files = self.identity.tls_files()
        if self._tls is None:
            self._tls = self.identity.ssl_context()
            self._client.tls_set_context(self._tls)
        else:
            self._tls.load_cert_chain(str(files.certfile), str(files.keyfile))

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after a loss."""
        if self.refused is not None:
            return
        if self.uses_tls():
            self._use_tls()
        host, port = self.address()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry_s
        self._client.connect_async(
            host, port, keepalive=self.broker.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def reconnect(self) -> None:
        """Drop the connection and connect again (a renewed certificate takes effect)."""
        if self.refused is not None:
            return
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        self._closing = False
        log.info("reconnecting to the broker with the current certificate")
        self.start()

    def stop_reconnecting(self, reason: str) -> None:
        """Give up on the broker for good (the fleet refuses this device): no more attempts."""
        if self.refused is None:
            self.refused = reason
        self.close(timeout=2.0)  # still connected (the fleet's API refused first): say offline
        self.gave_up.set()

    def _after_failure(self, failure: Failure) -> None:
        """A connection attempt failed: draw the delay before the next, and, when the failure may
        be about our certificate and the last probe is long enough ago, ask the broker why on a
        thread of its own (the probe waits for the broker's verdict; paho's network thread must
        not)."""
        self.failures[failure] += 1
        delay = self.schedule.after_failure()
        if self._may_probe(failure):
            # The verdict comes first: a revoked device makes no attempt it would then abandon.
            delay = max(delay, PROBE_WAIT_S)
            self.probes += 1
            threading.Thread(target=self._probe, name="mqtt-tls-probe", daemon=True).start()
        self.reconnects.next_attempt_in(delay)

    def _may_probe(self, failure: Failure) -> bool:
        """Whether to probe after this failure; if so the probe lock is taken (``_probe`` frees it)."""
        if not self.uses_tls() or self._closing or self.refused is not None:
            return False
        if self._probing.locked():
            return False  # one probe at a time: its answer covers this failure too
        if not self.schedule.may_probe(failure):
            return False
        return self._probing.acquire(blocking=False)

    @property
    def delays(self) -> list[float]:
        """The reconnect delays drawn so far, in order (the last few hundred)."""
        return self.reconnects.delays

    def _certificate_expired(self) -> bool:
        assert self.identity is not None
        try:
            return self.identity.certificate().not_valid_after_utc <= datetime.now(UTC)
        except (OSError, ValueError):
            return True

    def _probe(self) -> None:
        try:
            assert self.identity is not None
            host, port = self.address()
            try:
                verdict = probe_tls(host, port, self.identity.ssl_context())
            except (OSError, ValueError) as exc:  # the identity files themselves are unusable
                log.error("cannot read this device's certificate: %s", exc)
                return
            if self._closing:
                return
            if verdict == "unknown_ca" or (verdict == "expired" and not self._certificate_expired()):
                # Both may be the fleet's fault, refusing every device at once: OpenSSL alerts
                # "expired" for a lapsed CRL at the broker and "unknown CA" when the broker has no
                # CRL for our CA (another CA's CRL file, an empty one). Giving up would strand
                # every kiosk until someone visits it; a device that really is from another CA
                # costs the broker one handshake every few minutes.
                if self.broker_refusal != verdict:
                    log.error("the broker refuses this device's certificate (%s) although it may be the broker's "
                              "CRL at fault; retrying every %d s at most", verdict, self._slow_retry_s())
                self._retry_slowly(verdict)
                return
            if verdict not in REFUSED_FOR_GOOD:
                log.debug("TLS probe of the broker: %s", verdict)
                return
            log.error("the broker refuses this device's certificate (%s): not reconnecting", verdict)
            self.stop_reconnecting(verdict)
        finally:
            self._probing.release()
        if self._on_revoked is not None and self.refused is not None:
            self._on_revoked(self.refused)

    def _slow_retry_s(self) -> int:
        return max(1, round(self.broker.refused_retry_max_s))

    def _retry_slowly(self, verdict: str) -> None:
        self.broker_refusal = verdict
        self.schedule.set_cap(self.broker.refused_retry_max_s)

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        if self.broker_refusal is not None:
            log.info("the broker accepts this device's certificate again")
            self.broker_refusal = None
            self.schedule.set_cap(self.broker.reconnect_max_s)
        self.reconnects.connected()
        self.connects += 1
        log.info("connected to the broker at %s:%s%s", *self.address(), " (TLS)" if self.uses_tls() else "")
        online = Status(device_id=self.device_id, state="online", agent_version=self.agent_version, unit=self.unit)
        client.publish(topic(self.device_id, Channel.STATUS), encode(online), qos=1, retain=True)
        client.subscribe([(topic(self.device_id, channel), 1) for channel in
                          (Channel.CMD, Channel.CONFIG_DESIRED, Channel.STORED, Channel.OPERATORS)])
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect()

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self._closing:
            return
        if was:
            delay = self.reconnects.lost()
            log.warning("lost the broker (%s); reconnecting in %.1f s", reason_code, delay)
            return
        # Closed after the handshake, before the broker accepted the session.
        self._after_failure("busy" if str(reason_code) == "Keep alive timeout" else classify(None))

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` around the attempt: the exception
        # being handled says why it failed.
        self._after_failure(classify(sys.exc_info()[1]))

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
