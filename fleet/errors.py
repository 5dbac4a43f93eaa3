"""Every error the fleet manager raises on purpose inherits :class:`FleetError` and the
builtin it resembles."""

from typing import Any


class FleetError(Exception):
    """Root of the fleet manager's errors."""


class ConfigInvalid(FleetError, ValueError):
    """The configuration does not validate."""


class NotFound(FleetError, LookupError):
    """No such device, page or file."""


class ChecksumMismatch(FleetError, ValueError):
    """An uploaded file's content does not match the sha256 it was sent under."""


class ContractViolation(FleetError, ValueError):
    """What an admin asked to send a device does not fit the wire contract (:mod:`protocol`):
    refused before anything is stored or published. ``problems`` name each field (``loc``, from
    the body down) and what is wrong with it, never the value sent.

    >>> ContractViolation("args", [{"loc": ("forse",), "msg": "Extra inputs are not permitted",
    ...                             "type": "extra_forbidden"}]).problems[0]["loc"]
    ['body', 'args', 'forse']
    """

    def __init__(self, where: str, errors: list[Any]) -> None:
        self.problems = [{"loc": ["body", where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        super().__init__(f"{where} do not fit the contract: "
                         + ", ".join(".".join(str(p) for p in e["loc"][2:]) for e in self.problems))
