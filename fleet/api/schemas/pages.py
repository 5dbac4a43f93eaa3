from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PageOut(BaseModel):
    """A captured page's metadata, and whether its file has arrived."""

    model_config = ConfigDict(from_attributes=True)

    page_id: str = Field(description="Unique page id made at capture")
    device_id: str = Field(description="Device that captured it")
    batch_id: str = Field(description="Scan batch")
    sequence: int = Field(description="Position in the batch, from 1")
    side: str = Field(description="front or back")
    dossier_code: str | None = Field(description="Dossier it belongs to, when known")
    sha256: str = Field(description="sha256 of the file")
    size: int = Field(description="File size in bytes")
    content_type: str = Field(description="MIME type")
    width: int = Field(description="Pixels")
    height: int = Field(description="Pixels")
    dpi: int | None = Field(description="Resolution when known")
    source: str = Field(description="scanner, camera or folder")
    doctype: str | None = Field(description="Document type when classified")
    confidence: float | None = Field(description="Classifier confidence")
    quality: dict[str, Any] | None = Field(description="Quality verdict")
    dropped: bool = Field(description="Kept out of the dossier's PDF")
    captured_at: datetime = Field(description="Device time of capture")
    received_at: datetime = Field(description="When the fleet received the metadata")
    file_available: bool = Field(default=False, description="The file itself has been uploaded")
    file_url: str = Field(default="", description="Where to download the file")
