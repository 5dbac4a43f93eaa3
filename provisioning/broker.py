"""The mosquitto configuration that makes each device speak only for itself.

One TLS listener where every client must present a certificate from the fleet's CA
(``require_certificate``), checked against the CA's CRL (``crlfile``); the certificate's CN becomes
the MQTT username (``use_identity_as_username``) and also the client id
(``use_username_as_clientid``: a device cannot take over another device's session by borrowing its
client id). The ACL then gives each device rights only under ``sohoa/v1/<its id>/``, per channel
and direction from :mod:`protocol.topics`, and gives the fleet's ingest identities read on every
device's tree (including ``$share/<group>/sohoa/v1/+/#``) and write on ``cmd`` and
``config/desired``.

An optional plain listener on 127.0.0.1 (anonymous, no ACL) exists for the one-command demo only.

mosquitto 2.0 answers a forbidden SUBSCRIBE with a *granted* SUBACK but never delivers a message
the ACL does not let the client read; a forbidden PUBLISH is dropped (MQTT v5: PUBACK 0x87) and
logged as ``Denied PUBLISH``. :func:`scan_log` finds both kinds of attempt in the broker's log.

>>> cfg = BrokerConfig(cafile=Path("ca.crt"), certfile=Path("broker.crt"), keyfile=Path("broker.key"),
...                    crlfile=Path("crl.pem"), acl_file=Path("acl"))
>>> "require_certificate true" in render_mosquitto_conf(cfg)
True
>>> "pattern write sohoa/v1/%u/event" in render_acl(cfg)
True

See ``provisioning/BROKERS.md`` for the same scheme on EMQX and HiveMQ.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.messages import MAX_PAYLOAD_BYTES
from protocol.topics import DEVICE_TO_FLEET, FLEET_TO_DEVICE, ROOT, Channel, is_valid_device_id
from provisioning.ca import FLEET_INGEST, is_service_name
from provisioning.files import write_public

PACKET_OVERHEAD_BYTES = 1024
"""Room for an MQTT PUBLISH's fixed header, topic (``sohoa/v1/<64-char id>/<channel>``), packet id and
MQTT v5 properties on top of the protocol's largest payload."""


