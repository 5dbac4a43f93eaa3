"""``/api/v1/deliveries``: the delivery outbox per target, the deliveries of a state (failed ones
with their reason), and an admin's retry or cancel of one (audited by the guard like every
write). The work is :mod:`fleet.delivery.outbox`'s; the worker runs in the fleet's services."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.deps import Offset, RowId, SessionDep, StateDep
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import require_unit, visible_units
from fleet.delivery import outbox
from fleet.delivery.models import Delivery
from fleet.delivery.schemas import DeliveryOut, TargetSummaryOut
from fleet.dossiers.models import DossierDocument
from fleet.errors import NotFound

router = APIRouter(prefix="/deliveries", tags=["deliveries"])

State = Literal["queued", "sending", "delivered", "acknowledged", "failed", "cancelled", "waiting"]


@router.get("/summary")
def summary(state: StateDep, session: SessionDep, _: CurrentUser) -> list[TargetSummaryOut]:
    """Each target's deliveries by state and its backlog (the whole province's: counts only)."""
    configured = {t.name: t.type for t in state.config.delivery.targets}
    counts = outbox.backlog(session, configured)
    return [TargetSummaryOut(name=name, type=configured.get(name, "-"), configured=name in configured,
                             by_state=b.by_state, backlog=b.backlog, oldest_waiting=b.oldest_waiting)
            for name, b in sorted(counts.items())]


def _out(row: Delivery, document: DossierDocument) -> DeliveryOut:
    return DeliveryOut(id=row.id, target=row.target, dossier_code=row.dossier_code, document=document.name,
                       kind=document.kind, unit_code=row.unit_code, state=row.state, attempts=row.attempts,
                       last_error=row.last_error, next_attempt_at=row.next_attempt_at, receipt=row.receipt,
                       created_at=row.created_at, updated_at=row.updated_at, delivered_at=row.delivered_at,
                       acknowledged_at=row.acknowledged_at)


@router.get("")
def list_deliveries(
    session: SessionDep,
    user: CurrentUser,
    state: Annotated[State | None, Query(description="One state, or waiting (queued, sending, delivered)")] = None,
    target: Annotated[str | None, Query(description="Only this target's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, most recently changed first")] = 100,
    offset: Offset = 0,
) -> list[DeliveryOut]:
    """Deliveries of the units you may see, most recently changed first."""
    query = select(Delivery, DossierDocument).join(DossierDocument, DossierDocument.id == Delivery.document_id)
    if state == "waiting":
        query = query.where(Delivery.state.in_(("queued", "sending", "delivered")))
    elif state is not None:
        query = query.where(Delivery.state == state)
    if target is not None:
        query = query.where(Delivery.target == target)
    visible = visible_units(session, user)
    if visible is not None:
        query = query.where(Delivery.unit_code.in_(sorted(visible)))
    query = query.order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(limit).offset(offset)
    return [_out(row, doc) for row, doc in session.execute(query)]


def _visible(session: Session, user: Principal, delivery_id: int) -> None:
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise HTTPException(404, "no such delivery")
    require_unit(session, user, row.unit_code, detail="no such delivery")


def _change(state: StateDep, session: Session, user: Principal, delivery_id: int,
            action: Literal["retry", "cancel"]) -> DeliveryOut:
    _visible(session, user, delivery_id)
    try:
        if action == "retry":
            row = outbox.retry(session, delivery_id, state.now())
        else:
            row = outbox.cancel(session, delivery_id, state.now())
    except NotFound:
        raise HTTPException(404, "no such delivery") from None
    except outbox.DeliveryConflict as exc:
        raise HTTPException(409, str(exc)) from None
    document = session.get(DossierDocument, row.document_id)
    assert document is not None  # the foreign key
    out = _out(row, document)
    session.commit()
    if action == "retry":
        state.services.wake_delivery()
    return out


@router.post("/{delivery_id}/retry", responses={404: {"description": "No such delivery"},
                                                409: {"description": "Not failed or cancelled"}})
def retry_delivery(delivery_id: RowId, state: StateDep, session: SessionDep, user: AdminUser) -> DeliveryOut:
    """Send a failed or cancelled delivery again now (same idempotency key: nothing is filed twice)."""
    return _change(state, session, user, delivery_id, "retry")


@router.post("/{delivery_id}/cancel", responses={404: {"description": "No such delivery"},
                                                 409: {"description": "Already acknowledged or cancelled"}})
def cancel_delivery(delivery_id: RowId, state: StateDep, session: SessionDep, user: AdminUser) -> DeliveryOut:
    """Stop a delivery not yet acknowledged (its document is not sent to that target again
    unless retried)."""
    return _change(state, session, user, delivery_id, "cancel")
