"""Telemetry retention (:mod:`fleet.retention`) on SQLite and PostgreSQL: old reports thinned to
one per device and hour without changing any availability figure of the periodic report, the
oldest dropped, recent ones untouched, and a pass that finds nothing to do deleting nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import FleetConfig, RetentionConfig
from fleet.models import Device, MaintenanceMark, TelemetrySample
from fleet.progress.report import device_availability
from fleet.retention import THINNED_MARK, run_retention

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
START = datetime(2026, 2, 1, tzinfo=UTC)
UNIT = "99001"


def _id(ts: datetime) -> str:
    """A UUIDv7 for ``ts`` (what devices send): time-ordered, random below the milliseconds."""
    value = (int(ts.timestamp() * 1000) << 80) | (uuid.uuid4().int & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    return str(uuid.UUID(int=(value & ~(0x3 << 62)) | (0x2 << 62)))


def _times() -> dict[str, list[datetime]]:
    """kiosk-a: every 10 minutes, with a report exactly on each hour. kiosk-b: every 7 minutes
    with a six-hour gap each day (switched off at night), so its availability is below 100 %."""
    times: dict[str, list[datetime]] = {"kiosk-a": [], "kiosk-b": []}
    t = START
    while t < NOW:
        times["kiosk-a"].append(t)
        t += timedelta(minutes=10)
    t = START + timedelta(seconds=13)
    while t < NOW:
        if not 17 <= t.hour < 23:
            times["kiosk-b"].append(t)
        t += timedelta(minutes=7)
    return times


def _fill(sessions: sessionmaker[Session]) -> dict[str, list[datetime]]:
    times = _times()
    with sessions.begin() as session:
        for device in times:
            session.add(Device(id=device, unit_code=UNIT, first_seen=START, last_seen=NOW, status="online"))
        session.flush()
        session.add_all(TelemetrySample(id=_id(ts), device_id=device, ts=ts, data={"n": i})
                        for device, stamps in times.items() for i, ts in enumerate(stamps))
    return times


def _rows(session: Session) -> list[tuple[str, datetime]]:
    return [(d, ts) for d, ts in session.execute(
        select(TelemetrySample.device_id, TelemetrySample.ts).order_by(TelemetrySample.device_id, TelemetrySample.ts))]


def _availability(sessions: sessionmaker[Session], month: str) -> list[tuple[str, int, int]]:
    with sessions() as session:
        return [(a.device_id, a.hours_up, a.hours)
                for a in device_availability(session, {UNIT}, month, month, NOW, heartbeat_timeout_s=180)]


def test_thinning_keeps_the_first_report_of_each_hour_and_every_availability(sessions: sessionmaker[Session]) -> None:
    """Seven weeks of reports from two kiosks (one with nightly gaps, one with reports exactly on
    the hour). Full detail 7 days, kept 30 days. After the pass: the last 7 days (from the hour)
    are untouched; before that each device-hour keeps its earliest report only; nothing older
    than 30 days is left; the report's availability for March and for the part of February
    still kept is what it was. A second pass deletes nothing; a pass a day later thins only
    the day that aged."""
    times = _fill(sessions)
    config = RetentionConfig(telemetry_full_days=7, telemetry_keep_days=30)
    cut = (NOW - timedelta(days=7)).replace(minute=0)
    drop_before = NOW - timedelta(days=30)
    march_before = _availability(sessions, "2026-03")
    assert march_before[1][1] < march_before[1][2]  # kiosk-b's nights: below 100 %, so the check can fail

    done = run_retention(sessions, config, NOW)

    expected: list[tuple[str, datetime]] = []
    for device, stamps in times.items():
        first_of_hour: dict[datetime, datetime] = {}
        for ts in stamps:
            if drop_before <= ts < cut:
                first_of_hour.setdefault(ts.replace(minute=0, second=0), ts)
        expected += [(device, ts) for ts in first_of_hour.values()]
        expected += [(device, ts) for ts in stamps if ts >= cut]
    with sessions() as session:
        assert _rows(session) == sorted(expected)
        assert session.get_one(MaintenanceMark, THINNED_MARK).at == cut
    dropped = sum(1 for stamps in times.values() for ts in stamps if ts < drop_before)
    assert done.dropped == dropped and done.devices == 2
    assert done.thinned == sum(len(s) for s in times.values()) - dropped - len(expected)
    assert _availability(sessions, "2026-03") == march_before

    again = run_retention(sessions, config, NOW)
    assert (again.thinned, again.dropped) == (0, 0)

    later = run_retention(sessions, config, NOW + timedelta(days=1))
    aged = [(d, ts) for d, ts in expected if cut <= ts < cut + timedelta(days=1)]
    aged_hours = {(d, ts.replace(minute=0, second=0)) for d, ts in aged}
    assert later.thinned == len(aged) - len(aged_hours)
    with sessions() as session:
        assert session.get_one(MaintenanceMark, THINNED_MARK).at == cut + timedelta(days=1)
    assert _availability(sessions, "2026-03") == march_before


def test_without_an_age_limit_nothing_is_dropped_and_february_stays_whole(sessions: sessionmaker[Session]) -> None:
    """``telemetry_keep_days`` unset: thinning only, so February's availability (all of it older
    than the full-detail window) is unchanged, and as many rows remain as device-hours."""
    times = _fill(sessions)
    february = _availability(sessions, "2026-02")
    done = run_retention(sessions, RetentionConfig(telemetry_full_days=7, telemetry_keep_days=None), NOW)
    assert done.dropped == 0 and done.thinned > 0
    assert _availability(sessions, "2026-02") == february
    cut = (NOW - timedelta(days=7)).replace(minute=0)
    hours = {(d, ts.replace(minute=0, second=0)) for d, stamps in times.items() for ts in stamps if ts < cut}
    with sessions() as session:
        old = session.scalar(select(func.count()).select_from(TelemetrySample).where(TelemetrySample.ts < cut))
    assert old == len(hours)


def test_retention_settings_are_checked() -> None:
    """Bad input tried: an age limit inside the full-detail window, a zero window, an unknown key."""
    with pytest.raises(ValidationError, match="more than telemetry_full_days"):
        RetentionConfig(telemetry_full_days=30, telemetry_keep_days=30)
    with pytest.raises(ValidationError):
        RetentionConfig(telemetry_full_days=0)
    with pytest.raises(ValidationError):
        FleetConfig.model_validate({"retention": {"telemetry_days": 3}})