class BrokerConfig(BaseModel):
    """What the broker needs to know to enforce per-device identity."""

    model_config = ConfigDict(extra="forbid")

    tls_port: int = Field(8883, ge=1, le=65535, description="Port of the mutual-TLS listener (devices, ingest).")
    tls_bind: str = Field("0.0.0.0", description="Address the TLS listener binds (0.0.0.0: every interface).")  # noqa: S104
    cafile: Path = Field(description="The fleet CA certificate: only client certificates it signed are accepted.")
    certfile: Path = Field(description="The broker's server certificate (issued by the same CA).")
    keyfile: Path = Field(description="The broker's private key (mode 0600, readable by the broker's user).")
    crlfile: Path = Field(description="The CA's CRL; rewrite it and SIGHUP the broker to refuse revoked devices.")
    acl_file: Path = Field(description="Where the generated ACL file lives.")
    tls_version: Literal["tlsv1.2", "tlsv1.3"] = Field(
        "tlsv1.2", description="Oldest TLS version accepted (mosquitto's tls_version).")
    ingest_identities: list[str] = Field(
        default_factory=lambda: [FLEET_INGEST],
        description="Certificate CNs of the fleet ingest workers (one per worker: the client id is the CN).")
    device_rights: Literal["channels", "own_tree"] = Field(
        "channels",
        description="'channels': write only device->fleet channels, read only fleet->device channels of its "
                    "own id; 'own_tree': read and write anything under sohoa/v1/<own id>/.")
    force_client_id: bool = Field(
        True, description="Client id = certificate CN (use_username_as_clientid), so no session takeover.")
    plain_loopback_port: int | None = Field(
        None, ge=1, le=65535,
        description="DEMO ONLY: an anonymous, ACL-free plain MQTT listener on 127.0.0.1 at this port.")
    max_packet_bytes: int = Field(
        MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES, ge=MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES, le=16 * 1024 * 1024,
        description="mosquitto's max_packet_size: a client sending a larger packet is disconnected by the broker, "
                    "before any subscriber (the ingest) receives a byte of it. At least the protocol's largest "
                    "payload plus the topic and header.")
    persistence_dir: Path | None = Field(None, description="Where mosquitto keeps sessions and queued messages.")
    autosave_interval_s: int = Field(
        2, ge=1, le=1800,
        description="How often mosquitto writes its sessions and queued messages to disk. Devices delete an event "
                    "once the broker acknowledges it, so a broker crash loses what arrived since the last save for "
                    "a fleet that was away; mosquitto's own default is 1800 s.")
    max_queued_messages: int = Field(
        100_000, ge=1000,
        description="Messages mosquitto holds for one persistent session that is away (above all the fleet's "
                    "ingest while the fleet restarts). mosquitto's own default, 1000, is fewer than one status "
                    "per kiosk once 1000 kiosks reconnect while the fleet is away: what is over it is dropped "
                    "without a word, and kiosks must wait for their re-send timers. A queued message is stored "
                    "once however many sessions it waits in.")
    log_file: Path | None = Field(None, description="Log file (default: syslog).")
    log_debug: bool = Field(
        True, description="log_type all: mosquitto logs a denied PUBLISH only at debug level. Topics and sizes are "
                          "logged, never payloads, and topics hold no personal data.")
    run_as_user: str | None = Field(
        None, description="mosquitto's 'user' (the account it drops to); it must be able to read the key and CRL.")

    @field_validator("ingest_identities")
    @classmethod
    def _services(cls, names: list[str]) -> list[str]:
        for name in names:
            if not is_service_name(name):
                raise ValueError(f"{name!r} is not a service name (dotted, e.g. fleet.ingest): a device id "
                                 "here would give that device the ingest's rights")
        return names

    @model_validator(mode="after")
    def _ports(self) -> Self:
        if self.plain_loopback_port is not None and self.plain_loopback_port == self.tls_port:
            raise ValueError("plain_loopback_port must differ from tls_port")
        try:
            ipaddress.ip_address(self.tls_bind)
        except ValueError:
            raise ValueError(f"tls_bind must be an IP address, not {self.tls_bind!r}") from None
        return self


def _channel_lines(device_rights: str) -> list[str]:
    if device_rights == "own_tree":
        return [f"pattern readwrite {ROOT}/%u/#"]
    lines = [f"pattern write {ROOT}/%u/{c.value}" for c in Channel if c in DEVICE_TO_FLEET]
    lines += [f"pattern read {ROOT}/%u/{c.value}" for c in Channel if c in FLEET_TO_DEVICE]
    return lines


def render_acl(cfg: BrokerConfig) -> str:
    """The mosquitto ACL file text. Patterns apply to every client (``%u`` = its certificate CN);
    a service's CN contains a dot, so its pattern topics match no device's tree."""
    out = ["# Generated by provisioning.broker: edit the BrokerConfig, not this file.",
           "# No line before the first 'user': anonymous clients get nothing.", ""]
    for name in cfg.ingest_identities:
        out += [f"# fleet ingest worker {name}: reads every device, writes commands, desired config, confirmations",
                f"user {name}",
                f"topic read {ROOT}/+/#",
                *(f"topic write {ROOT}/+/{c.value}" for c in Channel if c in FLEET_TO_DEVICE), ""]
    out += ["# every device, only under its own id (username = certificate CN = device id)",
            *_channel_lines(cfg.device_rights), ""]
    return "\n".join(out)


