"""What each device is told about its unit's operators: the retained ``operators`` message
(:class:`protocol.messages.OperatorList`), the whole list of the active operators of the unit
the device belongs to, hashes only. The operations driver publishes a device's list when it
differs from what it last sent (:meth:`fleet.operations.service.Operations.tick`).

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     operator_lists(session, ["kiosk-1"])
{}
"""

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import Device
from fleet.operators.models import CounterOperator
from protocol.messages import OperatorEntry, OperatorList


def operator_lists(session: Session, device_ids: Iterable[str] | None = None) -> dict[str, OperatorList]:
    """Device id -> its unit's operator list, for the devices that have a unit (all, or ``device_ids``)."""
    query = select(Device.id, Device.unit_code).where(Device.unit_code.is_not(None))
    if device_ids is not None:
        query = query.where(Device.id.in_(list(device_ids)))
    devices = {d: u for d, u in session.execute(query) if u is not None}
    by_unit: dict[str, list[CounterOperator]] = {}
    version: dict[str, int] = {}
    for row in session.scalars(select(CounterOperator).where(CounterOperator.unit_code.in_(set(devices.values())))
                               .order_by(CounterOperator.id)):
        stamp = int(row.updated_at.timestamp() * 1000)
        version[row.unit_code] = max(version.get(row.unit_code, 0), stamp)
        if row.active:
            by_unit.setdefault(row.unit_code, []).append(row)
    return {
        device: OperatorList(
            device_id=device, version=version.get(unit, 0),
            operators=[OperatorEntry(id=o.id, kind="postal_staff" if o.kind == "postal_staff" else "unit_staff",
                                     pin_hash=o.pin_hash, card_hash=o.card_hash) for o in by_unit.get(unit, [])])
        for device, unit in devices.items()
    }
