"""Rollouts and settings as pure logic: no database, no MQTT, no clock of their own.

The fleet's services persist a :class:`Rollout` (``to_json``/``from_json``), feed it every
``UpdateProgress`` (:meth:`Rollout.record`) and call :meth:`Rollout.step` after each one and
periodically; ``step`` says which devices to send an ``update`` command to now. Phases are
planned once, deterministically, from the rollout id (so a restart of the fleet plans the same
canary), and a phase whose error share reaches its threshold halts the whole rollout, as
hawkBit and AWS IoT Jobs do::

    rollout = Rollout.create("r-2026-11", targets, [PhaseSpec(percent=5), PhaseSpec(percent=100)])
    rollout.start()
    for device_id in rollout.step(now).offer: send_update_command(device_id)
    rollout.record(progress.device_id, progress.state, now, progress.detail)

Settings: :func:`effective_settings` merges fleet, unit (root to leaf) and device layers, the
most specific winning key by key; :func:`settings_diff` lists where reported differs from desired.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from fleet.errors import FleetError

RolloutStatus = Literal["created", "running", "paused", "halted", "cancelled", "completed"]
DeviceState = Literal[
    "pending", "offered", "waiting", "downloading", "verifying", "installing", "rebooting",
    "succeeded", "rolled_back", "failed", "timed_out",
]
SUCCESS: frozenset[str] = frozenset({"succeeded"})
FAILURE: frozenset[str] = frozenset({"rolled_back", "failed", "timed_out"})
TERMINAL: frozenset[str] = SUCCESS | FAILURE
_ORDER: dict[str, int] = {
    "pending": 0, "offered": 1, "waiting": 2, "downloading": 3, "verifying": 4, "installing": 5, "rebooting": 6,
}


class RolloutStateError(FleetError, ValueError):
    """A transition that the rollout's state does not allow (e.g. resuming a cancelled rollout)."""


class PhaseSpec(BaseModel):
    """One phase: the cumulative share of the targets updated by its end, and its thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    percent: float = Field(gt=0, le=100, description="Cumulative share of the target devices, e.g. 2, 20, 100")
    success_threshold: float = Field(
        default=1.0, gt=0, le=1, description="Share of the phase's devices that must succeed to go to the next phase"
    )
    error_threshold: float = Field(
        default=0.1, gt=0, le=1, description="Share of the phase's devices failed or rolled back that halts everything"
    )


class Target(BaseModel):
    """Which devices a rollout (or a settings layer) is for; the criteria combine with AND."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit_subtree: str | None = Field(default=None, description="Devices of this unit and of units under it")
    tags: list[str] = Field(default_factory=list, description="Devices carrying every one of these tags")
    device_ids: list[str] | None = Field(default=None, description="Only these devices")


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    unit: str | None
    tags: frozenset[str] = frozenset()


# --- targeting and planning ----------------------------------------------------------------------


def unit_chain(unit: str, parent_of: Mapping[str, str | None]) -> list[str]:
    """Units from the root down to ``unit`` (a cycle in the unit table is cut, not followed)."""
    chain: list[str] = []
    current: str | None = unit
    while current is not None and current not in chain:
        chain.append(current)
        current = parent_of.get(current)
    return chain[::-1]


def select_targets(devices: Iterable[DeviceInfo], target: Target, parent_of: Mapping[str, str | None]) -> list[str]:
    """The device ids a target names, sorted."""
    wanted_ids = None if target.device_ids is None else set(target.device_ids)
    out = []
    for device in devices:
        if wanted_ids is not None and device.device_id not in wanted_ids:
            continue
        if target.unit_subtree is not None and (
            device.unit is None or target.unit_subtree not in unit_chain(device.unit, parent_of)
        ):
            continue
        if not set(target.tags) <= device.tags:
            continue
        out.append(device.device_id)
    return sorted(out)


def device_order(rollout_id: str, device_ids: Iterable[str]) -> list[str]:
    """A shuffle that is the same every time for the same rollout, and different between rollouts
    (so the same kiosk is not always the canary)."""
    return sorted(set(device_ids), key=lambda d: hashlib.sha256(f"{rollout_id}\0{d}".encode()).hexdigest())


def plan_phases(rollout_id: str, device_ids: Iterable[str], phases: Sequence[PhaseSpec]) -> list[list[str]]:
    """Split the targets into phases: phase k holds the devices that bring the cumulative count to
    ceil(n * percent / 100) (at least one device in a phase while devices remain)."""
    if not phases:
        raise RolloutStateError("a rollout needs at least one phase")
    percents = [p.percent for p in phases]
    if percents != sorted(percents) or len(set(percents)) != len(percents) or percents[-1] != 100:
        raise RolloutStateError("phase percentages must increase strictly and end at 100")
    ordered = device_order(rollout_id, device_ids)
    plan: list[list[str]] = []
    done = 0
    for spec in phases:
        upto = min(len(ordered), max(math.ceil(len(ordered) * spec.percent / 100), done + 1))
        plan.append(ordered[done:upto])
        done = upto
    return plan


