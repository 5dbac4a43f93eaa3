"""Login rate limit, counted from the audit log itself: failed logins for one name from one
address since the later of (window start, that pair's last success). Survives restarts and
holds across several API workers sharing the database."""

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.auth.config import AuthConfig
from fleet.auth.models import AuditEntry

LOGIN = "auth.login"


def retry_after(session: Session, config: AuthConfig, name: str, ip: str | None, now: datetime) -> int | None:
    """Seconds until ``name`` may try again from ``ip``; None when it may now."""
    window_start = now - timedelta(seconds=config.login_window_s)
    pair = (AuditEntry.action == LOGIN, AuditEntry.actor == name[:128],
            AuditEntry.client_ip.is_(None) if ip is None else AuditEntry.client_ip == ip)
    last_ok = session.scalar(select(func.max(AuditEntry.at)).where(*pair, AuditEntry.outcome == "ok"))
    since = max(window_start, last_ok) if last_ok is not None else window_start
    failures = list(session.scalars(
        select(AuditEntry.at).where(*pair, AuditEntry.outcome == "failed", AuditEntry.at > since)
        .order_by(AuditEntry.at.desc()).limit(config.login_max_failures)
    ))
    if len(failures) < config.login_max_failures:
        return None
    # The oldest of the last N failures leaves the window first.
    free_at = failures[-1] + timedelta(seconds=config.login_window_s)
    return max(1, math.ceil((free_at - now).total_seconds()))
