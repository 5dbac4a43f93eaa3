"""What is wrong right now: each check reads the fleet's tables and returns the conditions that
hold at ``now``, keyed by (kind, subject). The evaluator turns them into alerts.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     current(session, datetime(2026, 3, 20, tzinfo=UTC), AlertsConfig(), 180.0, set()).conditions
{}
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from fleet.alerts.config import AlertsConfig
from fleet.delivery import outbox
from fleet.delivery.config import DeliveryConfig
from fleet.delivery.models import WAITING, Delivery
from fleet.display import DEFAULT_ZONE, zone
from fleet.errors import FleetError
from fleet.models import Device, Event, Page, TelemetrySample, is_online
from fleet.progress import periods

log = logging.getLogger(__name__)

SCANNER_FAULTS = {"scanner_jammed": "jammed", "scanner_cover_open": "cover_open"}
"""Fault events that say the scanner needs a hand, and the telemetry state they stand for."""

Key = tuple[str, str]


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    severity: str
    message_vi: str
    message_en: str
    value: float | None = None
    device_id: str | None = None
    unit_code: str | None = None
    steady_value: bool = False
    """The value only grows with time (seconds offline): an open alert keeps the one it opened
    with, so a condition that merely persists writes nothing."""

    @property
    def key(self) -> Key:
        return (self.kind, self.subject)


@dataclass
class Findings:
    """The conditions that hold, and the kinds that could not be checked this time (their open
    alerts stay as they are rather than being resolved for want of data)."""

    conditions: dict[Key, Condition] = field(default_factory=dict)
    unchecked: set[str] = field(default_factory=set)

    def add(self, condition: Condition) -> None:
        self.conditions[condition.key] = condition


@dataclass(frozen=True)
class DayStats:
    pages: int
    rejected: int

    @property
    def reject_rate(self) -> float | None:
        return self.rejected / self.pages if self.pages else None


def local_day_start(now: datetime, zone_name: str = DEFAULT_ZONE) -> datetime:
    """Midnight of ``now``'s day in the zone ``zone_name`` (the fleet's ``time_zone``), in UTC.

    >>> local_day_start(datetime(2026, 3, 31, 23, tzinfo=UTC), "Europe/Berlin")  # 01:00 on 1 April there
    datetime.datetime(2026, 3, 31, 22, 0, tzinfo=datetime.timezone.utc)
    """
    return datetime.combine(periods.today(now, zone_name), datetime.min.time(), zone(zone_name)).astimezone(UTC)


def local_moment(moment: datetime, zone_name: str = DEFAULT_ZONE) -> str:
    """``HH:MM DD/MM`` and the zone's abbreviation, in the zone ``zone_name``, for a message.

    >>> local_moment(datetime(2026, 3, 31, 22, 30, tzinfo=UTC), "Europe/Berlin")
    '00:30 01/04 CEST'
    """
    return moment.astimezone(zone(zone_name)).strftime("%H:%M %d/%m %Z")


def pages_today(session: Session, now: datetime, device_ids: list[str] | None = None,
                zone_name: str = DEFAULT_ZONE) -> dict[str, DayStats]:
    """Pages captured per device since midnight (in the zone ``zone_name``), and how many the
    quality check rejected."""
    verdict = Page.__table__.c.quality["ok"].as_boolean()
    query = (
        select(Page.device_id, func.count(), func.sum(case((verdict.is_(False), 1), else_=0)))
        .where(Page.captured_at >= local_day_start(now, zone_name), Page.captured_at <= now)
        .group_by(Page.device_id)
    )
    if device_ids is not None:
        query = query.where(Page.device_id.in_(device_ids))
    return {device: DayStats(int(n), int(bad or 0)) for device, n, bad in session.execute(query)}


def offline_since(device: Device) -> datetime:
    """When the device was last known to be up: its offline status's time, else its last message."""
    if device.status == "offline" and device.status_at is not None:
        return device.status_at
    return device.last_seen


def faults_query(now: datetime) -> Select[str, str, datetime]:
    """The newest scanner fault of the last day per device and fault type (read through the
    events' (type, ts) index: the few faults, not every event ever stored)."""
    return (
        select(Event.device_id, Event.type, func.max(Event.ts))
        .where(Event.type.in_(list(SCANNER_FAULTS)), Event.ts >= now - timedelta(days=1))
        .group_by(Event.device_id, Event.type)
    )


def latest_faults(session: Session, now: datetime) -> dict[tuple[str, str], datetime]:
    """{(device, fault type): newest device time} for scanner faults of the last day."""
    return {(d, t): ts for d, t, ts in session.execute(faults_query(now))}