# --- the rollout state machine ------------------------------------------------------------------


class DeviceProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: DeviceState = "pending"
    phase: int = Field(ge=0)
    offered_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Step:
    """What :meth:`Rollout.step` decided."""

    offer: list[str] = field(default_factory=list)
    """Devices to send the ``update`` command to now (already marked offered)."""
    timed_out: list[str] = field(default_factory=list)
    advanced_to: int | None = None
    halted: str | None = None
    completed: bool = False


class HaltInfo(BaseModel):
    """The numbers behind ``halt_reason``: ``errors`` (failed or rolled back reached the error
    threshold) or ``below_success`` (the phase finished under its success threshold)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["errors", "below_success"]
    phase: int = Field(ge=1)
    total: int
    succeeded: int
    failed: int
    threshold: float


class Rollout(BaseModel):
    """One rollout's state. Mutated only through its methods; serialise with ``model_dump_json``."""

    model_config = ConfigDict(extra="forbid")
    rollout_id: str = Field(max_length=64)
    phases: list[PhaseSpec]
    plan: list[list[str]]
    status: RolloutStatus = "created"
    phase_index: int = 0
    device_timeout_s: float = Field(default=6 * 3600, gt=0, description="Offered and silent this long: timed out")
    devices: dict[str, DeviceProgress] = Field(default_factory=dict)
    halt_reason: str | None = None
    halt: HaltInfo | None = Field(default=None, description="Why it halted, as data (pages word it in their language)")

    @model_validator(mode="after")
    def _consistent(self) -> Rollout:
        if len(self.plan) != len(self.phases):
            raise ValueError("plan and phases differ in length")
        return self

    @classmethod
    def create(
        cls, rollout_id: str, device_ids: Iterable[str], phases: Sequence[PhaseSpec], *, device_timeout_s: float = 21600
    ) -> Rollout:
        plan = plan_phases(rollout_id, device_ids, phases)
        devices = {d: DeviceProgress(phase=i) for i, ids in enumerate(plan) for d in ids}
        return cls(rollout_id=rollout_id, phases=list(phases), plan=plan, devices=devices,
                   device_timeout_s=device_timeout_s)

    # --- hand controls ------------------------------------------------------------------

    def _require(self, allowed: set[str], action: str) -> None:
        if self.status not in allowed:
            raise RolloutStateError(f"cannot {action} a {self.status} rollout")

    def start(self) -> None:
        self._require({"created"}, "start")
        self.status = "running"

    def pause(self) -> None:
        self._require({"running"}, "pause")
        self.status = "paused"

    def resume(self) -> None:
        """Resume a paused rollout. A halted one stays halted (its failures would halt it again):
        cancel it and start a new rollout with a fixed bundle."""
        self._require({"paused"}, "resume")
        self.status = "running"

    def cancel(self) -> None:
        self._require({"created", "running", "paused", "halted"}, "cancel")
        self.status = "cancelled"

    # --- device reports -----------------------------------------------------------------

    def record(self, device_id: str, state: DeviceState, at: datetime, detail: str | None = None) -> bool:
        """Take a device's progress. Returns False when ignored: unknown device, a device never
        offered, or a late duplicate (delivery is at-least-once and may reorder) that would move
        a device backwards or out of a final state."""
        progress = self.devices.get(device_id)
        if progress is None or progress.state == "pending" or progress.state in TERMINAL:
            return False
        if state not in TERMINAL and state != "waiting" and _ORDER.get(state, 0) < _ORDER.get(progress.state, 0):
            return False  # ("waiting" may come again after the download: for the open dossier)
        progress.state, progress.updated_at, progress.detail = state, at, detail
        return True

    # --- the decision ----------------------------------------------------------------------

    def _phase_counts(self, index: int) -> tuple[int, int, int]:
        ids = self.plan[index]
        states = [self.devices[d].state for d in ids]
        return len(ids), sum(s in SUCCESS for s in states), sum(s in FAILURE for s in states)

    def step(self, now: datetime) -> Step:
        """Time out silent devices, halt or advance, and choose the devices to offer now."""
        timed_out = []
        for device_id, progress in self.devices.items():
            if (
                progress.state not in TERMINAL
                and progress.offered_at is not None
                and now - (progress.updated_at or progress.offered_at) >= timedelta(seconds=self.device_timeout_s)
            ):
                progress.state, progress.updated_at, progress.detail = "timed_out", now, "no progress in time"
                timed_out.append(device_id)
        if self.status != "running":
            return Step(timed_out=timed_out)
        advanced_to = None
        while True:
            spec = self.phases[self.phase_index]
            total, ok, bad = self._phase_counts(self.phase_index)
            if total and bad / total >= spec.error_threshold:
                self.status = "halted"
                self.halt_reason = (
                    f"phase {self.phase_index + 1}: {bad} of {total} devices failed or rolled back "
                    f"(threshold {spec.error_threshold:.0%})"
                )
                self.halt = HaltInfo(kind="errors", phase=self.phase_index + 1, total=total, succeeded=ok,
                                     failed=bad, threshold=spec.error_threshold)
                return Step(timed_out=timed_out, advanced_to=advanced_to, halted=self.halt_reason)
            finished = all(self.devices[d].state in TERMINAL for d in self.plan[self.phase_index])
            reached = total == 0 or ok / total >= spec.success_threshold
            if reached and self.phase_index + 1 < len(self.phases):
                self.phase_index += 1
                advanced_to = self.phase_index
                continue
            if reached and finished:
                self.status = "completed"
                return Step(timed_out=timed_out, advanced_to=advanced_to, completed=True)
            if finished:
                self.status = "halted"
                self.halt_reason = (
                    f"phase {self.phase_index + 1} finished with {ok} of {total} succeeded, "
                    f"below its threshold {spec.success_threshold:.0%}"
                )
                self.halt = HaltInfo(kind="below_success", phase=self.phase_index + 1, total=total, succeeded=ok,
                                     failed=bad, threshold=spec.success_threshold)
                return Step(timed_out=timed_out, advanced_to=advanced_to, halted=self.halt_reason)
            break
        offer = [d for d in self.plan[self.phase_index] if self.devices[d].state == "pending"]
        for device_id in offer:
            self.devices[device_id].state = "offered"
            self.devices[device_id].offered_at = now
        return Step(offer=offer, timed_out=timed_out, advanced_to=advanced_to)

    def summary(self) -> dict[str, Any]:
        """Counts by state, overall and per phase, for the API and the web page."""
        per_phase = []
        for index, ids in enumerate(self.plan):
            counts: dict[str, int] = {}
            for d in ids:
                counts[self.devices[d].state] = counts.get(self.devices[d].state, 0) + 1
            per_phase.append({"phase": index + 1, "percent": self.phases[index].percent, "devices": len(ids),
                              "states": counts})
        totals: dict[str, int] = {}
        for progress in self.devices.values():
            totals[progress.state] = totals.get(progress.state, 0) + 1
        return {"rollout_id": self.rollout_id, "status": self.status, "phase": self.phase_index + 1,
                "halt_reason": self.halt_reason, "halt": None if self.halt is None else self.halt.model_dump(),
                "states": totals, "phases": per_phase}


