"""``/devices/{id}/commands`` and ``/commands``: remote commands and their states
(:mod:`fleet.operations.commands`). Every route needs a user, queuing one an admin of the
device's unit; a command to a device outside the scope answers 404, as if absent."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from fleet.api.deps import SessionDep, StateDep
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.scope import enrolled_device, require_unit, visible_devices
from fleet.models import Device
from fleet.operations import commands
from fleet.operations.models import CommandRow
from fleet.operations.schemas import CommandIn, CommandOut, RecentCommandsOut

router = APIRouter(tags=["operations"])


@router.post("/devices/{device_id}/commands", status_code=201)
def create_command(device_id: str, body: CommandIn, state: StateDep, user: AdminUser) -> CommandOut:
    """Queue a command; it waits for the device until its deadline. A raw ``update`` (any URL,
    any version, a downgrade) is for a province admin: a unit admin updates through rollouts."""
    if body.name == "update" and not user.is_province_admin:
        raise HTTPException(403, "only a province admin sends a raw update command; use a rollout")
    with state.sessions.begin() as session:
        enrolled_device(session, user, device_id)  # one never connected yet gets it when it does
        out = commands.queue_command(session, device_id, body.name, body.args, body.timeout_s, state.now())
    state.services.wake_operations()
    return out


@router.get("/devices/{device_id}/commands")
def list_commands(device_id: str, session: SessionDep, user: CurrentUser) -> list[CommandOut]:
    enrolled_device(session, user, device_id)
    return commands.device_commands(session, device_id)


@router.get("/commands")
def recent_commands(
    session: SessionDep,
    user: CurrentUser,
    state: Annotated[str | None, Query(max_length=16, description="Only commands in this state")] = None,
    rollout_id: Annotated[str | None, Query(max_length=64, description="Only the commands of this rollout")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> RecentCommandsOut:
    """The latest commands over all devices, newest first, with counts by state."""
    found = commands.recent_commands(session, visible_devices(session, user), state=state, rollout_id=rollout_id,
                                     limit=limit)
    return RecentCommandsOut.model_validate(found)


@router.get("/commands/{command_id}")
def get_command(command_id: str, session: SessionDep, user: CurrentUser) -> CommandOut:
    row = session.get(CommandRow, command_id)
    if row is None:
        raise HTTPException(404, "no such command")
    device = session.get(Device, row.device_id)
    require_unit(session, user, device.unit_code if device is not None else None, detail="no such command")
    return CommandOut.of(row)
