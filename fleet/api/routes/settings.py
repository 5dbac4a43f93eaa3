"""``/settings``: remote settings per level, and ``/devices/{id}/settings``: one device's
desired vs reported settings (:mod:`fleet.operations.settings`).

* ``PUT|GET /settings/{fleet|unit|device}/{key}``: a settings layer (fleet key: ``default``);
  a change recomputes the devices' desired settings (most specific wins) and bumps versions.
* ``GET /devices/{id}/settings``: desired vs reported, with the differences and the device's
  reason when it rejected them; ``GET /settings?differs=true``: every device's settings state,
  or only those whose reported settings differ from the desired ones.

Every route needs a user, writes an admin; a unit admin sets their units' and devices' layers,
the fleet level is the province admin's. Objects outside the scope answer 404, as if absent.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope, require_unit, require_unit_filter, visible_device, visible_devices
from fleet.models import Device
from fleet.operations import settings
from fleet.operations.schemas import DeviceSettingsOut, LayerOut, Scope, SettingsIn, SettingsListOut

router = APIRouter(tags=["operations"])


def _require_layer(session: Session, user: Principal, scope: Scope, key: str, *, write: bool) -> None:
    if scope == "fleet":
        if write and not user.is_province_admin:
            raise HTTPException(403, "the fleet level is the province admin's")
    elif scope == "unit":
        require_unit(session, user, key)
    elif session.get(Device, key) is not None:
        visible_device(session, user, key)
    elif not user.is_province_admin:
        raise OutOfScope("no such device")  # a device not enrolled yet: the province admin's


@router.put("/settings/{scope}/{key}")
def put_settings(scope: Scope, key: Annotated[str, Path(max_length=64)], body: SettingsIn, state: StateDep,
                 user: AdminUser) -> LayerOut:
    """Set one level's settings (replaces that level). The devices see them as soon as they
    are online; the device validates them (an invalid value is rejected there, with the reason,
    and shows in ``GET /devices/{id}/settings``)."""
    if scope == "fleet" and key != "default":
        raise HTTPException(422, "the fleet level's key is 'default'")
    with state.sessions.begin() as session:
        _require_layer(session, user, scope, key, write=True)
        out = settings.put_layer(session, scope, key, body.settings, state.now())
    state.services.wake_operations()
    return out


@router.get("/settings/{scope}/{key}")
def get_settings(scope: Scope, key: str, session: SessionDep, user: CurrentUser) -> LayerOut:
    _require_layer(session, user, scope, key, write=False)
    layer = settings.get_layer(session, scope, key)
    if layer is None:
        raise HTTPException(404, "no settings at this level")
    return layer


@router.get("/devices/{device_id}/settings")
def device_settings(device_id: str, state: StateDep, user: CurrentUser) -> DeviceSettingsOut:
    with state.sessions.begin() as session:
        visible_device(session, user, device_id)
        return settings.device_settings(session, device_id, state.now())


@router.get("/settings")
def list_settings(
    session: SessionDep,
    user: CurrentUser,
    differs: Annotated[bool, Query(description="Only devices whose reported settings differ from desired")] = False,
    unit: Annotated[str | None, Query(max_length=64, description="Only devices of this unit code")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> SettingsListOut:
    """Every device's desired vs reported settings at a glance (not in sync first)."""
    require_unit_filter(session, user, unit)
    return settings.settings_overview(session, visible_devices(session, user), unit=unit, differs=differs,
                                      limit=limit)
