"""The device agent's configuration: one pydantic model tree, read from YAML.

Every field has a description and a default that suits a counter kiosk, so a config file
names only what differs (at least ``device_id`` and ``unit``):

>>> from protocol.configfile import load_config
>>> cfg = load_config(AgentConfig, text="device_id: kiosk-0001\\nunit: '000.00.00.H01'\\n")
>>> cfg.scanner.dpi
300

Secrets never live here: the device key and certificate are in ``identity.dir``, the enrollment
token in ``enrollment.token_file``.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device.buttons.config import ButtonsConfig
from device.capture.config import CameraConfig, FolderConfig, SaneScannerConfig, ScannerConfig
from device.dossier.config import PdfConfig, SessionConfig
from device.inference.config import DoctypeConfig, PipelineConfig
from device.kiosk.config import KioskConfig
from device.update_config import UpdaterConfig
from protocol.configfile import ConfigError, load_config
from protocol.topics import DEVICE_ID_PATTERN
from provisioning.tokens import UNIT_CODE_PATTERN


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Model):
    """Where the MQTT broker is and how hard to hold on to it."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive in seconds")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long the broker keeps this device's session (queued commands) while it is away",
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0,
        description="Scale of the retry after a failed connection attempt: each delay is drawn at random between "
                    "zero and this, doubled per failure up to reconnect_max_s (full jitter)",
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay (doubles up to this)")
    reconnect_spread_s: float = Field(
        default=30.0, ge=0,
        description="The first reconnect after a lost connection comes at a random moment within this many seconds "
                    "(at most reconnect_max_s): a restarted broker is not met by every kiosk at once",
    )
    connect_timeout_s: float = Field(
        default=15.0, gt=0, le=300,
        description="How long one connection attempt (TCP and the TLS handshake) may take; a busy broker's "
                    "handshakes abandoned early are work it did for nothing",
    )
    tls_probe_interval_s: float = Field(
        default=600.0, ge=0,
        description="After a failed TLS connection the link may ask the broker why (revoked? expired?) with a second "
                    "connection; at most once per this many seconds, and never after a timeout or a refused TCP "
                    "connection (a busy or absent broker says nothing about the certificate)",
    )
    refused_retry_max_s: float = Field(
        default=300.0, gt=0,
        description="Longest reconnect delay while the broker refuses this device's certificate for what may be "
                    "its own fault ('unknown CA': no CRL for our CA; 'expired' with a valid certificate: a lapsed CRL)",
    )
    shutdown_flush_s: float = Field(
        default=3.0, ge=0, le=60, description="On a clean stop, wait this long for queued events to reach the broker"
    )
    max_inflight: int = Field(
        default=50, ge=1, le=1000, description="Events published and not yet acknowledged by the broker at once"
    )
    stored_timeout_s: float = Field(
        default=60.0, gt=0, le=86400,
        description="Send a message again when the fleet has not confirmed it (`stored`) this long after the "
                    "broker took it; doubles per try (each delay ±25% at random)",
    )
    stored_timeout_max_s: float = Field(
        default=1800.0, gt=0, le=7 * 86400, description="Longest wait between two sends of an unconfirmed message"
    )
    stored_forget_s: float = Field(
        default=7 * 86400.0, ge=60,
        description="With no `stored` confirmation for this long, trust the broker's acknowledgement again "
                    "(a fleet that stopped confirming, e.g. rolled back to an older version)",
    )

    @model_validator(mode="after")
    def _delays(self) -> BrokerConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.refused_retry_max_s < self.reconnect_min_s:
            raise ValueError("refused_retry_max_s must be at least reconnect_min_s")
        if self.stored_timeout_max_s < self.stored_timeout_s:
            raise ValueError("stored_timeout_max_s must be at least stored_timeout_s")
        return self


class TelemetryConfig(_Model):
    interval_s: float = Field(default=60.0, ge=1, le=86400, description="Seconds between telemetry reports")


