"""Login rate limit, counted from the audit log itself, so it survives restarts and holds across
several API workers sharing the database. Three counts, each over the window:

- failed logins for one name from one address, since that pair's last success;
- failed logins from one address, whatever the name (one address trying many names);
- failed logins for one name, whatever the address (many addresses trying one name).

Atomic without a lock: each attempt is first committed to the audit log as ``attempt`` and only
then counted, so of N simultaneous tries the k-th to commit sees at least k - 1 others; a try
whose count is already at the limit is refused before its password is checked, and at most the
limit get to guess. The row then becomes ``failed``, ``ok`` or ``rate_limited``.
"""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from fleet.auth.config import AuthConfig
from fleet.auth.models import AuditEntry

LOGIN = "auth.login"
ATTEMPT = "attempt"
"""A login being checked: counted as a failure until it is known."""
COUNTED = (ATTEMPT, "failed")


def _failures(session: Session, where: Sequence[ColumnElement[bool]], since: datetime, limit: int,
              exclude_id: int | None) -> list[datetime]:
    query = select(AuditEntry.at).where(AuditEntry.action == LOGIN, *where, AuditEntry.outcome.in_(COUNTED),
                                        AuditEntry.at > since)
    if exclude_id is not None:
        query = query.where(AuditEntry.id != exclude_id)
    return list(session.scalars(query.order_by(AuditEntry.at.desc()).limit(limit)))


def retry_after(session: Session, config: AuthConfig, name: str, ip: str | None, now: datetime, *,
                attempt_id: int | None = None) -> int | None:
    """Seconds until ``name`` may try again from ``ip``; None when it may now. ``attempt_id``:
    this try's own ``attempt`` row, not counted against it."""
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
