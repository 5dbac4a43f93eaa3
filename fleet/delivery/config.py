"""The ``delivery:`` section: where signed documents go and how hard the fleet tries.

Several targets may be configured, each an HTTP endpoint (:class:`HttpTarget`) or a folder on a
mounted share (:class:`FolderTarget`), chosen by ``type``, each with its own filter by unit and
document kind. Secrets (an OAuth2 client secret) are read from files, never from this section.

>>> cfg = DeliveryConfig.model_validate({"targets": [
...     {"type": "folder", "name": "share", "dir": "/mnt/motcua", "kinds": ["result"]}]})
>>> cfg.targets[0].accepts("99001", "result"), cfg.targets[0].accepts("99001", "component")
(True, False)
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DocumentKind = Literal["component", "result"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Target(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                      description="The target's name, as the outbox, the page and the metrics show it")
    units: list[str] | None = Field(
        default=None,
        description="Deliver only documents of these unit codes (the unit that digitized them) and of the units "
        "below them when a code ends with '*' (a prefix). Unset: every unit",
    )
    kinds: list[DocumentKind] = Field(default=["component", "result"],
                                      description="Deliver only documents of these kinds")

    def accepts(self, unit_code: str | None, kind: str) -> bool:
        """Whether a document of ``unit_code`` and ``kind`` goes to this target."""
        if kind not in self.kinds:
            return False
        if self.units is None:
            return True
        if unit_code is None:
            return False
        return any(unit_code.startswith(u[:-1]) if u.endswith("*") else unit_code == u for u in self.units)


class MutualTls(_Section):
    type: Literal["mtls"] = "mtls"
    cert_file: Path = Field(description="The fleet's client certificate (PEM) the receiver knows it by")
    key_file: Path = Field(description="Its key (PEM, mode 0600)")


class OAuth2ClientCredentials(_Section):
    type: Literal["oauth2"] = "oauth2"
    token_url: str = Field(description="The authorization server's token endpoint (client credentials grant)")
    client_id: str = Field(min_length=1, description="The fleet's client id")
    client_secret_file: Path = Field(description="File holding the client secret (mode 0600), read at start")
    scope: str | None = Field(default=None, description="The scope to ask for, if the receiver wants one")


class HttpTarget(_Target):
    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://", description="The receiver's base URL (the contract's paths go below it)")
    ca_file: Path | None = Field(default=None, description="CA the receiver's HTTPS certificate is checked with "
                                 "(unset: the system's)")
    auth: Annotated[MutualTls | OAuth2ClientCredentials | None, Field(discriminator="type")] = Field(
        default=None, description="How the fleet authenticates: mutual TLS or OAuth2 client credentials")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Longest wait for each request's answer")


class FolderTarget(_Target):
    type: Literal["folder"] = "folder"
    dir: Path = Field(description="The mounted share: <dir>/<dossier code>/<document>.pdf, then manifest.json")
    fsync: bool = Field(default=True, description="fsync each file and folder before counting it delivered")


Target = Annotated[HttpTarget | FolderTarget, Field(discriminator="type")]


class DeliveryConfig(_Section):
    """The delivery outbox: its pace, retries and targets."""

    enabled: bool = Field(default=True, description="Run the delivery worker inside `serve` (when targets exist)")
    targets: list[Target] = Field(default=[], description="Where signed documents go (none: nothing is delivered)")
    interval_s: float = Field(default=5.0, gt=0, le=3600, description="Seconds between two passes when idle")
    batch_size: int = Field(default=200, ge=1, le=5000, description="Deliveries claimed in one pass")
    concurrency: int = Field(
        default=4, ge=1, le=64,
        description="Dossiers sent at once (each dossier's files and manifest stay in order, one after another)",
    )
    lease_s: float = Field(
        default=300.0, gt=0, le=86400,
        description="A delivery left 'sending' this long (its worker died) is tried again; the receiver "
        "deduplicates by idempotency key, so a retry files nothing twice",
    )
    max_attempts: int = Field(default=12, ge=1, le=1000, description="Attempts before a delivery is marked failed")
    backoff_s: float = Field(default=10.0, gt=0, description="Wait after the first failed attempt")
    backoff_max_s: float = Field(default=3600.0, gt=0, description="Longest wait between two attempts")
    backlog_alert: int = Field(
        default=1000, ge=1,
        description="Alert when a target's backlog (queued, sending, or delivered but not yet acknowledged) "
        "reaches this many documents",
    )
    backlog_age_alert_s: float = Field(
        default=6 * 3600.0, gt=0,
        description="Alert when a target's oldest waiting document has waited this long (the backlog is not draining)",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> "DeliveryConfig":
        names = [t.name for t in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("two delivery targets have the same name")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("backoff_max_s must be at least backoff_s")
        return self
