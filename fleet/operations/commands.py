"""Commands as the fleet keeps them: queued with a deadline (published by
:class:`fleet.operations.service.Operations`), their states as the devices acknowledge them.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from datetime import datetime, UTC
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> with session_factory(engine).begin() as session:
...     queued = queue_command(session, "kiosk-a", "reboot", {"force": True}, 60, now)
...     listed = recent_commands(session, None, state="queued", rollout_id=None, limit=10)
>>> queued.state, listed["states"], [c.name for c in listed["commands"]]
('queued', {'queued': 1}, ['reboot'])
>>> with session_factory(engine).begin() as session:
...     queue_command(session, "kiosk-a", "reboot", {"forse": True}, 60, now)
Traceback (most recent call last):
fleet.errors.ContractViolation: args do not fit the contract: forse
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import ContractViolation
from fleet.operations.models import CommandRow
from fleet.operations.schemas import CommandOut
from fleet.operations.service import new_command
from protocol.commands import parse_args
from protocol.messages import CommandName


def queue_command(session: Session, device_id: str, name: CommandName, args: Mapping[str, Any], timeout_s: float,
                  now: datetime) -> CommandOut:
    """Queue a command for the device; it waits for the device until ``timeout_s`` from now.
    :class:`ContractViolation` (nothing queued) when ``args`` do not fit the command's model."""
    try:
        parse_args(name, dict(args))
    except ValidationError as exc:
        raise ContractViolation("args", exc.errors(include_input=False)) from None
    row = new_command(session, device_id, name, args, now + timedelta(seconds=timeout_s), now)
    session.flush()
    return CommandOut.of(row)


def device_commands(session: Session, device_id: str, limit: int = 200) -> list[CommandOut]:
    """The device's latest commands, newest first."""
    rows = session.scalars(select(CommandRow).where(CommandRow.device_id == device_id)
                           .order_by(CommandRow.created_at.desc()).limit(limit))
    return [CommandOut.of(r) for r in rows]


def recent_commands(session: Session, devices: set[str] | None, *, state: str | None, rollout_id: str | None,
                    limit: int) -> dict[str, Any]:
    """The latest commands to ``devices`` (None: every device), newest first, with counts by state."""
    query = select(CommandRow)
    counts = select(CommandRow.state, func.count()).group_by(CommandRow.state)
    if devices is not None:
        query = query.where(CommandRow.device_id.in_(sorted(devices)))
        counts = counts.where(CommandRow.device_id.in_(sorted(devices)))
    if state is not None:
        query = query.where(CommandRow.state == state)
    if rollout_id is not None:
        query = query.where(CommandRow.rollout_id == rollout_id)
        counts = counts.where(CommandRow.rollout_id == rollout_id)
    rows = session.scalars(query.order_by(CommandRow.created_at.desc()).limit(limit))
    return {"states": {s: n for s, n in session.execute(counts)}, "commands": [CommandOut.of(r) for r in rows]}
