"""The ``alerts:`` section of the fleet's config file.

>>> AlertsConfig().interval_s
30.0
>>> AlertsConfig.model_validate({"webhook_url": "https://hooks.example/it"}).webhook_retries
5
"""

from pydantic import BaseModel, ConfigDict, Field


class AlertsConfig(BaseModel):
    """Thresholds, how often they are checked, and where alerts are sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Run the periodic alert evaluator inside `serve`")
    interval_s: float = Field(default=30.0, gt=0, le=3600, description="Seconds between two evaluations")
    offline_after_s: float = Field(
        default=900.0, ge=0, description="A device offline (or silent past the heartbeat timeout) this long: alert"
    )
    disk_min_free_fraction: float = Field(
        default=0.10, ge=0, le=1, description="Free share of the outbox's disk under which the disk is nearly full"
    )
    backlog_min_items: int = Field(
        default=100, ge=1, description="Outbox backlog (events + files) from which a growing backlog raises an alert"
    )
    backlog_window_s: float = Field(
        default=1800.0, gt=0, description="The backlog is growing when it is larger than this many seconds earlier"
    )
    reject_rate_max: float = Field(
        default=0.30, ge=0, le=1, description="Share of today's pages rejected by the quality check above which: alert"
    )
    reject_min_pages: int = Field(
        default=20, ge=1, description="Pages a device must have captured today before its reject rate is judged"
    )
    pace_min_elapsed: float = Field(
        default=0.25, ge=0, le=1,
        description="Share of the month that must have passed before a unit's rate is judged against its target pace",
    )
    webhook_url: str | None = Field(
        default=None, pattern=r"^https?://\S+$",
        description="Where alerts are POSTed as JSON when opened and resolved; unset: no webhook",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120, description="Timeout of one webhook request")
    webhook_retries: int = Field(default=5, ge=0, le=50, description="Further attempts after a failed delivery")
    webhook_backoff_s: float = Field(
        default=1.0, gt=0, le=600, description="Wait before the first retry; doubled after each failure (at most 5 min)"
    )
