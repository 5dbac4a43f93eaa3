"""``/api/v1/audit``: the audit log, for admins. A unit admin sees the entries about their
units and those of their units' users."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, or_, select

from fleet.api.deps import MAX_ROW_ID, SessionDep
from fleet.auth.deps import AdminUser
from fleet.auth.models import AuditEntry, User
from fleet.auth.ratelimit import LOGIN
from fleet.auth.scope import visible_units

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str | None
    actor_kind: str
    action: str
    target: str | None
    unit_code: str | None
    outcome: str
    detail: str | None
    client_ip: str | None


@router.get("")
def list_audit(
    session: SessionDep,
    admin: AdminUser,
    since: Annotated[datetime | None, Query(description="At or after this time")] = None,
    until: Annotated[datetime | None, Query(description="Before this time")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="Only this user or device")] = None,
    action: Annotated[str | None, Query(max_length=128,
                                        description="Only this action, or actions starting with it when it ends in *")]
    = None,
    outcome: Annotated[str | None, Query(max_length=32, description="Only this outcome (ok, failed, 401, 403...)")]
    = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID,
                                           description="Next page: the id of the last entry received")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first")] = 100,
) -> list[AuditOut]:
    """Audit entries, newest first. A unit admin sees the entries about their units and those of
    their units' users. Page with ``before_id``."""
    query = select(AuditEntry)
    if not admin.is_province_admin:
        visible = sorted(visible_units(session, admin) or frozenset())
        # By actor kind and name (a user's name is unique and never changes): a device whose id
        # happens to be one of these names is not one of these users.
        names = select(User.name).where(User.unit_code.in_(visible))
        query = query.where(or_(
            AuditEntry.unit_code.in_(visible),
            and_(AuditEntry.actor_kind == "user", AuditEntry.actor.in_(names)),
            and_(AuditEntry.actor_kind == "anonymous", AuditEntry.action == LOGIN, AuditEntry.actor.in_(names))))
    if since is not None:
        query = query.where(AuditEntry.at >= _aware(since))
    if until is not None:
        query = query.where(AuditEntry.at < _aware(until))
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action.startswith(action[:-1], autoescape=True) if action.endswith("*")
                            else AuditEntry.action == action)
    if outcome is not None:
        query = query.where(AuditEntry.outcome == outcome)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return [AuditOut.model_validate(e) for e in session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
