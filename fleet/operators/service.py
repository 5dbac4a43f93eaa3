"""Managing counter operators, within an admin's units: add one (its PIN hashed; a staff card
token made here and shown once), list, change the PIN, draw a new card, retire.

>>> from protocol.secrets import check_secret
>>> token = new_card_token()
>>> len(token), check_secret(token, hash_secret(token))
(32, True)
"""

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.auth.principal import Principal
from fleet.auth.scope import OutOfScope, in_scope, visible_units
from fleet.errors import FleetError
from fleet.operators.models import CounterOperator
from protocol.secrets import hash_secret, new_operator_id


class OperatorOutsideScope(FleetError, PermissionError):
    """The unit asked for is outside the admin's units."""


def new_card_token() -> str:
    """The token a staff card's QR holds: 128 random bits, hex (:data:`protocol.secrets.CARD_TOKEN`)."""
    return secrets.token_hex(16)


def card_svg(token: str, operator_id: str) -> str:
    """The staff card's QR code as inline SVG: the token alone, what a device reads."""
    import segno

    svg: str = segno.make_qr(token, error="m").svg_inline(scale=5, border=3, title=f"staff card {operator_id}")
    return svg


def add(session: Session, admin: Principal, *, unit_code: str, kind: str, label: str, pin: str | None,
        card: bool, now: datetime) -> tuple[CounterOperator, str | None]:
    """A new operator of ``unit_code``; returns it and its card token (None without a card)."""
    if not in_scope(visible_units(session, admin), unit_code):
        raise OperatorOutsideScope(f"unit {unit_code} is outside your units")
    token = new_card_token() if card else None
    row = CounterOperator(id=new_operator_id(), unit_code=unit_code, kind=kind, label=label,
                          pin_hash=hash_secret(pin) if pin else None,
                          card_hash=hash_secret(token) if token else None, active=True, created_at=now,
                          updated_at=now)
    session.add(row)
    session.flush()
    return row, token


def listed(session: Session, admin: Principal, unit_code: str | None = None) -> list[CounterOperator]:
    """The operators of the admin's units (of ``unit_code`` only, when given), by unit and label."""
    visible = visible_units(session, admin)
    if unit_code is not None and not in_scope(visible, unit_code):
        raise OperatorOutsideScope(f"unit {unit_code} is outside your units")
    query = select(CounterOperator).order_by(CounterOperator.unit_code, CounterOperator.label)
    if unit_code is not None:
        query = query.where(CounterOperator.unit_code == unit_code)
    elif visible is not None:
        query = query.where(CounterOperator.unit_code.in_(sorted(visible)))
    return list(session.scalars(query))


def managed(session: Session, admin: Principal, operator_id: str) -> CounterOperator:
    """One operator of the admin's units; another unit's answers 404 like a missing one."""
    row = session.get(CounterOperator, operator_id)
    if row is None:
        raise OutOfScope("no such operator")
    if not in_scope(visible_units(session, admin), row.unit_code):
        raise OutOfScope("no such operator", unit_code=row.unit_code)
    return row


def change(row: CounterOperator, *, pin: str | None, new_card: bool, active: bool | None, now: datetime
           ) -> tuple[list[str], str | None]:
    """Apply a change; returns what changed (for the audit, no secret in it) and a new card token."""
    changed: list[str] = []
    token = None
    if pin:
        row.pin_hash = hash_secret(pin)
        changed.append("pin")
    if new_card:
        token = new_card_token()
        row.card_hash = hash_secret(token)
        changed.append("card")
    if active is not None and active != row.active:
        row.active = active
        changed.append("active" if active else "retired")
    row.updated_at = now
    return changed, token
