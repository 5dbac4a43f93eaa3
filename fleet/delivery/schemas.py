"""Response models of the deliveries API."""

from datetime import datetime

from pydantic import BaseModel, Field


class TargetSummaryOut(BaseModel):
    """One target's outbox."""

    name: str = Field(description="The target's name (delivery.targets)")
    type: str = Field(description="http or folder")
    configured: bool = Field(description="False for a target that left the config but still has rows")
    by_state: dict[str, int] = Field(description="Deliveries per state")
    backlog: int = Field(description="Deliveries under way: queued, sending, or delivered but not acknowledged")
    oldest_waiting: datetime | None = Field(description="When the oldest delivery under way was queued")


class DeliveryOut(BaseModel):
    """One document's delivery to one target."""

    id: int
    target: str
    dossier_code: str
    document: str = Field(description="The document's name")
    kind: str = Field(description="component or result")
    unit_code: str | None
    state: str = Field(description="queued, sending, delivered, acknowledged, failed or cancelled")
    attempts: int = Field(description="Attempts since it was queued (or retried by hand)")
    last_error: str | None = Field(description="Why the last attempt failed")
    next_attempt_at: datetime = Field(description="When it is tried next (while under way)")
    receipt: str | None = Field(description="The receiver's reference")
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    acknowledged_at: datetime | None
