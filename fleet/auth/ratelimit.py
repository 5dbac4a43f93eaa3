"""Login rate limit, counted from the audit log itself, so it survives restarts and holds across
several API workers sharing the database. Three counts, each over the window:

- failed logins for one name from one address, since that pair's last success;
- failed logins from one address, whatever the name (one address trying many names);
- failed logins for one name, whatever the address (many addresses trying one name).

Each attempt is first committed to the audit log as ``attempt`` and only then counted; a try
counts every failure and every attempt still in progress committed *before* its own (a lower id),
and is refused before its password is checked when that count is at the limit. Tries that could
count against each other commit in id order (SQLite writes one transaction at a time; on
PostgreSQL the attempt is written holding transaction locks on its address and its name, see
``serialize_attempts``), so of N simultaneous tries the k-th sees the k - 1 before it: exactly the
limit get to guess, never more and, with no earlier failures, never none. The row then becomes
``failed``, ``ok`` or ``rate_limited``.
"""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.orm import Session

from fleet.auth.config import AuthConfig
from fleet.auth.models import AuditEntry

LOGIN = "auth.login"
ATTEMPT = "attempt"
"""A login being checked: counted as a failure until it is known."""
COUNTED = (ATTEMPT, "failed")


def serialize_attempts(session: Session, name: str, ip: str | None) -> None:
    """On PostgreSQL, hold transaction locks on ``ip`` and ``name`` (always in that order, so two
    tries cannot wait on each other) until the attempt row is committed: attempts that count
    against each other get their ids in the order they commit. SQLite needs none."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in (f"sohoa:login:ip:{ip}", f"sohoa:login:name:{name[:128]}"):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def _failures(session: Session, where: Sequence[ColumnElement[bool]], since: datetime, limit: int,
              attempt_id: int | None) -> list[datetime]:
    counted = AuditEntry.outcome.in_(COUNTED) if attempt_id is None else or_(
        AuditEntry.outcome == "failed", and_(AuditEntry.outcome == ATTEMPT, AuditEntry.id < attempt_id))
    query = select(AuditEntry.at).where(AuditEntry.action == LOGIN, *where, counted, AuditEntry.at > since)
    return list(session.scalars(query.order_by(AuditEntry.at.desc()).limit(limit)))


def retry_after(session: Session, config: AuthConfig, name: str, ip: str | None, now: datetime, *,
                attempt_id: int | None = None) -> int | None:
    """Seconds until ``name`` may try again from ``ip``; None when it may now. ``attempt_id``:
    this try's own ``attempt`` row; only attempts committed before it are counted against it."""
    window_start = now - timedelta(seconds=config.login_window_s)
    by_name = AuditEntry.actor == name[:128]
    by_ip = AuditEntry.client_ip.is_(None) if ip is None else AuditEntry.client_ip == ip
    last_ok = session.scalar(select(func.max(AuditEntry.at)).where(
        AuditEntry.action == LOGIN, by_name, by_ip, AuditEntry.outcome == "ok"))
    pair_since = max(window_start, last_ok) if last_ok is not None else window_start
    waits: list[int] = []
    for where, since, limit in (([by_name, by_ip], pair_since, config.login_max_failures),
                                ([by_ip], window_start, config.login_max_failures_per_address),
                                ([by_name], window_start, config.login_max_failures_per_name)):
        failures = _failures(session, where, since, limit, attempt_id)
        if len(failures) >= limit:
            # The oldest of the last N failures leaves the window first.
            free_at = failures[-1] + timedelta(seconds=config.login_window_s)
            waits.append(max(1, math.ceil((free_at - now).total_seconds())))
    return max(waits) if waits else None
