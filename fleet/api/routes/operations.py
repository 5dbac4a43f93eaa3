"""Fleet operations API (issue 7), under ``/api/v1``:

* ``PUT|GET /settings/{fleet|unit|device}/{key}``: a settings layer (fleet key: ``default``);
  a change recomputes the devices' desired settings (most specific wins) and bumps versions.
* ``GET /devices/{id}/settings``: desired vs reported, with the differences and the device's
  reason when it rejected them; ``GET /settings?differs=true``: every device's settings state,
  or only those whose reported settings differ from the desired ones.
* ``POST|GET /devices/{id}/commands``, ``GET /commands/{id}``, ``GET /commands?state=``: commands
  and their states.
* ``PUT|GET /bundles/{name}``: signed update bundles (sha256 computed at upload; served with
  HTTP Range so devices resume downloads). A rollout's offer names it with ``?rollout=<id>``:
  once that rollout is cancelled or halted the fleet answers 410, so an offer that waited in the
  broker for an offline device (or on a device for its window) is never installed.
* ``POST /rollouts``, ``GET /rollouts``, ``GET /rollouts/{id}``,
  ``POST /rollouts/{id}/{pause|resume|cancel}``.

Who may do what (``fleet.auth``): every route needs a user; writes an admin. A unit admin (or a
viewer limited to a unit) sees and acts on the devices of their unit's subtree only: settings of
their units and devices, commands to their devices, rollouts whose every target is theirs (a
rollout reaching other units is shown with their devices only, and only a province admin may
pause, resume or cancel it). The fleet level's settings and bundle uploads are the province
admin's. Objects outside the scope answer 404, as if absent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from datetime import timedelta
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.api.deps import SessionDep, StateDep
from fleet.api.routes.devices import visible_device
from fleet.api.state import FleetState
from fleet.auth.deps import AdminUser, CurrentUser, ProvinceAdmin
from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope, in_scope, require_unit, require_unit_filter, visible_units
from fleet.durable import atomic_write, place
from fleet.enroll.deviceauth import device_or_user
from fleet.models import Device
from fleet.operations.models import CommandRow, DeviceConfig, RolloutRow, SettingsLayer
from fleet.operations.service import new_command, offer_updates, recompute_desired
from fleet.rollouts import DeviceInfo, PhaseSpec, Rollout, RolloutStateError, Target, select_targets, settings_diff
from protocol.messages import CommandName

log = logging.getLogger(__name__)

BUNDLE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.bundle$"
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024


def _wake_operations(state: FleetState) -> None:
    """Have the operations driver publish what was just written (when the app runs)."""
    if state.services.operations is not None:
        state.services.operations.wake()


router = APIRouter(prefix="/api/v1", tags=["operations"])


def _device_units(session: Session) -> dict[str, str | None]:
    return {d: u for d, u in session.execute(select(Device.id, Device.unit_code))}


def _visible_devices(session: Session, user: Principal) -> set[str] | None:
    """The device ids the user may see (None: every device)."""
    visible = visible_units(session, user)
    if visible is None:
        return None
    return {d for d, u in _device_units(session).items() if in_scope(visible, u)}


def _require_layer(session: Session, user: Principal, scope: str, key: str, *, write: bool) -> None:
    if scope == "fleet":
        if write and not user.is_province_admin:
            raise HTTPException(403, "the fleet level is the province admin's")
    elif scope == "unit":
        require_unit(session, user, key)
    elif session.get(Device, key) is not None:
        visible_device(session, user, key)
    elif not user.is_province_admin:
        raise OutOfScope("no such device")  # a device not enrolled yet: the province admin's


def bundles_dir(state: Any) -> FsPath:
    path: FsPath = state.config.storage.dir.parent / "bundles"
    return path


# --- settings -----------------------------------------------------------------------------------

Scope = Literal["fleet", "unit", "device"]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(description="Remote settings (device/settings.py RemoteSettings keys)")


class LayerOut(BaseModel):
    scope: Scope
    key: str
    settings: dict[str, Any]
    version: int
    devices_changed: list[str] = Field(default_factory=list)


@router.put("/settings/{scope}/{key}")
def put_settings(scope: Scope, key: Annotated[str, Path(max_length=64)], body: SettingsIn, state: StateDep,
                 request: Request, user: AdminUser) -> LayerOut:
    """Set one level's settings (replaces that level). The devices see them as soon as they
    are online; the device validates them (an invalid value is rejected there, with the reason,
    and shows in ``GET /devices/{id}/settings``)."""
    if scope == "fleet" and key != "default":
        raise HTTPException(422, "the fleet level's key is 'default'")
    now = state.now()
    with state.sessions.begin() as session:
        _require_layer(session, user, scope, key, write=True)
        layer = session.get(SettingsLayer, (scope, key))
        if layer is None:
            layer = SettingsLayer(scope=scope, key=key, settings=body.settings, version=1, updated_at=now)
            session.add(layer)
        else:
            layer.settings, layer.updated_at = body.settings, now
            layer.version += 1
        session.flush()
        changed = recompute_desired(session, [key] if scope == "device" else None, now)
        out = LayerOut(scope=scope, key=key, settings=layer.settings, version=layer.version, devices_changed=changed)
    _wake_operations(state)
    return out


@router.get("/settings/{scope}/{key}")
def get_settings(scope: Scope, key: str, session: SessionDep, user: CurrentUser) -> LayerOut:
    _require_layer(session, user, scope, key, write=False)
    layer = session.get(SettingsLayer, (scope, key))
    if layer is None:
        raise HTTPException(404, "no settings at this level")
    return LayerOut(scope=scope, key=key, settings=layer.settings, version=layer.version)


class DiffOut(BaseModel):
    path: str
    desired: Any
    reported: Any


class DeviceSettingsOut(BaseModel):
    device_id: str
    desired: dict[str, Any]
    desired_version: int
    published: bool = Field(description="The desired version is on the broker (retained) for the device")
    reported: dict[str, Any] | None
    reported_version: int | None
    applied: bool | None = Field(description="Whether the device applied the version it reported on")
    error: str | None = Field(description="The device's reason for rejecting its desired settings")
    in_sync: bool = Field(description="The device runs the desired version, unchanged")
    diff: list[DiffOut]


@router.get("/devices/{device_id}/settings")
def device_settings(device_id: str, state: StateDep, user: CurrentUser) -> DeviceSettingsOut:
    with state.sessions.begin() as session:
        visible_device(session, user, device_id)
        row = session.get(DeviceConfig, device_id)
        if row is None:
            recompute_desired(session, [device_id], state.now())
            row = session.get(DeviceConfig, device_id)
            assert row is not None
        diff = settings_diff(row.desired, row.reported or {})
        return DeviceSettingsOut(
            device_id=device_id,
            desired=row.desired,
            desired_version=row.desired_version,
            published=row.published_version == row.desired_version,
            reported=row.reported,
            reported_version=row.reported_version,
            applied=row.applied,
            error=row.error,
            in_sync=bool(row.applied) and row.reported_version == row.desired_version and not diff,
            diff=[DiffOut(path=d.path, desired=d.desired, reported=d.reported) for d in diff],
        )


class DeviceSettingsRow(BaseModel):
    device_id: str
    unit: str | None
    desired_version: int
    reported_version: int | None
    applied: bool | None
    error: str | None
    in_sync: bool
    differences: int = Field(description="Leaf settings where the device runs something else than desired")


class SettingsListOut(BaseModel):
    total: int = Field(description="Devices with settings known to the fleet")
    differing: int = Field(description="Of those, devices not in sync")
    devices: list[DeviceSettingsRow]


@router.get("/settings")
def list_settings(
    session: SessionDep,
    user: CurrentUser,
    differs: Annotated[bool, Query(description="Only devices whose reported settings differ from desired")] = False,
    unit: Annotated[str | None, Query(max_length=64, description="Only devices of this unit code")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> SettingsListOut:
    """Every device's desired vs reported settings at a glance (not in sync first)."""
    visible = require_unit_filter(session, user, unit)
    units = _device_units(session)
    rows = []
    for row in session.scalars(select(DeviceConfig).order_by(DeviceConfig.device_id)):
        if (unit is not None and units.get(row.device_id) != unit) or not in_scope(visible, units.get(row.device_id)):
            continue
        diff = settings_diff(row.desired, row.reported or {})
        in_sync = bool(row.applied) and row.reported_version == row.desired_version and not diff
        rows.append(DeviceSettingsRow(device_id=row.device_id, unit=units.get(row.device_id),
                                      desired_version=row.desired_version, reported_version=row.reported_version,
                                      applied=row.applied, error=row.error, in_sync=in_sync, differences=len(diff)))
    differing = [r for r in rows if not r.in_sync]
    shown = differing if differs else sorted(rows, key=lambda r: r.in_sync)
    return SettingsListOut(total=len(rows), differing=len(differing), devices=shown[:limit])


