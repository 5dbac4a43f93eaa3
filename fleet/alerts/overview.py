"""What the fleet screen shows: every device with its unit, online state and since when,
version, scanner and camera, outbox, disk, pages today and reject rate, and its open alerts;
and one device with its event timeline, latest pages and alerts.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     devices(session, datetime(2026, 3, 20, tzinfo=UTC), 180.0)["devices"]
[]
"""

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleet.alerts.conditions import DayStats, latest_faults, offline_since, pages_today, scanner_state
from fleet.alerts.evaluator import alert_dict
from fleet.alerts.models import Alert
from fleet.display import DEFAULT_ZONE
from fleet.errors import NotFound
from fleet.models import Device, Event, Page, StoredFile, is_online
from fleet.progress import periods
from fleet.progress.models import Unit
from fleet.progress.rates import page_in_units

_EVENT_DETAIL = ("batch_id", "outcome", "pages", "reason", "message", "doctype", "previous", "agent_version",
                 "dossier_code", "source")


def _unit_names(session: Session, now: datetime, zone_name: str) -> dict[str, str]:
    today = periods.today(now, zone_name)
    query = select(Unit.code, Unit.name).where(Unit.valid_from <= today,
                                               or_(Unit.valid_to.is_(None), Unit.valid_to >= today))
    return {code: name for code, name in session.execute(query)}


