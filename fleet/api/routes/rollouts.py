"""``/rollouts``: update rollouts in phases (:mod:`fleet.operations.rollouts`):
``POST /rollouts``, ``GET /rollouts``, ``GET /rollouts/{id}``,
``POST /rollouts/{id}/{start|pause|resume|cancel}``.

A unit admin plans rollouts over their devices only; a rollout reaching other units is shown to
them with their devices only, and only a province admin may pause, resume or cancel it. Objects
outside the scope answer 404, as if absent."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from fleet.api.deps import SessionDep, StateDep
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.scope import OutOfScope, visible_devices, visible_units
from fleet.errors import NotFound
from fleet.operations import rollouts
from fleet.operations.bundles import BundleStore
from fleet.operations.schemas import RolloutControlOut, RolloutCreatedOut, RolloutDetailOut, RolloutIn, RolloutRowOut
from fleet.rollouts import RolloutStateError

router = APIRouter(prefix="/rollouts", tags=["operations"])


@router.post("", status_code=201)
def create_rollout(body: RolloutIn, state: StateDep, request: Request, user: AdminUser) -> RolloutCreatedOut:
    """Plan and (by default) start a rollout. A unit admin's targets are only their devices; a
    downgrade or another download address (``base_url``) is for a province admin."""
    if (body.allow_downgrade or body.base_url is not None) and not user.is_province_admin:
        raise HTTPException(403, "only a province admin may allow a downgrade or set base_url")
    bundles = BundleStore.of(state.config)
    if bundles.path(body.bundle) is None:
        raise HTTPException(404, "no such bundle")
    if body.base_url is not None:
        url = f"{body.base_url.rstrip('/')}/api/v1/bundles/{body.bundle}"
    else:
        url = str(request.url_for("get_bundle", name=body.bundle))
    offer = rollouts.build_offer(body, url, bundles.sha256(body.bundle))
    with state.sessions.begin() as session:
        try:
            summary = rollouts.plan_rollout(session, body, offer, visible_units(session, user), state.now())
        except rollouts.RolloutExists as exc:
            raise HTTPException(409, str(exc)) from None
        except rollouts.NoDeviceMatches as exc:
            raise HTTPException(422, str(exc)) from None
    state.services.wake_operations()
    return RolloutCreatedOut.model_validate({"rollout_id": body.rollout_id, "offer": offer, "summary": summary})


@router.get("")
def list_rollouts(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[str | None, Query(max_length=16, description="Only rollouts in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RolloutRowOut]:
    """Rollouts, newest first, each with its summary (no per-device progress: see one rollout)."""
    return [RolloutRowOut.model_validate(row)
            for row in rollouts.list_rollouts(session, visible_devices(session, user), status=status, limit=limit)]


@router.get("/{rollout_id}")
def get_rollout(
    rollout_id: str,
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int | None, Query(ge=1, le=100000, description="At most this many devices, "
                                       "those needing attention first (failed, then updating)")] = None,
) -> RolloutDetailOut:
    """Summary (per-phase state counts, status, halt reason) and per-device progress."""
    try:
        row, whole = rollouts.load(session, rollout_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    visible = visible_devices(session, user)
    rollout = rollouts.scoped(whole, visible)
    if rollout is None:
        raise OutOfScope("no such rollout")
    can_control = user.is_admin and (visible is None or set(whole.devices) <= visible)
    return RolloutDetailOut.model_validate(rollouts.detail(row, rollout, can_control=can_control, limit=limit))


@router.post("/{rollout_id}/{action}")
def control_rollout(rollout_id: str, action: rollouts.Action, state: StateDep, user: AdminUser) -> RolloutControlOut:
    with state.sessions.begin() as session:
        try:
            row, rollout = rollouts.load(session, rollout_id, for_update=True)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        visible = visible_devices(session, user)
        if rollouts.scoped(rollout, visible) is None:
            raise OutOfScope("no such rollout")
        if visible is not None and not set(rollout.devices) <= visible:
            raise HTTPException(403, "this rollout reaches devices outside your units")
        try:
            summary = rollouts.control(session, row, rollout, action, state.now())
        except RolloutStateError as exc:
            raise HTTPException(409, str(exc)) from None
    state.services.wake_operations()
    return RolloutControlOut.model_validate({"rollout_id": rollout_id, "summary": summary})
