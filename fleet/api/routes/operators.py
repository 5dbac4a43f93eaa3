"""``/api/v1/operators``: the counter operators of the admin's units (unit staff, postal staff).
PINs arrive in the body and are hashed at once; bodies are never echoed nor kept in the audit
(:func:`fleet.api.deps.secret_body`), and a staff card's token is answered once, at its
making. Every change is audited here, without secrets, and the unit's devices are sent their
new list (:mod:`fleet.operators.push`)."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fleet.api.deps import UNIT_PATTERN, SessionDep, StateDep, secret_body
from fleet.api.state import FleetState
from fleet.auth import audit
from fleet.auth.deps import AdminUser
from fleet.operators import service
from fleet.operators.models import CounterOperator

router = APIRouter(prefix="/operators", tags=["operators"])

PIN_PATTERN = r"^[0-9]{6,12}$"


class OperatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_code: str = Field(pattern=UNIT_PATTERN, description="The unit whose counters they work at")
    kind: Literal["unit_staff", "postal_staff"]
    label: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
                       description="What admins see: a staff number or initials (no ID number)")
    pin: SecretStr | None = Field(default=None, description="6-12 digits, typed at the counter")
    card: bool = Field(default=False, description="Make a staff card token (answered once)")


class OperatorPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: SecretStr | None = Field(default=None, description="A new PIN (6-12 digits)")
    new_card: bool = Field(default=False, description="Draw a new card token (the old card stops working)")
    active: bool | None = Field(default=None, description="False retires the operator")


class OperatorOut(BaseModel):
    id: str
    unit_code: str
    kind: str
    label: str
    has_pin: bool
    has_card: bool
    active: bool
    updated_at: datetime
    card_token: str | None = Field(default=None, description="Only in the answer that made the card")
    card_qr_svg: str | None = Field(default=None, description="The card's QR code (its token alone) as SVG, "
                                    "to print on the staff card; only in the answer that made the card")


def _out(row: CounterOperator, token: str | None = None) -> OperatorOut:
    return OperatorOut(id=row.id, unit_code=row.unit_code, kind=row.kind, label=row.label,
                       has_pin=row.pin_hash is not None, has_card=row.card_hash is not None, active=row.active,
                       updated_at=row.updated_at, card_token=token,
                       card_qr_svg=service.card_svg(token, row.id) if token else None)


def _push(state: FleetState) -> None:
    """The unit's devices get their new list (retained ``operators`` message) from the driver."""
    if state.services.operations is not None:
        state.services.operations.operators_changed()


def _pin(value: SecretStr | None) -> str | None:
    import re

    if value is None:
        return None
    pin = value.get_secret_value()
    if not re.fullmatch(PIN_PATTERN, pin):
        raise HTTPException(422, "a PIN is 6 to 12 digits")
    return pin


@router.post("", status_code=201, responses={403: {"description": "The unit is outside your units"}})
def add_operator(request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
                 body: Annotated[OperatorIn, secret_body(OperatorIn)]) -> OperatorOut:
    """Add an operator to a unit (with a PIN, a staff card, or both)."""
    pin = _pin(body.pin)
    if pin is None and not body.card:
        raise HTTPException(422, "an operator needs a PIN or a card")
    try:
        row, token = service.add(session, admin, unit_code=body.unit_code, kind=body.kind, label=body.label,
                                 pin=pin, card=body.card, now=state.now())
    except service.OperatorOutsideScope as exc:
        raise HTTPException(403, str(exc)) from None
    audit.record(session, request, action="operator.create", target=f"operator {row.id} ({row.kind})",
                 unit_code=row.unit_code, outcome="201")
    session.commit()
    _push(state)
    return _out(row, token)


@router.get("")
def list_operators(session: SessionDep, admin: AdminUser, unit: str | None = None) -> list[OperatorOut]:
    """The operators of your units (``unit=``: one unit's)."""
    try:
        return [_out(r) for r in service.listed(session, admin, unit)]
    except service.OperatorOutsideScope as exc:
        raise HTTPException(403, str(exc)) from None


@router.patch("/{operator_id}")
def change_operator(operator_id: str, request: Request, state: StateDep, session: SessionDep, admin: AdminUser,
                    body: Annotated[OperatorPatch, secret_body(OperatorPatch)]) -> OperatorOut:
    """A new PIN, a new card, retire or bring back."""
    row = service.managed(session, admin, operator_id)
    changed, token = service.change(row, pin=_pin(body.pin), new_card=body.new_card, active=body.active,
                                    now=state.now())
    audit.record(session, request, action="operator.update", target=f"operator {row.id}",
                 unit_code=row.unit_code, outcome="200", detail=", ".join(changed) or "no change")
    session.commit()
    _push(state)
    return _out(row, token)
