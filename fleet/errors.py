"""Every error the fleet manager raises on purpose inherits :class:`FleetError` and the
builtin it resembles."""


class FleetError(Exception):
    """Root of the fleet manager's errors."""


class ConfigInvalid(FleetError, ValueError):
    """The configuration does not validate."""


class NotFound(FleetError, LookupError):
    """No such device, page or file."""


class ChecksumMismatch(FleetError, ValueError):
    """An uploaded file's content does not match the sha256 it was sent under."""
