"""Rollout and settings logic (fleet/rollouts.py), pure: 20 simulated devices go through the
phases; a canary whose health check fails halts the rollout before any later-phase device is
offered; hand controls refuse impossible transitions; settings merge most-specific-first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet.rollouts import (
    DeviceInfo,
    DeviceState,
    PhaseSpec,
    Rollout,
    RolloutStateError,
    Target,
    effective_settings,
    merge_settings,
    plan_phases,
    select_targets,
    settings_diff,
    settings_fingerprint,
)

DEVICES = [f"kiosk-{i:04d}" for i in range(1, 21)]
PHASES = [
    PhaseSpec(percent=2),
    PhaseSpec(percent=20, success_threshold=0.9),
    PhaseSpec(percent=100, success_threshold=0.9),
]
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


class Fleet:
    """Simulated devices: each offered device reports the states a real updater reports."""

    def __init__(self, rollout: Rollout, outcome: Callable[[str], DeviceState]) -> None:
        self.rollout = rollout
        self.outcome = outcome
        self.touched: list[str] = []
        self.now = T0

    def run(self, max_rounds: int = 20) -> None:
        for _ in range(max_rounds):
            step = self.rollout.step(self.now)
            if not step.offer:
                if self.rollout.status != "running":
                    return
                continue
            for device_id in step.offer:
                self.touched.append(device_id)
                steps: tuple[DeviceState, ...] = ("downloading", "verifying", "installing", "rebooting")
                for state in steps:
                    self.now += timedelta(seconds=1)
                    assert self.rollout.record(device_id, state, self.now)
                self.rollout.record(device_id, self.outcome(device_id), self.now)
        raise AssertionError("rollout did not settle")


def test_plan_is_deterministic_and_cumulative() -> None:
    plan = plan_phases("r1", DEVICES, PHASES)
    assert [len(p) for p in plan] == [1, 3, 16]
    assert sorted(d for ids in plan for d in ids) == sorted(DEVICES)
    assert plan == plan_phases("r1", reversed(DEVICES), PHASES)
    assert plan_phases("r2", DEVICES, PHASES)[0] != plan[0] or plan_phases("r3", DEVICES, PHASES)[0] != plan[0]


def test_bad_phase_lists_are_refused() -> None:
    """Bad input: percentages that do not end at 100, that go down, or no phase at all."""
    for bad in ([PhaseSpec(percent=50)], [PhaseSpec(percent=50), PhaseSpec(percent=20), PhaseSpec(percent=100)], []):
        with pytest.raises(RolloutStateError):
            plan_phases("r", DEVICES, bad)


def test_good_bundle_goes_through_every_phase() -> None:
    rollout = Rollout.create("good", DEVICES, PHASES)
    rollout.start()
    fleet = Fleet(rollout, lambda _d: "succeeded")
    fleet.run()
    assert rollout.status == "completed"
    assert sorted(fleet.touched) == sorted(DEVICES)
    # Phase by phase: every device of phase k was offered before any device of phase k+1.
    phase_of = {d: i for i, ids in enumerate(rollout.plan) for d in ids}
    assert [phase_of[d] for d in fleet.touched] == sorted(phase_of[d] for d in fleet.touched)
    assert rollout.summary()["states"] == {"succeeded": 20}


def test_failing_canary_halts_with_no_later_device_touched() -> None:
    """Bad input: a bundle whose health check fails on the canary (it reports rolled_back)."""
    rollout = Rollout.create("bad", DEVICES, PHASES)
    rollout.start()
    fleet = Fleet(rollout, lambda _d: "rolled_back")
    fleet.run()
    assert rollout.status == "halted" and "phase 1" in (rollout.halt_reason or "")
    assert rollout.summary()["halt"] == {"kind": "errors", "phase": 1, "total": len(rollout.plan[0]),
                                         "succeeded": 0, "failed": len(rollout.plan[0]), "threshold": 0.1}
    assert fleet.touched == rollout.plan[0]
    later = [d for ids in rollout.plan[1:] for d in ids]
    assert all(rollout.devices[d].state == "pending" and rollout.devices[d].offered_at is None for d in later)
    assert rollout.step(T0 + timedelta(days=1)).offer == []
    with pytest.raises(RolloutStateError):
        rollout.resume()
    rollout.cancel()
    assert rollout.summary()["status"] == "cancelled"


def test_error_threshold_in_a_later_phase_halts_before_the_last() -> None:
    """Bad input: two of the three devices of phase 2 fail (threshold 10%)."""
    rollout = Rollout.create("mid", DEVICES, PHASES)
    failing = set(rollout.plan[1][:2])
    rollout.start()
    fleet = Fleet(rollout, lambda d: "failed" if d in failing else "succeeded")
    fleet.run()
    assert rollout.status == "halted" and rollout.phase_index == 1
    assert not set(fleet.touched) & set(rollout.plan[2])


def test_one_failure_in_the_big_phase_is_tolerated() -> None:
    rollout = Rollout.create("tol", DEVICES, PHASES)
    unlucky = rollout.plan[2][0]
    rollout.start()
    fleet = Fleet(rollout, lambda d: "rolled_back" if d == unlucky else "succeeded")
    fleet.run()
    assert rollout.status == "completed"
    assert rollout.summary()["phases"][2]["states"] == {"rolled_back": 1, "succeeded": 15}


def test_silent_devices_time_out_and_count_as_failures() -> None:
    """Bad input: the canary is offered and never answers (offline for good)."""
    rollout = Rollout.create("silent", DEVICES, PHASES, device_timeout_s=3600)
    rollout.start()
    assert rollout.step(T0).offer == rollout.plan[0]
    assert rollout.step(T0 + timedelta(minutes=59)).offer == []
    step = rollout.step(T0 + timedelta(hours=1))
    assert step.timed_out == rollout.plan[0] and step.halted


def test_pause_resume_cancel_state_machine() -> None:
    """Bad input: resuming a running rollout, pausing a created one, starting twice, anything after cancel."""
    rollout = Rollout.create("hand", DEVICES, PHASES)
    with pytest.raises(RolloutStateError):
        rollout.pause()
    rollout.start()
    with pytest.raises(RolloutStateError):
        rollout.start()
    with pytest.raises(RolloutStateError):
        rollout.resume()
    canary = rollout.step(T0).offer
    rollout.record(canary[0], "succeeded", T0)
    rollout.pause()
    assert rollout.step(T0).offer == [] and rollout.status == "paused"
    rollout.resume()
    assert rollout.step(T0).offer == rollout.plan[1]
    rollout.cancel()
    for action in (rollout.start, rollout.pause, rollout.resume, rollout.cancel):
        with pytest.raises(RolloutStateError):
            action()
    assert rollout.step(T0).offer == []


def test_late_and_duplicate_reports_do_not_move_devices_backwards() -> None:
    """Bad input: 'downloading' redelivered after 'succeeded'; a report from a device never offered."""
    rollout = Rollout.create("dup", DEVICES, PHASES)
    rollout.start()
    canary = rollout.step(T0).offer[0]
    assert rollout.record(canary, "installing", T0)
    assert not rollout.record(canary, "downloading", T0)
    assert rollout.record(canary, "succeeded", T0)
    assert not rollout.record(canary, "downloading", T0)
    assert rollout.devices[canary].state == "succeeded"
    assert not rollout.record(rollout.plan[2][0], "succeeded", T0)
    assert not rollout.record("kiosk-9999", "succeeded", T0)


def test_state_survives_serialisation() -> None:
    rollout = Rollout.create("ser", DEVICES, PHASES)
    rollout.start()
    rollout.step(T0)
    again = Rollout.model_validate_json(rollout.model_dump_json())
    assert again == rollout and again.step(T0).offer == []


def test_targets_by_unit_subtree_tags_and_list() -> None:
    parent_of = {"province": None, "district-1": "province", "commune-1a": "district-1", "district-2": "province"}
    devices = [
        DeviceInfo("kiosk-0001", "commune-1a", frozenset({"camera"})),
        DeviceInfo("kiosk-0002", "district-1", frozenset()),
        DeviceInfo("kiosk-0003", "district-2", frozenset({"camera"})),
        DeviceInfo("kiosk-0004", None),
    ]
    assert select_targets(devices, Target(unit_subtree="district-1"), parent_of) == ["kiosk-0001", "kiosk-0002"]
    assert select_targets(devices, Target(tags=["camera"]), parent_of) == ["kiosk-0001", "kiosk-0003"]
    assert select_targets(devices, Target(unit_subtree="province", tags=["camera"]), parent_of) == [
        "kiosk-0001", "kiosk-0003"]
    assert select_targets(devices, Target(device_ids=["kiosk-0004", "kiosk-0002"]), parent_of) == [
        "kiosk-0002", "kiosk-0004"]


def test_settings_most_specific_wins() -> None:
    parent_of = {"province": None, "district-1": "province", "commune-1a": "district-1"}
    fleet = {"scan": {"dpi": 300, "colour_mode": "color"}, "kiosk_language": "vi", "telemetry_interval_s": 60}
    units: dict[str, dict[str, Any]] = {"province": {"telemetry_interval_s": 120}, "district-1": {"scan": {"dpi": 400}},
             "commune-1a": {"telemetry_interval_s": 30}}
    device = {"scan": {"colour_mode": "gray"}}
    merged = effective_settings(fleet, "commune-1a", units, parent_of, device)
    assert merged == {"scan": {"dpi": 400, "colour_mode": "gray"}, "kiosk_language": "vi", "telemetry_interval_s": 30}
    assert effective_settings(fleet, "district-1", units, parent_of, None)["telemetry_interval_s"] == 120
    assert fleet["scan"] == {"dpi": 300, "colour_mode": "color"}  # layers are not modified
    assert merge_settings({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert settings_fingerprint({"a": 1, "b": 2}) == settings_fingerprint({"b": 2, "a": 1})


def test_settings_diff_lists_what_the_device_does_not_run() -> None:
    desired = {"scan": {"dpi": 400, "colour_mode": "color"}, "kiosk_language": "en"}
    reported = {"scan": {"dpi": 300, "colour_mode": "color"}, "kiosk_language": "en", "telemetry_interval_s": 60}
    diff = settings_diff(desired, reported)
    assert [(d.path, d.desired, d.reported) for d in diff] == [("scan.dpi", 400, 300)]
    assert [d.path for d in settings_diff({"quality": {"min_sharpness": 0.4}}, {})] == ["quality.min_sharpness"]
