"""Rollouts as the fleet keeps them: planned over the devices a target reaches, stored with the
update offer each device gets, stepped and controlled (:mod:`fleet.rollouts` holds the pure
state machine, :class:`fleet.operations.service.Operations` steps running ones on every tick).

>>> from fleet.rollouts import PhaseSpec
>>> rollout = Rollout.create("r1", ["a", "b", "c"], [PhaseSpec(percent=100)], device_timeout_s=60)
>>> scoped(rollout, {"a", "x"}).devices.keys(), scoped(rollout, {"x"})
(dict_keys(['a']), None)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.auth.scope import in_scope
from fleet.errors import ContractViolation, FleetError, NotFound
from fleet.models import Device
from fleet.operations.models import RolloutRow
from fleet.operations.schemas import RolloutIn
from fleet.operations.service import offer_updates
from fleet.progress.units import unit_parents
from fleet.rollouts import DeviceInfo, Rollout, select_targets
from protocol.commands import UpdateOffer

Action = Literal["start", "pause", "resume", "cancel"]
WITHDRAWN = frozenset({"cancelled", "halted"})
_ATTENTION = {"failed": 0, "rolled_back": 0, "timed_out": 0, "downloading": 1, "verifying": 1, "installing": 1,
              "rebooting": 1, "waiting": 2, "offered": 2, "pending": 3, "succeeded": 4}


class RolloutExists(FleetError, ValueError):
    """A rollout with this id exists."""


class NoDeviceMatches(FleetError, ValueError):
    """The rollout's target reaches no device (of those the planner may reach)."""


def build_offer(body: RolloutIn, url: str, sha256: str | None) -> dict[str, Any]:
    """The ``update`` command's arguments every device of the rollout gets, built through the
    contract's :class:`protocol.commands.UpdateOffer` (:class:`ContractViolation` when they do not
    fit it). The URL names the rollout: the offer stays valid only while the rollout is (410
    after, see :func:`withdrawn`)."""
    try:
        offer = UpdateOffer(rollout_id=body.rollout_id, url=f"{url}?rollout={body.rollout_id}",
                            version=body.version, kind=body.kind, sha256=sha256 or None,
                            allow_downgrade=body.allow_downgrade)
    except ValidationError as exc:
        raise ContractViolation("offer", exc.errors(include_input=False)) from None
    return offer.model_dump(mode="json", exclude_none=True)


def plan_rollout(session: Session, body: RolloutIn, offer: dict[str, Any], visible_units: frozenset[str] | None,
                 now: datetime) -> dict[str, Any]:
    """Store the rollout over the devices its target reaches among ``visible_units`` (None:
    every device) and, with ``body.start``, offer the first phase. Returns its summary."""
    if session.get(RolloutRow, body.rollout_id) is not None:
        raise RolloutExists("a rollout with this id exists")
    devices = [DeviceInfo(device_id=d.id, unit=d.unit_code) for d in session.scalars(select(Device))
               if in_scope(visible_units, d.unit_code)]
    targets = select_targets(devices, body.target, unit_parents(session))
    if not targets:
        raise NoDeviceMatches("no device matches the target")
    rollout = Rollout.create(body.rollout_id, targets, body.phases, device_timeout_s=body.device_timeout_s)
    row = RolloutRow(id=body.rollout_id, status=rollout.status, doc=rollout.model_dump(mode="json"),
                     offer=offer, created_at=now, updated_at=now)
    session.add(row)
    if body.start:
        rollout.start()
        offer_updates(session, rollout, row, now)
    return rollout.summary()


def scoped(rollout: Rollout, visible: set[str] | None) -> Rollout | None:
    """The rollout as a user limited to ``visible`` devices sees it: only their devices (None
    when it has none of them). Status, phase and halt reason are the whole rollout's."""
    if visible is None:
        return rollout
    if not visible & set(rollout.devices):
        return None
    plan = [[d for d in ids if d in visible] for ids in rollout.plan]
    return rollout.model_copy(update={"plan": plan,
                                      "devices": {d: p for d, p in rollout.devices.items() if d in visible}})


def list_rollouts(session: Session, visible: set[str] | None, *, status: str | None,
                  limit: int) -> list[dict[str, Any]]:
    """Rollouts reaching a visible device, newest first, each with its summary."""
    query = select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(RolloutRow.status == status)
    out = []
    for row in session.scalars(query):
        rollout = scoped(Rollout.model_validate(row.doc), visible)
        if rollout is None:
            continue
        summary = rollout.summary()
        out.append({"rollout_id": row.id, "version": row.offer.get("version"), "kind": row.offer.get("kind"),
                    "created_at": row.created_at, "updated_at": row.updated_at,
                    "devices": sum(p["devices"] for p in summary["phases"]), "summary": summary})
    return out


def load(session: Session, rollout_id: str, *, for_update: bool = False) -> tuple[RolloutRow, Rollout]:
    """The stored rollout and its state; :class:`NotFound` when there is none."""
    row = session.get(RolloutRow, rollout_id, with_for_update=for_update)
    if row is None:
        raise NotFound("no such rollout")
    return row, Rollout.model_validate(row.doc)


def detail(row: RolloutRow, rollout: Rollout, *, can_control: bool, limit: int | None) -> dict[str, Any]:
    """Summary and per-device progress (at most ``limit`` devices, those needing attention first)."""
    devices = sorted(rollout.devices.items(), key=lambda item: (_ATTENTION.get(item[1].state, 5), item[1].phase,
                                                                item[0]))[:limit]
    return {"rollout_id": row.id, "offer": row.offer, "summary": rollout.summary(), "can_control": can_control,
            "phases": [p.model_dump() for p in rollout.phases], "devices_total": len(rollout.devices),
            "devices": {d: p.model_dump(mode="json") for d, p in devices}}


def control(session: Session, row: RolloutRow, rollout: Rollout, action: Action, now: datetime) -> dict[str, Any]:
    """Start, pause, resume or cancel; :class:`fleet.rollouts.RolloutStateError` when the
    rollout's status does not allow it. Returns the summary after the step."""
    getattr(rollout, action)()
    offer_updates(session, rollout, row, now)
    return rollout.summary()


def withdrawn(session: Session, rollout_id: str, bundle: str) -> str | None:
    """Why the offer of ``rollout_id`` for ``bundle`` is no longer good (None: it is)."""
    row = session.get(RolloutRow, rollout_id)
    if row is None or row.status in WITHDRAWN:
        return f"rollout {'unknown' if row is None else row.status}: offer withdrawn"
    if row.offer.get("url", "").rsplit("?", 1)[0].rsplit("/", 1)[-1] != bundle:
        return "this rollout offers another bundle"
    return None