# --- commands -----------------------------------------------------------------------------------


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=24 * 3600, gt=0, le=30 * 86400,
                             description="Deadline from now: not started after it; queued past it: timed_out")


class CommandOut(BaseModel):
    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: str
    detail: str | None
    deadline: Any
    created_at: Any
    delivered_at: Any
    updated_at: Any
    rollout_id: str | None

    @classmethod
    def of(cls, row: CommandRow) -> CommandOut:
        return cls(id=row.id, device_id=row.device_id, name=row.name, args=row.args, state=row.state,
                   detail=row.detail, deadline=row.deadline, created_at=row.created_at,
                   delivered_at=row.delivered_at, updated_at=row.updated_at, rollout_id=row.rollout_id)


@router.post("/devices/{device_id}/commands", status_code=201)
def create_command(device_id: str, body: CommandIn, state: StateDep, request: Request,
                   user: AdminUser) -> CommandOut:
    """Queue a command; it waits for the device until its deadline."""
    now = state.now()
    with state.sessions.begin() as session:
        visible_device(session, user, device_id)
        row = new_command(session, device_id, body.name, body.args, now + timedelta(seconds=body.timeout_s), now)
        session.flush()
        out = CommandOut.of(row)
    _wake_operations(state)
    return out


@router.get("/devices/{device_id}/commands")
def list_commands(device_id: str, session: SessionDep, user: CurrentUser) -> list[CommandOut]:
    visible_device(session, user, device_id)
    rows = session.scalars(select(CommandRow).where(CommandRow.device_id == device_id)
                           .order_by(CommandRow.created_at.desc()).limit(200))
    return [CommandOut.of(r) for r in rows]


