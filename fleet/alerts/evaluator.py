"""The periodic evaluator: compares what holds now (:mod:`fleet.alerts.conditions`) with the
alerts not yet resolved, opens new ones, updates those that persist when what they say changed
(only those rows are written) and resolves those whose condition cleared; then sends each
opening and resolution to the webhook.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> when = datetime(2026, 3, 20, tzinfo=UTC)
>>> with AlertEvaluator(AlertsConfig(), session_factory(engine), clock=lambda: when) as evaluator:
...     evaluator.run_once()
[]
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet.alerts import conditions
from fleet.alerts.config import AlertsConfig
from fleet.alerts.models import Alert
from fleet.alerts.webhook import Webhook
from fleet.delivery.config import DeliveryConfig
from fleet.display import DEFAULT_ZONE
from fleet.errors import FleetError, NotFound
from fleet.leases import Lease, next_turn

log = logging.getLogger(__name__)


class AlertConflict(FleetError, ValueError):
    """The alert cannot change that way (e.g. acknowledging a resolved one)."""


def alert_dict(alert: Alert) -> dict[str, Any]:
    """An alert as JSON (the API's and the webhook's shape)."""
    return {
        "id": alert.id, "kind": alert.kind, "subject": alert.subject, "device_id": alert.device_id,
        "unit_code": alert.unit_code, "status": alert.status, "severity": alert.severity,
        "message_vi": alert.message_vi, "message_en": alert.message_en, "value": alert.value,
        "opened_at": alert.opened_at.isoformat(), "updated_at": alert.updated_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def open_key(kind: str, subject: str) -> str:
    return f"{kind}|{subject}"


def _changed(alert: Any, condition: conditions.Condition) -> dict[str, Any] | None:
    """What to write on a persisting alert, or None when what it says is unchanged (a steady
    fleet of thousands of offline devices must not rewrite thousands of rows every pass)."""
    value = alert.value if condition.steady_value else condition.value
    fresh = {"message_vi": condition.message_vi, "message_en": condition.message_en,
             "severity": condition.severity, "value": value}
    if tuple(fresh.values()) == (alert.message_vi, alert.message_en, alert.severity, alert.value):
        return None
    return fresh


def evaluate(session: Session, now: datetime, cfg: AlertsConfig, heartbeat_timeout_s: float,
             delivery: DeliveryConfig | None = None, zone_name: str = DEFAULT_ZONE) -> list[dict[str, Any]]:
    """One evaluation inside the caller's transaction. Returns the transitions (``event``
    ``opened`` or ``resolved`` with the alert) for the webhook. The alerts not yet resolved are
    read as columns (there may be thousands); only those that change are written. Days, months
    and the moments in messages are the zone ``zone_name``'s (the fleet's ``time_zone``)."""
    columns = (Alert.id, Alert.kind, Alert.subject, Alert.message_vi, Alert.message_en, Alert.severity, Alert.value)
    pending = {(a.kind, a.subject): a for a in session.execute(select(*columns).where(Alert.status != "resolved"))}
    findings = conditions.current(session, now, cfg, heartbeat_timeout_s, set(pending), delivery, zone_name)
    resolved: list[int] = []
    for key, alert in pending.items():
        condition = findings.conditions.get(key)
        if condition is not None:
            fresh = _changed(alert, condition)
            if fresh is not None:
                session.execute(update(Alert).where(Alert.id == alert.id).values(**fresh, updated_at=now))
        elif alert.kind not in findings.unchecked:
            resolved.append(alert.id)
    changed: list[tuple[str, Alert]] = []
    for start in range(0, len(resolved), 500):
        ids = resolved[start:start + 500]
        session.execute(update(Alert).where(Alert.id.in_(ids))
                        .values(status="resolved", resolved_at=now, updated_at=now, open_key=None))
        changed += [("resolved", a) for a in session.scalars(select(Alert).where(Alert.id.in_(ids))
                                                                .execution_options(populate_existing=True))]
    for key, condition in findings.conditions.items():
        if key in pending:
            continue
        opened = Alert(kind=condition.kind, subject=condition.subject, device_id=condition.device_id,
                       unit_code=condition.unit_code, status="open", open_key=open_key(*key),
                       severity=condition.severity, message_vi=condition.message_vi,
                       message_en=condition.message_en, value=condition.value, opened_at=now, updated_at=now)
        session.add(opened)
        changed.append(("opened", opened))
    session.flush()
    return [{"event": event, "alert": alert_dict(alert)} for event, alert in changed]


def acknowledge(session: Session, alert_id: int, by: str | None, now: datetime) -> Alert:
    """Mark an open alert seen (acknowledging twice is harmless); it stays until it clears."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    if alert.status == "resolved":
        raise AlertConflict(f"alert {alert_id} is already resolved")
    if alert.status == "open":
        alert.status, alert.acknowledged_at, alert.acknowledged_by, alert.updated_at = "acknowledged", now, by, now
    return alert


class AlertEvaluator:
    """Runs :func:`evaluate` every ``interval_s`` from its own thread (``start``), or once on
    demand (``run_once``, what tests call after moving their clock). ``clock`` is the fleet's."""

    def __init__(self, config: AlertsConfig, sessions: sessionmaker[Session], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 heartbeat_timeout_s: float = 180.0, delivery: DeliveryConfig | None = None,
                 time_zone: str = DEFAULT_ZONE) -> None:
        self.config = config
        self.time_zone = time_zone
        self.delivery = delivery
        self.sessions = sessions
        self.clock = clock
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.webhook: Webhook | None = None
        if config.webhook_url:
            self.webhook = Webhook(config.webhook_url, timeout_s=config.webhook_timeout_s,
                                   retries=config.webhook_retries, backoff_s=config.webhook_backoff_s)
        self.runs = 0
        self._lock = threading.Lock()  # one evaluation at a time (thread and on demand)
        self._ran = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None
        """With several fleet nodes: the thread evaluates only while this node holds it."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts-evaluator", daemon=True)
        self._thread.start()
        log.info("alert evaluator every %.0f s", self.config.interval_s)

    def _run(self) -> None:
        while next_turn(self.lease, self._stop, self.config.interval_s):
            try:
                self.run_once()
            except Exception:  # a database hiccup: try again next interval, say so loudly
                log.exception("alert evaluation failed")

    def run_once(self) -> list[dict[str, Any]]:
        """Evaluate now; returns the transitions (also sent to the webhook)."""
        with self._lock:
            try:
                with self.sessions.begin() as session:
                    transitions = evaluate(session, self.clock(), self.config, self.heartbeat_timeout_s,
                                           self.delivery, self.time_zone)
            except IntegrityError:
                # Another evaluator opened the same alert first: its row stands, ours is dropped.
                log.info("alert already opened elsewhere; evaluating again next time")
                transitions = []
        for transition in transitions:
            alert = transition["alert"]
            log.info("alert %s %s (%s)", alert["kind"], transition["event"], alert["subject"])
            if self.webhook is not None:
                self.webhook.send(transition)
        with self._ran:
            self.runs += 1
            self._ran.notify_all()
        return transitions

    def wait_for_runs(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` evaluations have completed (tests; no sleeps)."""
        with self._ran:
            return self._ran.wait_for(lambda: self.runs >= count, timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self.webhook is not None:
            self.webhook.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