# --- settings -------------------------------------------------------------------------------------


def merge_settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge settings layers from the most general to the most specific: nested mappings merge key
    by key, any other value of a more specific layer replaces the general one.

    >>> merge_settings({"scan": {"dpi": 300, "colour_mode": "color"}}, {"scan": {"dpi": 400}})
    {'scan': {'dpi': 400, 'colour_mode': 'color'}}
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge_settings(out[key], value)
            elif isinstance(value, Mapping):
                out[key] = merge_settings(value)
            else:
                out[key] = value
    return out


def effective_settings(
    fleet: Mapping[str, Any] | None,
    unit: str | None,
    unit_settings: Mapping[str, Mapping[str, Any]],
    parent_of: Mapping[str, str | None],
    device: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The desired settings of one device: fleet defaults, then each unit from the root down to
    the device's unit, then the device's own; the most specific wins."""
    chain = unit_chain(unit, parent_of) if unit is not None else []
    return merge_settings(fleet, *(unit_settings.get(u) for u in chain), device)


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON: the fleet bumps ``ConfigDesired.version`` when this changes."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class SettingDiff:
    path: str
    desired: Any
    reported: Any


_MISSING = object()


def settings_diff(desired: Mapping[str, Any], reported: Mapping[str, Any]) -> list[SettingDiff]:
    """Leaf keys (dotted paths) where the device runs something other than what the fleet wants.
    Only keys the fleet set count: the device reports its defaults too."""
    out: list[SettingDiff] = []

    def walk(prefix: str, want: Mapping[str, Any], have: Any) -> None:
        for key, value in want.items():
            path = f"{prefix}{key}"
            got = have.get(key, _MISSING) if isinstance(have, Mapping) else _MISSING
            if isinstance(value, Mapping):
                walk(f"{path}.", value, got)
            elif got is _MISSING or got != value:
                out.append(SettingDiff(path, value, None if got is _MISSING else got))

    walk("", desired, reported)
    return out