@router.get("/commands")
def recent_commands(
    session: SessionDep,
    user: CurrentUser,
    state: Annotated[str | None, Query(max_length=16, description="Only commands in this state")] = None,
    rollout_id: Annotated[str | None, Query(max_length=64, description="Only the commands of this rollout")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The latest commands over all devices, newest first, with counts by state."""
    query = select(CommandRow)
    counts = select(CommandRow.state, func.count()).group_by(CommandRow.state)
    devices = _visible_devices(session, user)
    if devices is not None:
        query = query.where(CommandRow.device_id.in_(sorted(devices)))
        counts = counts.where(CommandRow.device_id.in_(sorted(devices)))
    if state is not None:
        query = query.where(CommandRow.state == state)
    if rollout_id is not None:
        query = query.where(CommandRow.rollout_id == rollout_id)
        counts = counts.where(CommandRow.rollout_id == rollout_id)
    rows = session.scalars(query.order_by(CommandRow.created_at.desc()).limit(limit))
    return {"states": {s: n for s, n in session.execute(counts)}, "commands": [CommandOut.of(r) for r in rows]}


@router.get("/commands/{command_id}")
def get_command(command_id: str, session: SessionDep, user: CurrentUser) -> CommandOut:
    row = session.get(CommandRow, command_id)
    if row is None:
        raise HTTPException(404, "no such command")
    device = session.get(Device, row.device_id)
    require_unit(session, user, device.unit_code if device is not None else None, detail="no such command")
    return CommandOut.of(row)


# --- bundles ------------------------------------------------------------------------------------


class BundleOut(BaseModel):
    name: str
    size: int
    sha256: str


BundleName = Annotated[str, Path(pattern=BUNDLE_NAME)]


@router.put("/bundles/{name}", status_code=201)
async def put_bundle(name: BundleName, request: Request, state: StateDep, _user: ProvinceAdmin) -> BundleOut:
    """Upload a bundle (raw body). Its signature is checked by each device, not here."""
    directory = bundles_dir(state)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix=".upload.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    raise HTTPException(413, "bundle too large")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        place(FsPath(tmp), directory / name)
        atomic_write(directory / f"{name}.sha256", (digest.hexdigest() + "\n").encode())
    finally:
        FsPath(tmp).unlink(missing_ok=True)
    return BundleOut(name=name, size=size, sha256=digest.hexdigest())


WITHDRAWN = frozenset({"cancelled", "halted"})


@router.get("/bundles/{name}", name="get_bundle", responses={410: {"description": "The rollout's offer is withdrawn"}})
def get_bundle(
    name: BundleName,
    state: StateDep,
    session: SessionDep,
    request: Request,
    rollout: Annotated[str | None, Query(max_length=64, description="The rollout whose offer names this URL")] = None,
) -> FileResponse:
    """The bundle file; ``Range`` requests are answered with 206 (resumed downloads). With
    ``rollout``: 410 once that rollout is cancelled or halted (the device installs nothing).
    For a device (a request signed with its certificate's key) or a user; 401 otherwise."""
    device_or_user(request, state)
    if rollout is not None:
        row = session.get(RolloutRow, rollout)
        if row is None or row.status in WITHDRAWN:
            raise HTTPException(410, f"rollout {'unknown' if row is None else row.status}: offer withdrawn")
        if row.offer.get("url", "").rsplit("?", 1)[0].rsplit("/", 1)[-1] != name:
            raise HTTPException(410, "this rollout offers another bundle")
    path = bundles_dir(state) / name
    if not path.is_file():
        raise HTTPException(404, "no such bundle")
    return FileResponse(path, media_type="application/octet-stream")


# --- rollouts -----------------------------------------------------------------------------------


class RolloutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rollout_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    bundle: str = Field(pattern=BUNDLE_NAME, description="An uploaded bundle's name")
    version: str = Field(max_length=64)
    kind: Literal["app", "model"] = "app"
    allow_downgrade: bool = False
    base_url: str | None = Field(default=None, pattern=r"^https?://",
                                 description="Base URL devices reach this fleet at (default: the request's)")
    target: Target = Field(default_factory=Target)
    phases: list[PhaseSpec] = Field(
        default_factory=lambda: [PhaseSpec(percent=2), PhaseSpec(percent=20), PhaseSpec(percent=100)], min_length=1
    )
    device_timeout_s: float = Field(default=6 * 3600, gt=0)
    start: bool = True


@router.post("/rollouts", status_code=201)
def create_rollout(body: RolloutIn, state: StateDep, request: Request, user: AdminUser) -> dict[str, Any]:
    """Plan and (by default) start a rollout. A unit admin's targets are only their devices."""
    path = bundles_dir(state) / body.bundle
    if not path.is_file():
        raise HTTPException(404, "no such bundle")
    sha_file = path.parent / f"{body.bundle}.sha256"
    sha256 = sha_file.read_text().strip() if sha_file.exists() else None
    if body.base_url is not None:
        url = f"{body.base_url.rstrip('/')}/api/v1/bundles/{body.bundle}"
    else:
        url = str(request.url_for("get_bundle", name=body.bundle))
    url += f"?rollout={body.rollout_id}"  # the offer stays valid only while the rollout is (410 after)
    offer: dict[str, Any] = {"rollout_id": body.rollout_id, "url": url, "version": body.version, "kind": body.kind}
    if sha256:
        offer["sha256"] = sha256
    if body.allow_downgrade:
        offer["allow_downgrade"] = True
    now = state.now()
    with state.sessions.begin() as session:
        if session.get(RolloutRow, body.rollout_id) is not None:
            raise HTTPException(409, "a rollout with this id exists")
        from fleet.operations.service import _parent_of

        visible = visible_units(session, user)
        devices = [DeviceInfo(device_id=d.id, unit=d.unit_code) for d in session.scalars(select(Device))
                   if in_scope(visible, d.unit_code)]
        targets = select_targets(devices, body.target, _parent_of(session))
        if not targets:
            raise HTTPException(422, "no device matches the target")
        rollout = Rollout.create(body.rollout_id, targets, body.phases, device_timeout_s=body.device_timeout_s)
        row = RolloutRow(id=body.rollout_id, status=rollout.status, doc=rollout.model_dump(mode="json"),
                         offer=offer, created_at=now, updated_at=now)
        session.add(row)
        if body.start:
            rollout.start()
            offer_updates(session, rollout, row, now)
        summary = rollout.summary()
    _wake_operations(state)
    return {"rollout_id": body.rollout_id, "offer": offer, "summary": summary}


def _scoped(rollout: Rollout, visible: set[str] | None) -> Rollout | None:
    """The rollout as a user limited to ``visible`` devices sees it: only their devices (None
    when it has none of them). Status, phase and halt reason are the whole rollout's."""
    if visible is None:
        return rollout
    if not visible & set(rollout.devices):
        return None
    plan = [[d for d in ids if d in visible] for ids in rollout.plan]
    return rollout.model_copy(update={"plan": plan,
                                      "devices": {d: p for d, p in rollout.devices.items() if d in visible}})


@router.get("/rollouts")
def list_rollouts(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[str | None, Query(max_length=16, description="Only rollouts in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Rollouts, newest first, each with its summary (no per-device progress: see one rollout)."""
    query = select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(RolloutRow.status == status)
    out = []
    visible = _visible_devices(session, user)
    for row in session.scalars(query):
        rollout = _scoped(Rollout.model_validate(row.doc), visible)
        if rollout is None:
            continue
        summary = rollout.summary()
        out.append({"rollout_id": row.id, "version": row.offer.get("version"), "kind": row.offer.get("kind"),
                    "created_at": row.created_at, "updated_at": row.updated_at,
                    "devices": sum(p["devices"] for p in summary["phases"]), "summary": summary})
    return out


_ATTENTION = {"failed": 0, "rolled_back": 0, "timed_out": 0, "downloading": 1, "verifying": 1, "installing": 1,
              "rebooting": 1, "waiting": 2, "offered": 2, "pending": 3, "succeeded": 4}


@router.get("/rollouts/{rollout_id}")
def get_rollout(
    rollout_id: str,
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int | None, Query(ge=1, le=100000, description="At most this many devices, "
                                       "those needing attention first (failed, then updating)")] = None,
) -> dict[str, Any]:
    """Summary (per-phase state counts, status, halt reason) and per-device progress."""
    row = session.get(RolloutRow, rollout_id)
    if row is None:
        raise HTTPException(404, "no such rollout")
    whole = Rollout.model_validate(row.doc)
    visible = _visible_devices(session, user)
    rollout = _scoped(whole, visible)
    if rollout is None:
        raise OutOfScope("no such rollout")
    can_control = user.is_admin and (visible is None or set(whole.devices) <= visible)
    devices = sorted(rollout.devices.items(), key=lambda item: (_ATTENTION.get(item[1].state, 5), item[1].phase,
                                                                 item[0]))[:limit]
    return {"rollout_id": rollout_id, "offer": row.offer, "summary": rollout.summary(), "can_control": can_control,
            "phases": [p.model_dump() for p in rollout.phases], "devices_total": len(rollout.devices),
            "devices": {d: p.model_dump(mode="json") for d, p in devices}}


@router.post("/rollouts/{rollout_id}/{action}")
def control_rollout(rollout_id: str, action: Literal["start", "pause", "resume", "cancel"], state: StateDep,
                    request: Request, user: AdminUser) -> dict[str, Any]:
    now = state.now()
    with state.sessions.begin() as session:
        row = session.get(RolloutRow, rollout_id, with_for_update=True)
        if row is None:
            raise HTTPException(404, "no such rollout")
        rollout = Rollout.model_validate(row.doc)
        visible = _visible_devices(session, user)
        if _scoped(rollout, visible) is None:
            raise OutOfScope("no such rollout")
        if visible is not None and not set(rollout.devices) <= visible:
            raise HTTPException(403, "this rollout reaches devices outside your units")
        try:
            getattr(rollout, action)()
        except RolloutStateError as exc:
            raise HTTPException(409, str(exc)) from None
        offer_updates(session, rollout, row, now)
        summary = rollout.summary()
    _wake_operations(state)
    return {"rollout_id": rollout_id, "summary": summary}