class UploadConfig(_Model):
    enabled: bool = Field(
        default=True,
        description="Send page files to the fleet; false keeps them in the outbox whatever fleet_url and the "
        "enrollment say (files collected another way)",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout for one file")
    retry_min_s: float = Field(default=1.0, gt=0, description="First delay after a failed upload")
    retry_max_s: float = Field(default=300.0, gt=0, description="Longest delay between upload attempts")


class LocalApiConfig(_Model):
    """A small HTTP endpoint on loopback for the kiosk screen, the demo and tests: ``POST /scan``,
    ``GET /status``. It never listens beyond this machine."""

    enabled: bool = Field(default=True, description="Serve the local endpoint")
    host: str = Field(default="127.0.0.1", description="Loopback address to listen on")
    port: int = Field(default=8765, ge=0, le=65535, description="Port (0 picks a free one, written to the state dir)")

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            if value == "localhost":
                return value
            raise ValueError("must be a loopback address such as 127.0.0.1") from None
        if not address.is_loopback:
            raise ValueError("must be a loopback address such as 127.0.0.1: the endpoint has no authentication")
        return value


class TriggersConfig(_Model):
    """When the agent scans without being asked (the demo); otherwise it scans on request."""

    scan_at_start: bool = Field(default=False, description="Scan one batch as soon as the agent starts")
    scan_every_s: float | None = Field(default=None, gt=0, description="Scan a batch this often (demo kiosks)")


class UsbWatchConfig(_Model):
    enabled: bool = Field(default=True, description="Watch USB for scanners being plugged and unplugged")
    interval_s: float = Field(default=2.0, gt=0, le=600, description="How often the USB bus is looked at")


class CommandsConfig(_Model):
    """How the agent carries out the fleet's remote commands (``device/commands.py``)."""

    reboot_command: list[str] = Field(
        default_factory=lambda: ["systemctl", "reboot"],
        min_length=1,
        description="Program (and arguments) the 'reboot' command runs; tests point it at a harmless one",
    )
    reboot_timeout_s: float = Field(default=30, gt=0, le=600, description="Longest wait for the reboot program")
    restart_exit_code: int = Field(
        default=75,
        ge=1,
        le=255,
        description="Exit code after 'restart_agent' or an update's switch (non-zero: systemd restarts the agent)",
    )
    update_restart: Literal["exit", "in_process"] = Field(
        default="exit",
        description="exit: an installed update restarts the agent into the new slot; in_process: the health "
        "check runs in this process (tests, and devices run by hand)",
    )
    log_lines: int = Field(default=2000, ge=10, le=100000, description="Recent log lines 'collect_logs' uploads")


class IdentityConfig(_Model):
    """Where this device's own key and certificate live. With it, an enrolled agent
    talks to the broker over mutual TLS and signs its HTTP requests; without it the agent runs on
    plain MQTT and unsigned HTTP as before (a development set-up)."""

    dir: Path = Field(
        default=Path("/var/lib/sohoa/identity"),
        description="Identity directory (0700): device.key (0600, made here, never sent), device.crt, ca.crt",
    )
    renewal_check_s: float = Field(
        default=24 * 3600, ge=1, le=7 * 24 * 3600, description="How often the certificate's expiry is looked at"
    )
    renew_before_days: float = Field(
        default=30, gt=0, le=3650, description="Ask for a new certificate this many days before the current expires"
    )


class EnrollmentConfig(_Model):
    """First-boot enrollment: where the fleet is, which unit, and the one-time token. The token
    itself is a secret: it is read from ``token_file`` (deleted after success), never from here."""

    fleet_url: str = Field(description="Fleet API base URL to enroll with (https://...)")
    unit_code: str | None = Field(
        default=None, pattern=UNIT_CODE_PATTERN, description="Unit the token is for; default: the agent's 'unit'"
    )
    token_file: Path = Field(description="File in the secrets directory holding the enrollment token text")
    ca_file: Path | None = Field(default=None, description="The fleet CA certificate baked into the image")
    ca_pin: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-fA-F]{64}$",
        description="Or the CA's pin printed with the token (sha256:...): the CA is fetched and checked against it",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="HTTP timeout of one enrollment request")
    retry_min_s: float = Field(default=2.0, gt=0, description="First delay after a network error")
    retry_max_s: float = Field(default=300.0, gt=0, description="Longest delay between attempts after network errors")

    @field_validator("fleet_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must start with https:// (the token travels in the request)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _trust(self) -> EnrollmentConfig:
        if (self.ca_file is None) == (self.ca_pin is None):
            raise ValueError("give exactly one of ca_file and ca_pin")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        return self


class AtRestConfig(_Model):
    """How page files and PDFs waiting for delivery are encrypted on the card: always, with a
    per-device data key kept in ``state_dir/outbox.key`` wrapped by a key-encryption key from
    ``key_source``. See the README for what each source protects against."""

    key_source: Literal["board", "file"] = Field(
        default="file",
        description="board: the Raspberry Pi's OTP private key (not on the card; program it once per board); "
        "file: a 32-byte key in key_file (made on first start when missing)",
    )
    key_file: Path | None = Field(
        default=None,
        description="key_source file: where the key-encryption key lives; null: state_dir/outbox.kek, on the card "
        "beside the files (then a stolen card is not protected)",
    )
    board_command: list[str] = Field(
        default_factory=lambda: ["rpi-otp-private-key"], min_length=1,
        description="key_source board: the command that prints the board's 256-bit OTP key in hex",
    )


class AgentConfig(_Model):
    """The whole agent configuration.

    >>> AgentConfig(device_id="kiosk-0001", unit="000.00.00.H01").broker.port
    1883
    """

    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="This device's id: lower-case, digits, dashes")
    unit: str = Field(
        min_length=1, max_length=64, description="Code of the administrative unit whose counter this kiosk serves"
    )
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="MQTT broker")
    fleet_url: str | None = Field(
        default="http://127.0.0.1:8000",
        description="Fleet manager base URL for page files. An enrolled device uploads to the fleet its enrollment "
        "answer named (this URL, else enrollment.fleet_url, only when that answer had none); null with no identity "
        "keeps files here. upload.enabled: false keeps them here in every case",
    )
    state_dir: Path = Field(default=Path("/var/lib/sohoa"), description="Outbox database and page files live here")
    min_free_bytes: int = Field(
        default=500 * 1024 * 1024,
        ge=0,
        description="Below this much free disk in state_dir new scans are refused (nothing captured is lost)",
    )
    scanner: ScannerConfig | None = Field(
        default_factory=SaneScannerConfig, description="The scanner backend (type: sane or fake), or null for none"
    )
    folder: FolderConfig | None = Field(default=None, description="Folder to ingest image files from, if any")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig, description="Health reports")
    upload: UploadConfig = Field(default_factory=UploadConfig, description="Page file delivery over HTTP")
    at_rest: AtRestConfig = Field(
        default_factory=AtRestConfig, description="Encryption of the page files and PDFs waiting for delivery"
    )
    local_api: LocalApiConfig = Field(default_factory=LocalApiConfig, description="Loopback control endpoint")
    triggers: TriggersConfig = Field(default_factory=TriggersConfig, description="Scans not asked for")
    usb_watch: UsbWatchConfig = Field(default_factory=UsbWatchConfig, description="USB scanner hot-plug watch")
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig, description="Page pipeline: geometry, quality verdict, codes"
    )
    doctype: DoctypeConfig = Field(
        default_factory=DoctypeConfig,
        description="Document-type classifier (a bad model file is reported at start-up; pages are then 'other')",
    )
    session: SessionConfig = Field(default_factory=SessionConfig, description="Dossier sessions")
    buttons: ButtonsConfig = Field(
        default_factory=ButtonsConfig, description="Counter buttons, light, buzzer (real GPIO pins: a Pi only)"
    )
    camera: CameraConfig | None = Field(
        default=None, description="Document camera (type: opencv, picamera2 or fake), or null for none"
    )
    kiosk: KioskConfig = Field(default_factory=KioskConfig, description="Citizens' kiosk screen on loopback")
    pdf: PdfConfig = Field(default_factory=PdfConfig, description="Dossier PDFs")
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="Remote commands")
    updater: UpdaterConfig | None = Field(
        default=None, description="Signed A/B updates (slots under its root); null: 'update' commands are rejected"
    )
    identity: IdentityConfig | None = Field(
        default=None,
        description="This device's key and certificate; null: plain MQTT and unsigned HTTP (development only)",
    )
    enrollment: EnrollmentConfig | None = Field(
        default=None, description="Enroll with the fleet on first start (needs 'identity'); null: enroll by hand"
    )

    @model_validator(mode="after")
    def _enrollment_needs_identity(self) -> AgentConfig:
        if self.enrollment is not None and self.identity is None:
            raise ValueError("enrollment needs an identity section (where to keep the key and certificate)")
        if self.enrollment is not None and self.enrollment.unit_code is None and not re.match(
                UNIT_CODE_PATTERN, self.unit):
            raise ValueError("'unit' is not a unit code the fleet accepts: set enrollment.unit_code")
        return self

    @field_validator("fleet_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def load(path: Path | str) -> AgentConfig:
    """Read and validate a config file; :class:`ConfigError` lists every problem with file:line."""
    return load_config(AgentConfig, Path(path))


def validate_config_main(path: str) -> int:
    """``sohoa-device validate-config FILE``: print each error as ``file:line: key: message``."""
    try:
        load(path)
    except ConfigError as exc:
        for line in exc.errors:
            sys.stderr.write(line + "\n")
        return 1
    sys.stdout.write(f"{path}: ok\n")
    return 0