def scanner_state(device: Device, faults: dict[tuple[str, str], datetime]) -> str | None:
    """The telemetry's scanner state, unless a fault event came after that telemetry (a jam is
    reported at once; the next telemetry may be a minute away)."""
    state = device.scanner_state
    newest: datetime | None = None
    for fault, fault_state in SCANNER_FAULTS.items():
        at = faults.get((device.id, fault))
        if at is None:
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        after_report = device.last_telemetry_at is None or at > device.last_telemetry_at
        if after_report and (newest is None or at > newest):
            state, newest = fault_state, at
    return state


def _backlog(data: dict[str, Any] | None) -> int | None:
    outbox = (data or {}).get("outbox")
    if not isinstance(outbox, dict):
        return None
    return int(outbox.get("events", 0)) + int(outbox.get("files", 0))


def _backlog_before(session: Session, device: Device, before: datetime) -> int | None:
    """The backlog in the newest telemetry at or before ``before``, else in the oldest one."""
    base = select(TelemetrySample.data).where(TelemetrySample.device_id == device.id)
    data = session.scalar(base.where(TelemetrySample.ts <= before).order_by(TelemetrySample.ts.desc()).limit(1))
    if data is None:
        data = session.scalar(base.order_by(TelemetrySample.ts).limit(1))
    return _backlog(data)


def check_devices(session: Session, now: datetime, cfg: AlertsConfig, heartbeat_timeout_s: float,
                  open_keys: set[Key], findings: Findings, zone_name: str = DEFAULT_ZONE) -> None:
    # The columns the checks read, as rows (10,000 ORM objects cost more than the checks).
    columns = (Device.id, Device.unit_code, Device.status, Device.status_at, Device.last_seen, Device.scanner_state,
               Device.accepting_scans, Device.last_telemetry, Device.last_telemetry_at)
    # A revoked device is cut off on purpose: its silence is expected and its last telemetry is
    # stale, so it raises nothing (and its open alerts resolve on this pass).
    devices = [cast(Device, row) for row in session.execute(select(*columns).where(Device.revoked_at.is_(None)))]
    faults = latest_faults(session, now)
    today = pages_today(session, now, zone_name=zone_name)
    for device in devices:
        subject = f"device:{device.id}"
        common: dict[str, Any] = {"subject": subject, "device_id": device.id, "unit_code": device.unit_code}
        if not is_online(device, now, heartbeat_timeout_s):
            since = offline_since(device)
            gone = (now - since).total_seconds()
            if gone >= cfg.offline_after_s:
                # The message names the moment, not the duration: it stays the same while the
                # device stays away (the screen shows how long from the device's row).
                findings.add(Condition(
                    "offline", severity="error", value=gone, steady_value=True,
                    message_vi=f"Thiết bị {device.id} mất kết nối từ {local_moment(since, zone_name)}",
                    message_en=f"Device {device.id} offline since {local_moment(since, zone_name)}",
                    **common))
        state = scanner_state(device, faults)
        if state == "jammed":
            findings.add(Condition("scanner_jammed", severity="warning",
                                   message_vi=f"Máy quét của {device.id} bị kẹt giấy",
                                   message_en=f"Scanner of {device.id} is jammed", **common))
        elif state == "cover_open":
            findings.add(Condition("scanner_cover_open", severity="warning",
                                   message_vi=f"Máy quét của {device.id} đang mở nắp",
                                   message_en=f"Scanner cover of {device.id} is open", **common))
        telemetry = device.last_telemetry or {}
        free, total = telemetry.get("disk_free_bytes"), telemetry.get("disk_total_bytes")
        if isinstance(free, int) and isinstance(total, int) and total > 0:
            share = free / total
            if share < cfg.disk_min_free_fraction or device.accepting_scans is False:
                findings.add(Condition(
                    "disk_low", severity="error" if device.accepting_scans is False else "warning", value=share,
                    message_vi=f"Ổ đĩa của {device.id} sắp đầy: còn trống {share:.0%}",
                    message_en=f"Disk of {device.id} nearly full: {share:.0%} free", **common))
        backlog = _backlog(telemetry)
        if backlog is not None and backlog >= cfg.backlog_min_items and device.last_telemetry_at is not None:
            growing = ("outbox_backlog", subject) in open_keys  # stays open while still large
            if not growing:
                before = _backlog_before(session, device,
                                         device.last_telemetry_at - timedelta(seconds=cfg.backlog_window_s))
                growing = before is not None and backlog > before
            if growing:
                findings.add(Condition(
                    "outbox_backlog", severity="warning", value=float(backlog),
                    message_vi=f"Hàng đợi gửi của {device.id} đang tăng: {backlog} mục chưa gửi",
                    message_en=f"Outbox backlog of {device.id} growing: {backlog} items waiting", **common))
        stats = today.get(device.id)
        rate = stats.reject_rate if stats is not None else None
        if stats is not None and rate is not None and stats.pages >= cfg.reject_min_pages \
                and rate > cfg.reject_rate_max:
            findings.add(Condition(
                "reject_rate", severity="warning", value=rate,
                message_vi=f"{device.id}: {rate:.0%} trang hôm nay bị loại vì chất lượng "
                           f"({stats.rejected}/{stats.pages})",
                message_en=f"{device.id}: {rate:.0%} of today's pages rejected for quality "
                           f"({stats.rejected}/{stats.pages})", **common))


