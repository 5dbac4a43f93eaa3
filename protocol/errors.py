"""Why a message was refused. Each reason is a stable code the fleet counts in ``/metrics``."""

from typing import Literal

RejectReason = Literal[
    "too_large", "malformed_json", "schema_version", "invalid", "unknown_topic", "device_mismatch"
]


class ProtocolError(ValueError):
    """A message that does not fit the contract. ``reason`` is a stable code; the text never
    contains the payload (it may hold personal data)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail
