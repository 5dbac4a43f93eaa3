"""``/api/v1/devices``: the devices and what they reported; ``PUT /devices/{id}/unit`` moves an
enrolled device to another unit (the fleet's assignment, which its status messages cannot
override)."""

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from fleet.api.deps import Offset, SessionDep, StateDep
from fleet.api.schemas import DeviceOut, EventOut
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.scope import enrolled_device, in_scope, require_unit, require_unit_filter, visible_device, visible_units
from fleet.enroll import admin
from fleet.enroll.models import EnrollmentRow
from fleet.models import Device, Event
from fleet.operations.service import recompute_desired
from fleet.progress.models import Unit

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("")
def list_devices(
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    online: Annotated[bool | None, Query(description="Only devices online (true) or offline (false)")] = None,
    unit: Annotated[str | None, Query(description="Only devices of this unit code (403 outside your units)")] = None,
) -> list[DeviceOut]:
    """Every device you may see (a unit's users: their units' devices), with its state."""
    visible = require_unit_filter(session, user, unit)
    query = select(Device).order_by(Device.id)
    if unit is not None:
        query = query.where(Device.unit_code == unit)
    if visible is not None:
        query = query.where(Device.unit_code.in_(sorted(visible)))
    now = state.now()
    timeout = state.config.ingest.heartbeat_timeout_s
    out = [DeviceOut.of(d, now, timeout) for d in session.scalars(query)]
    return out if online is None else [d for d in out if d.online is online]


@router.get("/{device_id}")
def get_device(device_id: str, state: StateDep, session: SessionDep, user: CurrentUser) -> DeviceOut:
    """The device; one enrolled that never connected is ``status: enrolled``, never seen."""
    device = enrolled_device(session, user, device_id)
    if isinstance(device, EnrollmentRow):
        return DeviceOut.enrolled(device_id, device.unit_code)
    return DeviceOut.of(device, state.now(), state.config.ingest.heartbeat_timeout_s, detail=True)


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_code: str = Field(max_length=64, pattern=r"^[0-9A-Za-z][0-9A-Za-z.]{0,63}$",
                           description="A unit of the unit tree")


class MovedOut(BaseModel):
    device_id: str
    unit_code: str = Field(description="The unit the device is in now")
    previous_unit_code: str = Field(description="The unit it left (the same when nothing changed)")
    settings_changed: bool = Field(description="Its desired settings changed with the unit's settings layer")


@router.put("/{device_id}/unit", responses={409: {"description": "No accepted enrollment: the fleet assigns no unit"},
                                            422: {"description": "No such unit valid today in the unit tree"}})
def move_device(device_id: str, body: UnitIn, state: StateDep, request: Request, user: AdminUser) -> MovedOut:
    """Move an enrolled device to another unit. Its new pages count for the new unit (those it
    already captured keep theirs), its desired settings follow the new unit's layer, and its
    status messages, whatever unit they claim, no longer move it back. An admin of both units."""
    with state.sessions.begin() as session:
        enrollment = session.get(EnrollmentRow, device_id)
        device = session.get(Device, device_id)
        current = enrollment.unit_code if enrollment is not None else device.unit_code if device else None
        if enrollment is None and device is None:
            raise HTTPException(404, "no such device")
        require_unit(session, user, current, detail="no such device")
        today = state.now().astimezone(ZoneInfo(state.config.time_zone)).date()
        if not any(u.valid_on(today) for u in session.scalars(select(Unit).where(Unit.code == body.unit_code))):
            raise HTTPException(422, f"no unit {body.unit_code} valid today in the unit tree")
        if not in_scope(visible_units(session, user), body.unit_code):
            raise HTTPException(403, "the new unit is outside your units")
        try:
            previous = admin.move_device(session, admin.request_auditor(request), device_id, body.unit_code)
        except admin.NotEnrolled as exc:
            raise HTTPException(409, str(exc)) from None
        changed = bool(recompute_desired(session, [device_id], state.now())) if device is not None else False
    if changed:
        state.services.wake_operations()
    return MovedOut(device_id=device_id, unit_code=body.unit_code, previous_unit_code=previous,
                    settings_changed=changed)


@router.get("/{device_id}/events")
def list_events(
    device_id: str,
    session: SessionDep,
    user: CurrentUser,
    type: Annotated[str | None, Query(description="Only events of this type, e.g. scanner_jammed")] = None,
    since: Annotated[datetime | None, Query(description="Device time at or after this")] = None,
    until: Annotated[datetime | None, Query(description="Device time before this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first")] = 100,
    offset: Offset = 0,
) -> list[EventOut]:
    """The device's events, newest first."""
    visible_device(session, user, device_id)
    query = select(Event).where(Event.device_id == device_id)
    if type is not None:
        query = query.where(Event.type == type)
    if since is not None:
        query = query.where(Event.ts >= _aware(since))
    if until is not None:
        query = query.where(Event.ts < _aware(until))
    query = query.order_by(Event.ts.desc(), Event.id).limit(limit).offset(offset)
    return [EventOut.model_validate(e) for e in session.scalars(query)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
