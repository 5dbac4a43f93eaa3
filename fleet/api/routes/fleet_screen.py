"""The data the fleet screen (``/fleet``, :mod:`fleet.api.routes.web`) draws:
``/api/v1/fleet/devices`` (every device, its state, pages today, reject rate, open alerts) and
``/api/v1/fleet/devices/{id}`` (one device's event timeline, latest pages and alerts). A user
with a unit sees the devices of their unit's subtree (another device: 404)."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from fleet.alerts import overview
from fleet.alerts.schemas import FleetDeviceDetailOut, FleetDevicesOut
from fleet.api.deps import SessionDep, StateDep
from fleet.auth.deps import CurrentUser
from fleet.auth.scope import require_unit_filter, visible_device, visible_units
from fleet.errors import NotFound

router = APIRouter(prefix="/fleet", tags=["fleet screen"])


@router.get("/devices")
def fleet_devices(
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    unit: Annotated[str | None, Query(description="Only devices of this unit code")] = None,
    online: Annotated[bool | None, Query(
        description="Only devices online (true) or offline (false); a revoked device is neither")] = None,
    q: Annotated[str | None, Query(max_length=64, description="Only devices whose id or unit contains this")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100000, description="At most this many rows")] = None,
) -> FleetDevicesOut:
    """The devices as the fleet screen shows them, those with open alerts first, then offline
    ones, revoked ones last; with counts (total, online, offline, revoked, with_alerts) over all
    that matched. A device whose certificates were revoked has ``revoked`` true and is not online.
    Only the devices of your units (403 for a ``unit`` outside them)."""
    visible = require_unit_filter(session, user, unit)
    found = overview.devices(session, state.now(), state.config.ingest.heartbeat_timeout_s, unit=unit,
                             online=online, q=q, limit=limit, units=visible, zone_name=state.config.time_zone)
    return FleetDevicesOut.model_validate(found)


@router.get("/devices/{device_id}", responses={404: {"description": "No such device"}})
def fleet_device(device_id: str, state: StateDep, session: SessionDep, user: CurrentUser) -> FleetDeviceDetailOut:
    """One device: its state, event timeline (newest first), latest pages and alerts."""
    visible_device(session, user, device_id)
    try:
        found = overview.device(session, device_id, state.now(), state.config.ingest.heartbeat_timeout_s,
                                units=visible_units(session, user), zone_name=state.config.time_zone)
    except NotFound:
        raise HTTPException(404, "no such device") from None
    return FleetDeviceDetailOut.model_validate(found)
