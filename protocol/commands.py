"""The ``args`` of each command: one model per command name, the same on both sides.

The fleet checks an admin's arguments with :func:`parse_args` before it publishes a command (a
typo is an answer at the API, not a rejection after an MQTT round trip); the device parses them
again when the command arrives and rejects what does not fit in its ``cmd/ack``.

>>> parse_args("test_scan", {"source": "adf", "max_pages": 3}).max_pages
3
>>> try:
...     parse_args("reboot", {"forse": True})
... except ValidationError as exc:
...     print(error_fields(exc))
['forse']
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.messages import CommandName


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TestScanArgs(_Args):
    """Arguments of ``test_scan``: one batch from the scanner (or the watched folder)."""

    __test__ = False  # a pytest collector must not take the name for a test class

    source: Literal["flatbed", "adf", "folder"] | None = Field(default=None, description="Override the source")
    max_pages: int | None = Field(default=None, ge=1, le=10000, description="Stop after this many images")


class ForceArgs(_Args):
    """Arguments of ``reboot`` and ``restart_agent``."""

    force: bool = Field(default=False, description="Go ahead even while a dossier is open at the counter")


class NoArgs(_Args):
    """``collect_logs`` and ``rotate_certificate`` take no arguments."""


class UpdateOffer(_Args):
    """Arguments of ``update``: which signed bundle to install, and from where."""

    rollout_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Names the download file too")
    url: str = Field(pattern=r"^https?://", max_length=2048, description="Where the bundle is served")
    version: str = Field(max_length=64, description="Version the bundle carries (checked against its manifest)")
    kind: Literal["app", "model"] = Field(default="app", description="app: the agent; model: a classifier model")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the bundle file")
    allow_downgrade: bool = Field(
        default=False, description="Install an older version than the one running (a deliberate step back)"
    )


COMMAND_ARGS: dict[CommandName, type[_Args]] = {
    "reboot": ForceArgs,
    "restart_agent": ForceArgs,
    "test_scan": TestScanArgs,
    "collect_logs": NoArgs,
    "rotate_certificate": NoArgs,
    "update": UpdateOffer,
}
"""The arguments model of every command name."""

def parse_args(name: CommandName, args: dict[str, Any]) -> BaseModel:
    """``args`` checked against the model of command ``name``; raises pydantic's
    ``ValidationError`` naming each field that does not fit (an unknown one included)."""
    return COMMAND_ARGS[name].model_validate(args)


def error_fields(exc: ValidationError) -> list[str]:
    """At most five field paths the error names, sorted, for a short rejection reason (never
    the values: they may hold what an admin typed by mistake)."""
    return sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})[:5]
