"""``/api/v1/contract``: what an admin may send a device (remote settings and each command's
arguments), straight from :mod:`protocol`. The admin page draws its forms from these schemas
(fields, bounds, choices, defaults) and asks ``/contract/check`` while the admin types, so a
field's error shows beside it before anything is sent; the routes that store settings or queue
commands check the same models again (422 naming each field, nothing stored)."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.auth.deps import CurrentUser
from fleet.errors import ContractViolation
from protocol.commands import COMMAND_ARGS, parse_args
from protocol.messages import CommandName
from protocol.settings import RemoteSettings, parse_settings

router = APIRouter(prefix="/contract", tags=["operations"])


@router.get("")
def contract(_user: CurrentUser) -> dict[str, Any]:
    """``settings``: the remote settings' schema; ``commands``: each command's arguments' schema."""
    return {"settings": RemoteSettings.model_json_schema(),
            "commands": {name: model.model_json_schema() for name, model in COMMAND_ARGS.items()}}


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] | None = Field(default=None, description="Settings of one level, to check")
    command: CommandName | None = Field(default=None, description="A command whose ``args`` to check")
    args: dict[str, Any] = Field(default_factory=dict, description="That command's arguments")


class CheckOut(BaseModel):
    problems: list[dict[str, Any]] = Field(description="As a 422's detail: loc (from the body down), msg, type; "
                                                       "empty when everything fits")


@router.post("/check")
def check(body: CheckIn, _user: CurrentUser) -> CheckOut:
    """Check settings and/or a command's arguments against the contract; nothing is stored."""
    problems: list[dict[str, Any]] = []
    if body.settings is not None:
        try:
            parse_settings(body.settings)
        except ValidationError as exc:
            problems += ContractViolation("settings", exc.errors(include_input=False)).problems
    if body.command is not None:
        try:
            parse_args(body.command, body.args)
        except ValidationError as exc:
            problems += ContractViolation("args", exc.errors(include_input=False)).problems
    return CheckOut(problems=problems)
