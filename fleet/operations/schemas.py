"""What the operations API takes and answers: settings layers and their state per device,
commands, bundles, rollouts. The services of this package return these; the routes
(``fleet/api/routes/{settings,commands,bundles,rollouts}.py``) only check who may ask."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet.operations.bundles import BUNDLE_NAME
from fleet.operations.models import CommandRow
from fleet.rollouts import DeviceProgress, HaltInfo, PhaseSpec, RolloutStatus, Target
from protocol.messages import CommandName

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


class BundleOut(BaseModel):
    name: str
    size: int
    sha256: str | None = Field(description="Computed at upload (None for a bundle put there by other means)")
    stored_at: Any = Field(default=None, description="When it was stored")
    signature_checked: bool | None = Field(default=None, description="At upload: its signature, manifest and files "
                                           "verified against bundles.public_keys (false: none configured)")
    kind: str | None = Field(default=None, description="At upload, once verified: its manifest's kind")
    version: str | None = Field(default=None, description="At upload, once verified: its manifest's version")


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

    @field_validator("phases")
    @classmethod
    def _phases_increase_to_100(cls, phases: list[PhaseSpec]) -> list[PhaseSpec]:
        """What planning needs (a 422 naming ``phases`` rather than a failure when planning)."""
        percents = [p.percent for p in phases]
        if percents != sorted(set(percents)) or percents[-1] != 100:
            raise ValueError("phase percentages must increase strictly and end at 100")
        return phases


class RecentCommandsOut(BaseModel):
    states: dict[str, int] = Field(description="Commands by state, over all that matched")
    commands: list[CommandOut] = Field(description="The latest, newest first")


class PhaseSummary(BaseModel):
    phase: int = Field(description="From 1")
    percent: float = Field(description="Cumulative share of the target devices")
    devices: int
    states: dict[str, int] = Field(description="The phase's devices by state")


class RolloutSummary(BaseModel):
    rollout_id: str
    status: RolloutStatus
    phase: int = Field(description="The current phase, from 1")
    halt_reason: str | None
    halt: HaltInfo | None
    states: dict[str, int] = Field(description="All devices by state")
    phases: list[PhaseSummary]


class RolloutCreatedOut(BaseModel):
    rollout_id: str
    offer: dict[str, Any] = Field(description="The update command's arguments every device is offered")
    summary: RolloutSummary


class RolloutRowOut(BaseModel):
    rollout_id: str
    version: str | None
    kind: str | None
    created_at: datetime
    updated_at: datetime
    devices: int
    summary: RolloutSummary


class RolloutDetailOut(BaseModel):
    rollout_id: str
    offer: dict[str, Any]
    summary: RolloutSummary
    can_control: bool = Field(description="Whether the caller may pause, resume or cancel it")
    phases: list[PhaseSpec]
    devices_total: int
    devices: dict[str, DeviceProgress] = Field(description="At most ``limit`` devices, those needing attention first")


class RolloutControlOut(BaseModel):
    rollout_id: str
    summary: RolloutSummary