def render_mosquitto_conf(cfg: BrokerConfig) -> str:
    """The mosquitto.conf text (mosquitto 2.0)."""
    g = ["# Generated by provisioning.broker: edit the BrokerConfig, not this file.",
         "per_listener_settings true"]
    if cfg.run_as_user:
        g.append(f"user {cfg.run_as_user}")
    if cfg.persistence_dir is not None:
        g += ["persistence true", f"persistence_location {cfg.persistence_dir}/",
              f"autosave_interval {cfg.autosave_interval_s}"]
    g += ["# A device cannot make the broker (and the ingest) swallow more than one protocol message.",
          f"max_packet_size {cfg.max_packet_bytes}",
          "# What waits for an away session (the ingest during a fleet restart) is kept, not dropped.",
          f"max_queued_messages {cfg.max_queued_messages}"]
    g.append(f"log_dest file {cfg.log_file}" if cfg.log_file else "log_dest syslog")
    g += ["log_timestamp true", "connection_messages true"]
    g += ["log_type all"] if cfg.log_debug else ["log_type error", "log_type warning", "log_type notice",
                                                 "log_type information", "log_type subscribe"]
    g += ["", "# Mutual TLS: a certificate from the fleet CA is the only way in.",
          f"listener {cfg.tls_port} {cfg.tls_bind}",
          "protocol mqtt",
          f"cafile {cfg.cafile}",
          f"certfile {cfg.certfile}",
          f"keyfile {cfg.keyfile}",
          f"crlfile {cfg.crlfile}",
          f"tls_version {cfg.tls_version}",
          "require_certificate true",
          "use_identity_as_username true"]
    if cfg.force_client_id:
        g.append("use_username_as_clientid true")
    g += ["allow_anonymous false", f"acl_file {cfg.acl_file}"]
    if cfg.plain_loopback_port is not None:
        g += ["", "# DEMO ONLY: plain, anonymous, no ACL; reachable from this machine only.",
              f"listener {cfg.plain_loopback_port} 127.0.0.1",
              "protocol mqtt",
              "allow_anonymous true"]
    return "\n".join(g) + "\n"


def write_broker_config(cfg: BrokerConfig, conf_path: Path) -> tuple[Path, Path]:
    """Write ``mosquitto.conf`` at ``conf_path`` and the ACL at ``cfg.acl_file`` (both atomically);
    then start mosquitto with ``-c conf_path`` or SIGHUP a running one."""
    if cfg.persistence_dir is not None:
        cfg.persistence_dir.mkdir(parents=True, exist_ok=True)
    write_public(cfg.acl_file, render_acl(cfg).encode())
    write_public(conf_path, render_mosquitto_conf(cfg).encode())
    return conf_path, cfg.acl_file


# --- reading the broker's log ------------------------------------------------------------------

_DENIED_PUBLISH = re.compile(r"Denied PUBLISH from (?P<client>\S+) \(.*?'(?P<topic>[^']*)'")
_SUBSCRIBE = re.compile(r"^(?:\d+: )?(?P<client>\S+) (?P<qos>[0-2]) (?P<topic>\S+)$")


@dataclass(frozen=True)
class AclViolation:
    """A device's attempt outside its own tree, as the broker logged it."""

    client: str
    action: Literal["publish", "subscribe"]
    topic: str


def _outside_own_tree(client: str, topic_filter: str) -> bool:
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    return not topic_filter.startswith(f"{ROOT}/{client}/")


def scan_log(lines: Iterable[str]) -> list[AclViolation]:
    """Every denied publish, and every subscription by a device to a filter outside its own
    ``sohoa/v1/<id>/`` (mosquitto grants those but delivers nothing: the log line is the trace).

    Relies on client id = device id, which :attr:`BrokerConfig.force_client_id` guarantees.
    Service identities (dotted CNs) may subscribe anywhere their ACL allows and are not reported
    for subscriptions.
    """
    found: list[AclViolation] = []
    for raw in lines:
        line = raw.rstrip("\n")
        if m := _DENIED_PUBLISH.search(line):
            found.append(AclViolation(m["client"], "publish", m["topic"]))
        elif (m := _SUBSCRIBE.match(line)) and is_valid_device_id(m["client"]) \
                and _outside_own_tree(m["client"], m["topic"]):
            found.append(AclViolation(m["client"], "subscribe", m["topic"]))
    return found
