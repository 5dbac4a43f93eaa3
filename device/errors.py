"""Every error the device agent raises on purpose inherits :class:`SohoaError` and the builtin
it resembles, so callers can catch either (gpiozero's ``exc.py`` is the model)."""


class SohoaError(Exception):
    """Root of the device agent's errors."""


class ConfigInvalid(SohoaError, ValueError):
    """The configuration does not validate."""


class CaptureError(SohoaError, IOError):
    """A capture source failed."""


class ScannerFault(CaptureError):
    """The scanner reported a condition that stops the batch. ``event_type`` is the protocol's
    event type (``scanner_jammed``, ...)."""

    event_type = "scanner_io_error"


class ScannerJammed(ScannerFault):
    event_type = "scanner_jammed"


class ScannerCoverOpen(ScannerFault):
    event_type = "scanner_cover_open"


class ScannerNoDocs(ScannerFault):
    event_type = "scanner_no_docs"


class ScannerIOError(ScannerFault):
    event_type = "scanner_io_error"


class ScannerGone(ScannerFault):
    event_type = "scanner_gone"


class ScannerBusy(CaptureError):
    """Another scan is running."""


class NoScanner(CaptureError):
    """No scanner is attached or configured."""


class CameraUnavailable(CaptureError):
    """The camera is missing, unplugged or busy."""


class OutboxFull(SohoaError, OSError):
    """Free disk space is below the configured floor: new scans are refused, nothing is lost."""


class OutboxKeyError(SohoaError, PermissionError):
    """The key that opens the outbox's encrypted files is missing, does not unwrap on this
    board, or is not the one a file was sealed with: nothing is deleted."""


class OutboxFileDamaged(SohoaError, ValueError):
    """An outbox file's bytes fail their check (authentication tag or sha256)."""


class ImageRejected(SohoaError, ValueError):
    """An image cannot be read or is too large to process safely."""


class ModelError(SohoaError, RuntimeError):
    """The classifier model file is missing, truncated or does not match its labels."""
