"""``/api/v1/devices``: the devices and what they reported."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from fleet.api.deps import Offset, SessionDep, StateDep
from fleet.api.schemas import DeviceOut, EventOut
from fleet.auth.deps import CurrentUser
from fleet.auth.scope import require_unit_filter, visible_device
from fleet.models import Device, Event

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
    device = visible_device(session, user, device_id)
    return DeviceOut.of(device, state.now(), state.config.ingest.heartbeat_timeout_s, detail=True)


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
