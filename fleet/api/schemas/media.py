"""The media types of the API's answers that are files, not JSON, declared in the OpenAPI so that
a client (and the bad-input suite's schema checks) know what a 2xx answer holds."""

from __future__ import annotations

from typing import Any

from fleet.storage import SAFE_TYPES

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF = "application/pdf"
OCTETS = "application/octet-stream"
HELD_FILE_TYPES = (*sorted(SAFE_TYPES), OCTETS)
"""What a held file is served as: the type sniffed from its content, or opaque bytes for a row
stored before types were checked (``fleet.storage.served_type``)."""

_BINARY = {"type": "string", "format": "binary"}


def file_answer(description: str, *media_types: str) -> dict[str, Any]:
    """One answer of an operation: a file of one of ``media_types``."""
    return {"description": description, "content": {media: {"schema": _BINARY} for media in media_types}}
