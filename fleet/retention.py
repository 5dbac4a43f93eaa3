"""Telemetry retention: thin old reports to one per device and hour, drop the oldest.

Every kiosk reports its health every minute by default: 10,000 kiosks add 14 million telemetry rows
a day, and nothing used to remove any. The fleet needs them at full detail only for a few days
(alerts look back half an hour; the device page shows the latest); the periodic report counts a
device's *hours* with at least one report (its availability). So a pass, every
``retention.interval_s``:

- keeps every report of the last ``retention.telemetry_full_days``;
- before that, keeps the earliest report of each device and hour and deletes the others, which
  leaves every availability figure exactly as it was (shown in the tests);
- deletes reports older than ``retention.telemetry_keep_days`` (unset: none).

It works device by device (the ``(device_id, ts)`` index serves every statement) in short
transactions, so the ingest is never held up for long, and remembers in ``maintenance_marks`` up
to where it has thinned, so a pass reads only what aged since the last one. A pass cut short
(a crash, a stop) is simply done again: each step is idempotent.

>>> from fleet.config import RetentionConfig
>>> RetentionConfig().telemetry_full_days, RetentionConfig().telemetry_keep_days
(7, 400)
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import RetentionConfig
from fleet.db import hour_bucket
from fleet.models import Device, MaintenanceMark, TelemetrySample

log = logging.getLogger(__name__)

THINNED_MARK = "telemetry_thinned_until"
DEVICES_PER_TRANSACTION = 50


@dataclass(frozen=True)
class RetentionPass:
    """What one pass removed."""

    thinned: int
    """Reports deleted because an earlier one of the same device and hour is kept."""
    dropped: int
    """Reports deleted for their age."""
    devices: int
    thinned_until: datetime | None
    """Every device's reports before this time are one per hour (None: nothing thinned yet)."""
    seconds: float


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def run_retention(sessions: sessionmaker[Session], config: RetentionConfig, now: datetime) -> RetentionPass:
    """One pass (see the module's docstring)."""
    began = time.monotonic()
    # A whole hour: an hour is thinned only once all of it is older than the full-detail window.
    cut = _floor_hour(now - timedelta(days=config.telemetry_full_days))
    drop_before = now - timedelta(days=config.telemetry_keep_days) if config.telemetry_keep_days else None
    with sessions() as session:
        mark = session.get(MaintenanceMark, THINNED_MARK)
        start = mark.at if mark is not None else None
        devices = list(session.scalars(select(Device.id).order_by(Device.id)))
    thin = start is None or start < cut
    thinned = dropped = 0
    for first in range(0, len(devices), DEVICES_PER_TRANSACTION):
        with sessions.begin() as session:
            hour = hour_bucket(TelemetrySample.ts, session.get_bind().dialect.name)
            for device_id in devices[first:first + DEVICES_PER_TRANSACTION]:
                mine = TelemetrySample.device_id == device_id
                if drop_before is not None:
                    dropped += _rowcount(session.execute(
                        delete(TelemetrySample).where(mine, TelemetrySample.ts < drop_before)
                        .execution_options(synchronize_session=False)))
                if thin:
                    window = [mine, TelemetrySample.ts < cut]
                    if start is not None:
                        window.append(TelemetrySample.ts >= start)
                    # Ids are time-ordered (UUIDv7): the smallest is the hour's earliest report.
                    keep = select(func.min(TelemetrySample.id)).where(*window).group_by(hour)
                    thinned += _rowcount(session.execute(
                        delete(TelemetrySample).where(*window, TelemetrySample.id.not_in(keep))
                        .execution_options(synchronize_session=False)))
    if thin:
        with sessions.begin() as session:
            row = session.get(MaintenanceMark, THINNED_MARK)
            if row is None:
                session.add(MaintenanceMark(name=THINNED_MARK, at=cut))
            elif row.at < cut:
                row.at = cut
    return RetentionPass(thinned, dropped, len(devices), cut if thin else start, time.monotonic() - began)


class RetentionRunner:
    """Runs :func:`run_retention` every ``interval_s`` from its own thread, or on demand
    (``run_once``). ``clock`` is the fleet's.

    >>> from fleet.db import make_engine, migrate, session_factory
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> done = RetentionRunner(RetentionConfig(), session_factory(engine)).run_once()
    >>> done.thinned, done.dropped, done.devices
    (0, 0, 0)
    """

    def __init__(self, config: RetentionConfig, sessions: sessionmaker[Session], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.sessions = sessions
        self.clock = clock
        self.last: RetentionPass | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                self.run_once()
            except Exception:  # a database hiccup: the next pass does it all again, say so loudly
                log.exception("telemetry retention pass failed")

    def run_once(self) -> RetentionPass:
        with self._lock:
            done = run_retention(self.sessions, self.config, self.clock())
        self.last = done
        log.info("telemetry retention: %d reports thinned, %d dropped for age, %d devices, %.1f s",
                 done.thinned, done.dropped, done.devices, done.seconds)
        return done

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
