from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventOut(BaseModel):
    """Something a device reported, as received."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Message id (unique)")
    device_id: str = Field(description="Device that sent it")
    type: str = Field(description="Event type, e.g. page_captured, scanner_jammed")
    severity: str = Field(description="info, warning or error")
    ts: datetime = Field(description="Device time when it happened")
    received_at: datetime = Field(description="When the fleet received it")
    payload: dict[str, Any] = Field(description="The whole event as the device sent it")
