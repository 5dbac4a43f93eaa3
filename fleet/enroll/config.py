"""The ``pki:`` and ``enrollment:`` sections of the fleet's config file.

Both are off by default (no ``pki.ca_dir``): the fleet then runs as before, without enrollment
or device authentication. ``python -m provisioning init <dir>`` lays out what they point at::

    pki:
      ca_dir: /var/lib/sohoa/pki/ca
      crl_file: /var/lib/sohoa/pki/broker/crl.pem
      broker_pid_file: /run/mosquitto/mosquitto.pid
      secrets_dir: /etc/sohoa/secrets        # optional files ca_passphrase, token_pepper
    enrollment:
      broker_url: mqtts://broker.example.vn:8883
      public_url: https://fleet.example.vn

>>> PkiConfig().enabled
False
>>> EnrollmentConfig.model_validate({"broker_url": "mqtts://broker:8883"}).rate_per_minute
30
"""

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from provisioning.ca import CRL_VALIDITY

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class PkiConfig(BaseModel):
    """Where the fleet's certificate authority and the broker's CRL are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_dir: Path | None = Field(
        default=None,
        description="The fleet CA's directory (ca.key, mode 0600, and ca.crt): <dir>/ca of `python -m provisioning "
        "init <dir>`. Created on first start when empty. Unset: enrollment and device authentication are off",
    )
    crl_file: Path | None = Field(
        default=None,
        description="The CRL file the broker reads (<dir>/broker/crl.pem): rewritten after each revocation and "
        "every crl_refresh_h. Unset: the CRL is only served at /api/v1/pki/crl.pem",
    )
    broker_pid_file: Path | None = Field(
        default=None, description="mosquitto's pid file: the fleet sends it SIGHUP after rewriting the CRL"
    )
    crl_refresh_h: float = Field(
        default=24.0,
        gt=0,
        le=CRL_VALIDITY.total_seconds() / 3600 / 2,
        description="Hours between two CRL rewrites even when nothing was revoked. A CRL is valid 7 days and the "
        "broker refuses every client once it lapses, so this must stay well under that",
    )
    crl_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Public URL of the CRL (…/api/v1/pki/crl.pem), written into certificates for EMQX/HiveMQ",
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Directory with optional secret files: ca_passphrase (the CA key's passphrase) and "
        "token_pepper (key of the enrollment tokens' hashes). Never put them in this file",
    )
    broker_log_file: Path | None = Field(
        default=None,
        description="The broker's log (<dir>/broker/mosquitto.log): a device's attempts outside its own topics "
        "found there are recorded in the audit log (broker.publish_denied / broker.subscribe_denied). Unset: not read",
    )
    broker_log_scan_s: float = Field(default=10.0, gt=0, le=3600, description="Seconds between two reads of it")
    server_cert_dir: Path | None = Field(
        default=None,
        description="Where `serve` issues the API's HTTPS certificate from the CA when http.tls_cert is unset "
        "(default: <ca_dir>/../api)",
    )

    @property
    def enabled(self) -> bool:
        return self.ca_dir is not None

    def secret(self, name: str) -> bytes | None:
        """The content of ``secrets_dir/name`` without its trailing newline, or None."""
        if self.secrets_dir is None:
            return None
        path = self.secrets_dir / name
        if not path.exists():
            return None
        return path.read_bytes().rstrip(b"\r\n") or None


class EnrollmentConfig(BaseModel):
    """What enrolled devices are told, and how hard ``/api/v1/enroll`` may be hit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_url: str | None = Field(
        default=None, description="mqtts://host:port devices connect to (default: mqtts://<broker.host>:8883); "
        "mqtt://127.0.0.1:port (plain, no device certificate at the broker) only for tests and a one-machine demo"
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https://[^/]+$",
        description="https://host[:port] of this API as devices reach it (default: from http.host and http.port)",
    )
    rate_per_minute: int = Field(
        default=30, ge=1, le=10_000, description="Enrollment requests one IP address may make per minute (429 beyond)"
    )
    max_token_ttl_h: float = Field(
        default=24 * 30, gt=0, description="Longest validity an admin may give an enrollment token, in hours"
    )

    @field_validator("broker_url")
    @classmethod
    def _mqtts(cls, value: str | None) -> str | None:
        if value is None or value.startswith("mqtts://"):
            return value
        if value.startswith("mqtt://") and urlsplit(value).hostname in LOOPBACK:
            return value  # plain MQTT on this machine only: tests and a one-machine demo
        raise ValueError("the broker URL is mqtts://host:port (plain mqtt:// only on 127.0.0.1/localhost)")
