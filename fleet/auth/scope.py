"""Which units a principal may see: a province admin everything, anyone with a unit that unit
and every unit under it (over the tree's whole history, so data of a merged commune stays
visible to the district it belonged to).

Objects fetched by id outside the scope are answered 404 (their existence does not leak) and
audited; an explicit ``unit=`` filter outside it is answered 403.
"""

from typing import Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.auth.principal import Principal
from fleet.enroll.models import EnrollmentRow
from fleet.models import Device, Page
from fleet.progress.models import Unit


class OutOfScope(HTTPException):
    """A 404 for an object outside the principal's units; the guard audits it as a refusal."""

    def __init__(self, what: str = "not found", *, unit_code: str | None = None) -> None:
        super().__init__(404, what)
        self.unit_code = unit_code


def subtree(session: Session, root: str) -> frozenset[str]:
    """``root`` and every unit code under it, over every version of the tree."""
    children: dict[str, set[str]] = {}
    for code, parent in session.execute(select(Unit.code, Unit.parent_code)):
        if parent is not None:
            children.setdefault(parent, set()).add(code)
    seen = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return frozenset(seen)


def visible_units(session: Session, principal: Principal) -> frozenset[str] | None:
    """None: every unit (and data with no unit); else the codes the principal may see."""
    if principal.is_province_admin or (principal.role == "viewer" and principal.unit_code is None):
        return None
    if principal.unit_code is None:
        return frozenset()
    return subtree(session, principal.unit_code)


def in_scope(visible: frozenset[str] | None, unit_code: str | None) -> bool:
    return visible is None or (unit_code is not None and unit_code in visible)


def require_unit(session: Session, principal: Principal, unit_code: str | None, *, detail: str = "not found") -> None:
    """Raise :class:`OutOfScope` (404) when ``unit_code`` (an object's unit) is outside the scope.
    Give the ``detail`` the route answers for a missing object, so both read the same."""
    if not in_scope(visible_units(session, principal), unit_code):
        raise OutOfScope(detail, unit_code=unit_code)


def require_unit_filter(session: Session, principal: Principal, unit_code: str | None) -> frozenset[str] | None:
    """For a list's ``unit=`` filter: 403 when it names a unit outside the scope. Returns the
    visible units, to filter the list with."""
    visible = visible_units(session, principal)
    if unit_code is not None and not in_scope(visible, unit_code):
        raise HTTPException(403, "this unit is outside your units")
    return visible


def unit_clause(column: Any, visible: frozenset[str] | None) -> Any:
    """A WHERE clause keeping rows whose ``column`` is a visible unit (None: no clause needed)."""
    if visible is None:
        return None
    return column.in_(sorted(visible))


def visible_device(session: Session, principal: Principal, device_id: str) -> Device:
    """The device, or 404 when there is none or it is outside the principal's units (audited)."""
    device = session.get(Device, device_id)
    if device is None:
        raise HTTPException(404, "no such device")
    require_unit(session, principal, device.unit_code, detail="no such device")
    return device


def enrolled_device(session: Session, principal: Principal, device_id: str) -> Device | EnrollmentRow:
    """The device's row, or, for a device enrolled (accepted) that never connected, its
    enrollment; 404 when there is neither or it is outside the principal's units (audited)."""
    if session.get(Device, device_id) is not None:
        return visible_device(session, principal, device_id)
    enrollment = session.get(EnrollmentRow, device_id)
    if enrollment is None or enrollment.state != "accepted":
        raise HTTPException(404, "no such device")
    require_unit(session, principal, enrollment.unit_code, detail="no such device")
    return enrollment


def visible_devices(session: Session, principal: Principal) -> set[str] | None:
    """The ids of the devices the principal may see (None: every device)."""
    visible = visible_units(session, principal)
    if visible is None:
        return None
    return {d for d, u in session.execute(select(Device.id, Device.unit_code)) if in_scope(visible, u)}


def page_unit(session: Session, page: Page) -> str | None:
    """The unit ``page`` belongs to: the one it came in under (``pages.unit_code``, kept when its
    device moves), else, for a page from before that column or from a device without a unit then,
    its device's now (:func:`fleet.progress.rates.page_unit` in SQL)."""
    if page.unit_code is not None:
        return page.unit_code
    device = session.get(Device, page.device_id)
    return device.unit_code if device is not None else None
