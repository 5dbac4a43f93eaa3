"""``/api/v1/alerts``: list and filter alerts, acknowledge one, evaluate now (with the
evaluator the fleet's services run, :class:`fleet.api.services.FleetServices`)."""

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Body, HTTPException, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.alerts.evaluator import AlertConflict, AlertEvaluator, acknowledge, alert_dict
from fleet.alerts.models import KINDS, Alert
from fleet.alerts.schemas import AcknowledgeIn, AlertCountsOut, AlertOut, TransitionOut
from fleet.api.deps import Offset, RowId, SessionDep, StateDep
from fleet.auth.deps import AdminUser, CurrentUser
from fleet.auth.principal import Principal
from fleet.auth.scope import in_scope, require_unit, require_unit_filter, subtree
from fleet.errors import NotFound

router = APIRouter(prefix="/alerts", tags=["alerts"])

Kind = Literal["offline", "scanner_jammed", "scanner_cover_open", "disk_low", "outbox_backlog", "reject_rate",
               "behind_pace", "delivery_failed", "delivery_backlog"]
if set(get_args(Kind)) != set(KINDS):
    raise ImportError("alert kinds of the API and of the table differ")


def evaluator_of(state: StateDep) -> AlertEvaluator:
    evaluator = state.services.alerts
    if evaluator is None:
        raise HTTPException(503, "the alert evaluator is not running (app not started)")
    return evaluator


def _scope(session: Session, user: Principal, unit: str | None, under: str | None) -> frozenset[str] | None:
    """The unit codes whose alerts the request may list (None: every alert, with a unit or not).
    403 for a ``unit`` or ``under`` outside the user's units."""
    visible = require_unit_filter(session, user, unit)
    require_unit_filter(session, user, under)
    if under is not None:
        below = subtree(session, under)
        return below if visible is None else below & visible
    return visible


@router.get("")
def list_alerts(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[Literal["open", "acknowledged", "resolved", "active"] | None,
                      Query(description="One status, or active (open or acknowledged)")] = None,
    kind: Annotated[Kind | None, Query(description="Only alerts of this kind")] = None,
    device_id: Annotated[str | None, Query(description="Only alerts about this device")] = None,
    unit: Annotated[str | None, Query(description="Only alerts of this unit code")] = None,
    under: Annotated[str | None, Query(description="Only alerts of this unit and every unit under it")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first")] = 100,
    offset: Offset = 0,
) -> list[AlertOut]:
    """Alerts of the units you may see, newest first."""
    scope = _scope(session, user, unit, under)
    query = select(Alert)
    if status == "active":
        query = query.where(Alert.status != "resolved")
    elif status is not None:
        query = query.where(Alert.status == status)
    if kind is not None:
        query = query.where(Alert.kind == kind)
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if unit is not None:
        query = query.where(Alert.unit_code == unit)
    if scope is not None:
        query = query.where(Alert.unit_code.in_(sorted(scope)))
    query = query.order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit).offset(offset)
    return [AlertOut.model_validate(alert_dict(a)) for a in session.scalars(query)]


@router.get("/counts")
def count_alerts(
    session: SessionDep,
    user: CurrentUser,
    under: Annotated[str | None, Query(description="Only alerts of this unit and every unit under it")] = None,
) -> AlertCountsOut:
    """Active (open or acknowledged) alerts counted by severity, kind and unit: what the progress
    dashboard marks its units with."""
    scope = _scope(session, user, None, under)
    query = (select(Alert.status, Alert.severity, Alert.kind, Alert.unit_code, func.count())
             .where(Alert.status != "resolved")
             .group_by(Alert.status, Alert.severity, Alert.kind, Alert.unit_code))
    if scope is not None:
        query = query.where(Alert.unit_code.in_(sorted(scope)))
    out = AlertCountsOut()
    for status, severity, kind, unit, n in session.execute(query):
        out.total += n
        out.by_status[status] = out.by_status.get(status, 0) + n
        out.by_severity[severity] = out.by_severity.get(severity, 0) + n
        out.by_kind[kind] = out.by_kind.get(kind, 0) + n
        if unit is not None:
            out.by_unit[unit] = out.by_unit.get(unit, 0) + n
    return out


@router.get("/{alert_id}")
def get_alert(alert_id: RowId, session: SessionDep, user: CurrentUser) -> AlertOut:
    """One alert (404 also for one outside your units)."""
    return AlertOut.model_validate(alert_dict(_visible_alert(session, user, alert_id)))


def _visible_alert(session: Session, user: Principal, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, "no such alert")
    require_unit(session, user, alert.unit_code, detail="no such alert")
    return alert


@router.post("/{alert_id}/acknowledge", responses={404: {"description": "No such alert"},
                                                   409: {"description": "Already resolved"}})
def acknowledge_alert(alert_id: RowId, state: StateDep, session: SessionDep, user: AdminUser,
                      body: Annotated[AcknowledgeIn | None, Body()] = None) -> AlertOut:
    """Mark an alert seen (an admin of its unit; viewers may not). It stays (acknowledged) until
    its condition clears. The logged-in user is recorded as who acknowledged it."""
    _visible_alert(session, user, alert_id)
    try:
        alert = acknowledge(session, alert_id, user.name, state.now())
    except NotFound:
        raise HTTPException(404, "no such alert") from None
    except AlertConflict as exc:
        raise HTTPException(409, str(exc)) from None
    out = AlertOut.model_validate(alert_dict(alert))
    session.commit()
    return out


@router.post("/evaluate")
def evaluate_now(state: StateDep, session: SessionDep, user: AdminUser) -> list[TransitionOut]:
    """Evaluate the alerts now rather than at the next interval; returns what opened or resolved
    (in your units)."""
    visible = _scope(session, user, None, None)
    return [TransitionOut.model_validate(t) for t in evaluator_of(state).run_once()
            if in_scope(visible, t["alert"]["unit_code"])]