def check_units(session: Session, now: datetime, cfg: AlertsConfig, findings: Findings,
                zone_name: str = DEFAULT_ZONE) -> None:
    """Units whose rate this month (in the zone ``zone_name``) is under their target while the
    month (the deadline) runs."""
    from fleet.progress.rates import progress

    month = periods.of(now, zone_name)
    lo, hi = periods.utc_bounds(month, month, zone_name)
    elapsed = (now - lo) / (hi - lo)
    if elapsed < cfg.pace_min_elapsed:
        return
    days_left = max(0, (hi - now).days)
    for unit in progress(session, month, month, zone_name=zone_name).units.values():
        rate = unit.own.rate
        if rate is None or rate + 1e-12 >= unit.target:
            continue
        findings.add(Condition(
            "behind_pace", subject=f"unit:{unit.code}", unit_code=unit.code, severity="warning", value=rate,
            message_vi=f"{unit.name} ({unit.code}) số hóa {rate:.0%} trong tháng {month}, chỉ tiêu {unit.target:.0%}; "
                       f"còn {days_left} ngày",
            message_en=f"{unit.name} ({unit.code}) digitized {rate:.0%} in {month}, target {unit.target:.0%}; "
                       f"{days_left} days left"))


FAILING_ATTEMPTS = 3
"""A delivery still being retried counts as failing from its third failed attempt (one timeout
is a hiccup; three in a row, backing off, is a target in trouble)."""


def check_deliveries(session: Session, now: datetime, delivery: DeliveryConfig, findings: Findings,
                     zone_name: str = DEFAULT_ZONE) -> None:
    """Per delivery target: deliveries failed for good or failing again and again (the target
    refuses or is away), and a backlog that is large or old (it does not drain)."""
    names = [t.name for t in delivery.targets]
    if not names:
        return
    counts = outbox.backlog(session, names)
    failing = dict(session.execute(
        select(Delivery.target, func.count()).where(
            Delivery.target.in_(names),
            (Delivery.state == "failed")
            | (Delivery.state.in_(WAITING) & (Delivery.attempts >= FAILING_ATTEMPTS)
               & Delivery.last_error.is_not(None)))
        .group_by(Delivery.target)).all())
    for name in names:
        subject = f"target:{name}"
        bad = int(failing.get(name, 0))
        if bad:
            reason = session.scalar(select(Delivery.last_error)
                                    .where(Delivery.target == name, Delivery.last_error.is_not(None))
                                    .order_by(Delivery.updated_at.desc()).limit(1))
            findings.add(Condition(
                "delivery_failed", subject=subject, severity="error", value=float(bad),
                message_vi=f"Chuyển giao tới {name}: {bad} tệp lỗi hoặc gửi mãi không được ({reason})",
                message_en=f"Delivery to {name}: {bad} documents failed or failing ({reason})"))
        backlog = counts[name]
        oldest = backlog.oldest_waiting
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        if oldest is not None and (backlog.backlog >= delivery.backlog_alert or age >= delivery.backlog_age_alert_s):
            # Names the oldest's moment, not its age, and keeps the opening count: an alert that
            # merely persists rewrites nothing.
            local = local_moment(oldest, zone_name)
            findings.add(Condition(
                "delivery_backlog", subject=subject, severity="warning", value=float(backlog.backlog),
                steady_value=True,
                message_vi=f"Chuyển giao tới {name} tồn đọng: tệp chờ lâu nhất từ {local}",
                message_en=f"Delivery backlog to {name}: oldest document waiting since {local}"))


def current(session: Session, now: datetime, cfg: AlertsConfig, heartbeat_timeout_s: float,
            open_keys: set[Key], delivery: DeliveryConfig | None = None, zone_name: str = DEFAULT_ZONE) -> Findings:
    """Every condition that holds at ``now``; days, months and moments in the zone ``zone_name``
    (the fleet's ``time_zone``)."""
    findings = Findings()
    check_devices(session, now, cfg, heartbeat_timeout_s, open_keys, findings, zone_name)
    if delivery is not None:
        check_deliveries(session, now, delivery, findings, zone_name)
    try:
        check_units(session, now, cfg, findings, zone_name)
    except FleetError as exc:
        log.warning("unit pace not checked (%s)", type(exc).__name__)
        findings.unchecked.add("behind_pace")
    return findings
