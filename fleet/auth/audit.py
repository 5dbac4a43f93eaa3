"""The audit log: who did or tried what, when, from where.

Routes call :func:`record` for what they know best (a user created, a token revoked); the guard
(:mod:`fleet.auth.guard`) records on its own every write, every page-file download and every
refusal (401, 403, 404 outside the principal's scope). Never pass a secret: a detail names a token
by its id, never its value.
"""

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request
from sqlalchemy.orm import Session

from fleet.auth.models import AuditEntry
from fleet.auth.principal import Principal

log = logging.getLogger(__name__)

ActorKind = Literal["user", "device", "anonymous", "system"]  # system: the fleet itself, the CLI

PRINCIPAL_KEY = "principal"  # request.state.principal: the Principal resolved by the guard
DEVICE_KEY = "device_id"  # request.state.device_id: set by device authentication when it succeeds
AUDITED_KEY = "audited"  # request.state.audited: a route recorded this request itself


def _clip(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def request_actor(request: Request) -> tuple[str | None, ActorKind, str | None]:
    """(actor, actor kind, actor's unit) of a request: its user, else its device, else anonymous."""
    state: dict[str, Any] = request.scope.get("state", {})
    principal = state.get(PRINCIPAL_KEY)
    if isinstance(principal, Principal):
        return principal.name, "user", principal.unit_code
    device = state.get(DEVICE_KEY)
    if isinstance(device, str):
        return device, "device", None
    return None, "anonymous", None


def entry(
    *,
    at: datetime,
    action: str,
    actor: str | None,
    actor_kind: ActorKind,
    target: str | None = None,
    unit_code: str | None = None,
    outcome: str = "ok",
    detail: str | None = None,
    ip: str | None = None,
) -> AuditEntry:
    return AuditEntry(at=at, actor=_clip(actor, 128), actor_kind=actor_kind, action=action[:128],
                      target=_clip(target, 255), unit_code=_clip(unit_code, 64), outcome=outcome[:32],
                      detail=_clip(detail, 1000), client_ip=_clip(ip, 64))


def record(
    session: Session,
    request: Request,
    *,
    action: str,
    target: str | None = None,
    unit_code: str | None = None,
    outcome: str = "ok",
    detail: str | None = None,
    actor: str | None = None,
) -> None:
    """Add an audit entry to ``session``: it is written when the caller commits (with the change
    it describes, or alone before raising a refusal). ``actor`` defaults to the request's user or
    device; the client's address and the fleet's time are filled in.

    >>> # record(session, request, action="token.created", target="token 12", unit_code="01001")
    """
    who, kind, actor_unit = request_actor(request)
    if actor is not None:
        who = actor
    state = getattr(request.app.state, "fleet", None)
    now = state.now() if state is not None else datetime.now(UTC)
    session.add(entry(at=now, action=action, actor=who, actor_kind=kind, target=target,
                      unit_code=unit_code if unit_code is not None else actor_unit, outcome=outcome, detail=detail,
                      ip=client_ip(request)))
    request.scope.setdefault("state", {})[AUDITED_KEY] = True
