from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class FileOut(BaseModel):
    """A file held by the fleet."""

    model_config = ConfigDict(from_attributes=True)

    sha256: str = Field(description="Content address")
    size: int = Field(description="Bytes")
    content_type: str = Field(description="MIME type given at upload")
    stored_at: datetime = Field(description="When it was stored")
    uploaded_by: str | None = Field(description="Device that uploaded it")