def _row(device: Device, now: datetime, heartbeat_timeout_s: float, faults: dict[tuple[str, str], datetime],
         stats: DayStats | None, names: dict[str, str], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    revoked = device.revoked_at is not None
    online = not revoked and is_online(device, now, heartbeat_timeout_s)
    if device.revoked_at is not None:
        since = device.revoked_at
    elif online:
        since = device.status_at if device.status == "online" and device.status_at else device.first_seen
    else:
        since = offline_since(device)
    telemetry = device.last_telemetry or {}
    camera = telemetry.get("camera")
    free, total = telemetry.get("disk_free_bytes"), telemetry.get("disk_total_bytes")
    return {
        "id": device.id, "unit": device.unit_code, "unit_name": names.get(device.unit_code or ""),
        "online": online, "revoked": revoked, "since": since.isoformat(), "last_seen": device.last_seen.isoformat(),
        "version": device.agent_version, "scanner_state": scanner_state(device, faults),
        "scanner_model": device.scanner_model,
        "camera_state": camera.get("state") if isinstance(camera, dict) else None,
        "outbox_events": device.outbox_events, "outbox_files": device.outbox_files,
        "outbox_bytes": device.outbox_bytes, "disk_free_bytes": free, "disk_total_bytes": total,
        "disk_free_share": free / total if isinstance(free, int) and isinstance(total, int) and total else None,
        "accepting_scans": device.accepting_scans,
        "pages_today": stats.pages if stats else 0, "rejected_today": stats.rejected if stats else 0,
        "reject_rate": stats.reject_rate if stats else None,
        "alerts": alerts,
    }


def _pending_alerts(session: Session, device_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """{device: its alerts not yet resolved (id, kind, status, severity), oldest first}: the
    columns only, not thousands of ORM objects."""
    query = (select(Alert.device_id, Alert.id, Alert.kind, Alert.status, Alert.severity)
             .where(Alert.status != "resolved", Alert.device_id.is_not(None)).order_by(Alert.opened_at))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for device, alert_id, kind, status, severity in session.execute(query):
        out.setdefault(device or "", []).append({"id": alert_id, "kind": kind, "status": status,
                                                  "severity": severity})
    return out


def _state(row: Any, now: datetime, heartbeat_timeout_s: float) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "online" if is_online(cast(Device, row), now, heartbeat_timeout_s) else "offline"


def devices(session: Session, now: datetime, heartbeat_timeout_s: float, *, unit: str | None = None,
            online: bool | None = None, q: str | None = None, limit: int | None = None,
            units: Collection[str] | None = None, zone_name: str = DEFAULT_ZONE) -> dict[str, Any]:
    """The devices (optionally of one unit, or of ``units``, online/offline only, id or unit
    containing ``q``): those with open alerts first, then offline ones, then online ones,
    revoked ones last, then by id; at most
    ``limit`` rows, with the counts over all that matched (a province has thousands: the screen
    shows the first). Ordering and counts read three columns of every device; only the rows
    shown are loaded whole. "Today" is the day in the zone ``zone_name`` (the fleet's ``time_zone``)."""
    where: list[Any] = []
    if unit is not None:
        where.append(Device.unit_code == unit)
    if units is not None:
        where.append(Device.unit_code.in_(sorted(units)))
    if q:
        pattern = f"%{q.replace('%', '').replace('_', '')}%"
        where.append(or_(Device.id.ilike(pattern), Device.unit_code.ilike(pattern)))
    alerts = _pending_alerts(session)
    # A row carries the columns is_online reads. A revoked device is neither online nor offline
    # (it is expected to be silent): it comes last and has its own count.
    found = [(row.id, _state(row, now, heartbeat_timeout_s))
             for row in session.execute(select(Device.id, Device.status, Device.last_seen, Device.revoked_at)
                                        .where(*where))]
    if online is not None:
        found = [(d, state) for d, state in found if state == ("online" if online else "offline")]
    order = {"offline": 0, "online": 1, "revoked": 2}
    found.sort(key=lambda pair: (pair[0] not in alerts, order[pair[1]], pair[0]))
    shown = [d for d, _ in (found if limit is None else found[:limit])]
    whole = select(Device).where(Device.id.in_(shown)) if limit is not None else select(Device).where(*where)
    loaded = {d.id: d for d in session.scalars(whole)}
    faults = latest_faults(session, now)
    stats = pages_today(session, now, shown if limit is not None else None, zone_name)
    names = _unit_names(session, now, zone_name)
    return {
        "now": now.isoformat(), "total": len(found), "online": sum(s == "online" for _, s in found),
        "offline": sum(s == "offline" for _, s in found), "revoked": sum(s == "revoked" for _, s in found),
        "with_alerts": sum(d in alerts for d, _ in found),
        "devices": [_row(loaded[d], now, heartbeat_timeout_s, faults, stats.get(d), names, alerts.get(d, []))
                    for d in shown],
    }


def device(session: Session, device_id: str, now: datetime, heartbeat_timeout_s: float, *,
           events: int = 50, pages: int = 24, units: Collection[str] | None = None,
           zone_name: str = DEFAULT_ZONE) -> dict[str, Any]:
    """One device: its row, newest events (a timeline), newest pages and its alerts.

    ``units``: the viewer's units (None: all); only pages that came in under one of them are
    listed, so a device moved here does not show the pages it took for its previous unit."""
    found = session.get(Device, device_id)
    if found is None:
        raise NotFound(f"no device {device_id}")
    faults = {k: v for k, v in latest_faults(session, now).items() if k[0] == device_id}
    row = _row(found, now, heartbeat_timeout_s, faults,
               pages_today(session, now, [device_id], zone_name).get(device_id),
               _unit_names(session, now, zone_name), _pending_alerts(session, device_id).get(device_id, []))
    timeline = []
    for event in session.scalars(select(Event).where(Event.device_id == device_id)
                                 .order_by(Event.ts.desc(), Event.id).limit(events)):
        payload = event.payload if isinstance(event.payload, dict) else {}
        detail = {k: payload[k] for k in _EVENT_DETAIL if payload.get(k) is not None}
        if event.type == "page_captured" and isinstance(payload.get("page"), dict):
            detail = {k: payload["page"].get(k) for k in ("sequence", "doctype", "source")}
        timeline.append({"id": event.id, "type": event.type, "severity": event.severity,
                         "ts": event.ts.isoformat(), "detail": detail})
    latest = []
    query = (select(Page, StoredFile.sha256).outerjoin(StoredFile, StoredFile.sha256 == Page.sha256)
             .where(Page.device_id == device_id).order_by(Page.captured_at.desc(), Page.page_id).limit(pages))
    if units is not None:
        query = query.where(page_in_units(units))
    for page, held in session.execute(query):
        quality = page.quality or {}
        latest.append({
            "page_id": page.page_id, "captured_at": page.captured_at.isoformat(), "doctype": page.doctype,
            "confidence": page.confidence, "dossier_code": page.dossier_code, "dropped": page.dropped,
            "verdict": None if page.quality is None else ("ok" if quality.get("ok") else "rejected"),
            "issues": list(quality.get("issues") or []), "file_available": held is not None,
            "file_url": f"/api/v1/pages/{page.page_id}/file",
        })
    history = session.scalars(select(Alert).where(Alert.device_id == device_id)
                              .order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(20))
    return {"device": row, "events": timeline, "pages": latest, "alerts": [alert_dict(a) for a in history],
            "now": now.astimezone(UTC).isoformat()}
