"""Why provisioning refused something. Both programs catch these (the fleet turns them into
HTTP answers, the device into one clear line); each also inherits the builtin it resembles.

Every error has a stable ``reason`` code (for metrics, the audit log and API answers) and a text
that never contains a key, a token or a password.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """Root of the provisioning errors. ``reason`` is a stable, secret-free code."""

    reason: str = "provisioning_error"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class KeyFileError(ProvisioningError, OSError):
    """A key file is missing, unreadable, or readable by others than its owner."""


class CSRRejected(ProvisioningError, ValueError):
    """A certificate signing request the CA will not sign (bad signature, wrong CN, weak key)."""


class CertificateRejected(ProvisioningError, PermissionError):
    """A presented certificate is not one we accept (unknown CA, expired, revoked, wrong kind)."""


class TokenRejected(ProvisioningError, PermissionError):
    """An enrollment token is malformed, unknown, wrong, expired, used up, revoked or for another unit."""


class InvalidTransition(ProvisioningError, ValueError):
    """An enrollment decision that its current state does not allow (e.g. accepting a rejected one)."""
