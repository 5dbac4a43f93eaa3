"""The fleet manager's configuration: one pydantic model tree, ``extra="forbid"``.

Every field has a default, so ``sohoa-fleet serve`` runs with no file at all: SQLite and page
files under ``./var/fleet/``, the broker on 127.0.0.1:1883, HTTP on 127.0.0.1:8000.

>>> cfg = FleetConfig()
>>> cfg.http.port, cfg.broker.port
(8000, 1883)
>>> FleetConfig.model_validate({"database": {"url": "postgresql+psycopg://fleet@db/fleet"}}).database.is_sqlite
False
"""

import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet.alerts.config import AlertsConfig
from fleet.auth.config import AuthConfig
from fleet.delivery.config import DeliveryConfig
from fleet.display import DEFAULT_ZONE, zone
from fleet.enroll.config import EnrollmentConfig, PkiConfig
from fleet.signing.config import SigningConfig
from protocol.configfile import load_config
from protocol.reconnect import ReconnectSchedule

DEFAULT_VAR = Path("var/fleet")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str = Field(
        default=f"sqlite:///{DEFAULT_VAR}/fleet.db",
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://user@host/db. "
        "A password belongs in the environment (SOHOA_FLEET_DATABASE_URL), not in this file.",
    )
    migrate_on_start: bool = Field(default=True, description="Apply pending Alembic migrations when serving")
    pool_size: int = Field(default=5, ge=1, le=100, description="Connections kept open (PostgreSQL)")

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class StorageConfig(_Section):
    type: Literal["local"] = Field(
        default="local",
        description="local: files in `dir`; with several fleet nodes, `dir` is one directory on a mount every "
                    "node reaches (NFS, CephFS), and every node's config names the same one",
    )
    dir: Path = Field(default=DEFAULT_VAR / "files", description="Where page files are kept, by sha256")
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Larger uploads are refused with 413"
    )
    fsync: bool = Field(default=True, description="fsync each file and its directory before answering")


class BrokerConfig(_Section):
    host: str = Field(default="127.0.0.1", description="MQTT broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="MQTT broker port")
    client_id: str = Field(
        default="sohoa-fleet-ingest-1",
        min_length=1,
        max_length=64,
        description="Fixed per ingest worker: the broker keeps its session (queued messages) under it",
    )
    group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Shared-subscription group, to run several ingest workers that share the load "
        "($share/<group>/sohoa/v1/+/#). Unset (one worker): a plain subscription. Mosquitto 2.0 forgets "
        "an offline session's shared subscriptions when it restarts, so messages published between a "
        "broker restart and the workers' reconnection would be lost; a plain subscription keeps them",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive")
    reconnect_min_s: float = Field(
        default=0.5, gt=0,
        description="Scale of the retry after a failed connection attempt: each delay is drawn at random between "
        "zero and this, doubled per failure up to reconnect_max_s (full jitter, as the kiosks do)",
    )
    reconnect_max_s: float = Field(
        default=5.0, ge=1, le=300, description="Longest wait between reconnection attempts when the broker is away"
    )
    reconnect_spread_s: float = Field(
        default=2.0, ge=0,
        description="The first reconnect after a lost connection comes at a random moment within this many seconds "
        "(at most reconnect_max_s): the fleet's several clients do not meet a restarted broker at the same instant",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=0, description="How long the broker keeps our session while we are away"
    )
    receive_maximum: int = Field(
        default=2000,
        ge=1,
        le=65535,
        description="Unacknowledged QoS 1 messages the broker may send us at once. Several batches' worth, "
        "so the next batch streams in while one is being written (acks come only after each commit)",
    )
    ca_file: Path | None = Field(default=None, description="TLS: the fleet CA certificate the broker's is checked with")
    cert_file: Path | None = Field(
        default=None,
        description="TLS: this worker's client certificate (<pki>/ingest/fleet.ingest.crt). Set: connect over TLS "
        "(port 8883) and use the certificate's CN as client id, as the broker forces",
    )
    key_file: Path | None = Field(default=None, description="TLS: the client certificate's key (mode 0600)")
    ops_cert_file: Path | None = Field(
        default=None,
        description="TLS: the operations publisher's own client certificate (commands, desired settings), e.g. "
        "<pki>/ingest/fleet.ops.crt from `provisioning init --ingest fleet.ingest --ingest fleet.ops`. The broker "
        "makes the CN the client id, so it cannot share the ingest's certificate. Unset with TLS: not published",
    )
    ops_key_file: Path | None = Field(default=None, description="TLS: the operations certificate's key (mode 0600)")

    @model_validator(mode="after")
    def _tls_files(self) -> "BrokerConfig":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must be at most reconnect_max_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.ops_cert_file is None) != (self.ops_key_file is None):
            raise ValueError("ops_cert_file and ops_key_file go together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("a client certificate needs ca_file to check the broker's")
        return self

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def reconnect_schedule(self, rng: random.Random | None = None) -> ReconnectSchedule:
        """The jittered, capped reconnect delays of one of the fleet's MQTT clients."""
        return ReconnectSchedule(first_s=self.reconnect_min_s, cap_s=self.reconnect_max_s,
                                 spread_s=self.reconnect_spread_s, rng=rng)


class IngestConfig(_Section):
    enabled: bool = Field(default=True, description="Run the MQTT ingest inside `serve`")
    batch_size: int = Field(default=500, ge=1, le=10000, description="Most messages written in one transaction")
    batch_latency_ms: float = Field(
        default=100.0, gt=0, description="Longest a message waits for its batch to fill before it is written"
    )
    idle_flush_ms: float = Field(
        default=3.0, gt=0, description="Write the batch when no new message came for this long"
    )
    heartbeat_timeout_s: float = Field(
        default=180.0, gt=0, description="A device silent for longer than this counts as offline"
    )
    confirm_stored: bool = Field(
        default=True,
        description="After each commit, tell every device which of its messages are stored (`stored` topic), "
                    "so it keeps them until then and sends again what a broker lost",
    )


class HttpConfig(_Section):
    host: str = Field(default="127.0.0.1", description="Address the web server listens on")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port")
    page_refresh_s: float = Field(default=3.0, gt=0, description="How often the web page refreshes itself")
    tls_cert: Path | None = Field(
        default=None,
        description="HTTPS certificate (PEM). Unset with pki.ca_dir set: `serve` issues one from the fleet CA",
    )
    tls_key: Path | None = Field(default=None, description="HTTPS certificate's key (PEM, mode 0600)")
    max_import_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="Largest CSV import body (units, dossiers received): a larger one is refused with 413 unread",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> "HttpConfig":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class RetentionConfig(_Section):
    """How long telemetry history is kept. Every device reports every minute by default: 10,000
    kiosks write 14 million rows a day. Older than ``telemetry_full_days``, one report per device
    and hour is kept (exactly what the periodic report's availability counts); older than
    ``telemetry_keep_days``, none."""

    enabled: bool = Field(default=True, description="Run the retention pass inside `serve`")
    interval_s: float = Field(default=3600.0, ge=1, le=86400, description="Seconds between two retention passes")
    telemetry_full_days: int = Field(
        default=7, ge=1, le=3650, description="Keep every telemetry report this many days, then one per device-hour"
    )
    telemetry_keep_days: int | None = Field(
        default=400, ge=2, le=36500,
        description="Drop telemetry reports older than this many days (unset: keep one per device-hour forever)",
    )

    document_files_keep_days: int | None = Field(
        default=90, ge=0, le=36500,
        description="Delete a dossier document's files (its PDF, signed copy and page images) this many days after "
        "every delivery target acknowledged it; the dossier registry keeps its name, hashes and counts. Unset: keep. "
        "A document no target takes is never deleted",
    )

    @model_validator(mode="after")
    def _order(self) -> "RetentionConfig":
        if self.telemetry_keep_days is not None and self.telemetry_keep_days <= self.telemetry_full_days:
            raise ValueError("telemetry_keep_days must be more than telemetry_full_days")
        return self


class ClusterConfig(_Section):
    """Several ``serve`` processes on one PostgreSQL database behave as one fleet: each background job
    runs on one of them at a time (:mod:`fleet.leases`). Give each node its own ``broker.client_id``
    (or certificate) and set ``broker.group`` so their ingest workers share the messages."""

    node_id: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="This node's name in the job leases; unset: host name, process id and a random suffix",
    )
    lease_ttl_s: float = Field(
        default=30.0, ge=3, le=600,
        description="A job's lease lasts this long unless renewed (every third of it): a dead node's jobs "
                    "move to another within 4/3 of it",
    )


class BundlesConfig(_Section):
    public_keys: list[Path] = Field(
        default_factory=list,
        description="Ed25519 public keys (PEM files) update bundles are signed with, the devices' own "
                    "(updater.public_keys): an upload signed by none of them is refused (422, nothing kept). "
                    "Empty: uploads are not checked here (each device still checks before installing)",
    )


class FleetConfig(_Section):
    """Everything ``sohoa-fleet`` reads from its config file.

    >>> FleetConfig.model_validate({"ingest": {"batch_size": 100}}).ingest.batch_size
    100
    """

    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="Where devices and pages are kept")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Page file store")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="The MQTT broker devices talk to")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="MQTT ingest tuning")
    http: HttpConfig = Field(default_factory=HttpConfig, description="API and web page")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert thresholds, interval, webhook")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="How long telemetry, and delivered documents' files, are kept")
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig, description="Delivery of signed documents to the one-stop system (targets)")
    pki: PkiConfig = Field(default_factory=PkiConfig, description="Certificate authority and CRL (enrollment)")
    enrollment: EnrollmentConfig = Field(default_factory=EnrollmentConfig, description="Device enrollment")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Admin sessions, login rate limit, first admin")
    signing: SigningConfig = Field(
        default_factory=SigningConfig, description="Signing closed documents (PAdES) with the organisation's key"
    )
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Several fleet nodes on one database")
    bundles: BundlesConfig = Field(default_factory=BundlesConfig, description="Signed update bundles (uploads)")
    time_zone: str = Field(
        default=DEFAULT_ZONE,
        description="The province's IANA time zone: every time on the web pages and in reports is shown in it",
    )

    @field_validator("time_zone", mode="after")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("database", mode="after")
    @classmethod
    def _no_password_in_file(cls, value: DatabaseConfig) -> DatabaseConfig:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(value.url)
        except Exception as exc:  # SQLAlchemy raises ArgumentError for junk
            raise ValueError(f"not a database URL ({type(exc).__name__})") from None
        if url.password:
            raise ValueError("put the database password in SOHOA_FLEET_DATABASE_URL, not in the config file")
        return value


def load(path: Path | None) -> FleetConfig:
    """Read the config file (``None``: defaults). ``SOHOA_FLEET_DATABASE_URL`` overrides the URL.

    Raises :class:`protocol.configfile.ConfigError` with one ``file:line: key: message`` per error.
    """
    import os

    cfg = FleetConfig() if path is None else load_config(FleetConfig, path)
    env_url = os.environ.get("SOHOA_FLEET_DATABASE_URL")
    if env_url:
        cfg = cfg.model_copy(update={"database": cfg.database.model_copy(update={"url": env_url})})
    return cfg
