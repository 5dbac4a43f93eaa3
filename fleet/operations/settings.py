"""Remote settings as the fleet keeps them: a layer per level (the fleet's ``default``, a unit,
a device), merged into each device's desired settings (most specific wins, versions bumped on a
change, published by :class:`fleet.operations.service.Operations`), and compared with what the
device reports.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from datetime import datetime, UTC
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine).begin() as session:
...     out = put_layer(session, "device", "kiosk-a", {"scan": {"dpi": 400}}, datetime(2026, 1, 1, tzinfo=UTC))
...     view = device_settings(session, "kiosk-a", datetime(2026, 1, 1, tzinfo=UTC))
>>> out.version, out.devices_changed, view.desired, view.in_sync
(1, ['kiosk-a'], {'scan': {'dpi': 400}}, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.errors import ContractViolation
from fleet.models import Device
from fleet.operations.models import DeviceConfig, SettingsLayer
from fleet.operations.schemas import (
    DeviceSettingsOut,
    DeviceSettingsRow,
    DiffOut,
    LayerOut,
    Scope,
    SettingsListOut,
)
from fleet.operations.service import recompute_desired
from fleet.rollouts import settings_diff
from protocol.settings import parse_settings


def put_layer(session: Session, scope: Scope, key: str, settings: Mapping[str, Any], now: datetime) -> LayerOut:
    """Replace one level's settings and recompute the desired settings of the devices it reaches.
    :class:`ContractViolation` (nothing stored) when they do not fit the remote-settings schema."""
    try:
        parse_settings(dict(settings))
    except ValidationError as exc:
        raise ContractViolation("settings", exc.errors(include_input=False)) from None
    layer = session.get(SettingsLayer, (scope, key))
    if layer is None:
        layer = SettingsLayer(scope=scope, key=key, settings=dict(settings), version=1, updated_at=now)
        session.add(layer)
    else:
        layer.settings, layer.updated_at = dict(settings), now
        layer.version += 1
    session.flush()
    changed = recompute_desired(session, [key] if scope == "device" else None, now)
    return LayerOut(scope=scope, key=key, settings=layer.settings, version=layer.version, devices_changed=changed)


def get_layer(session: Session, scope: Scope, key: str) -> LayerOut | None:
    layer = session.get(SettingsLayer, (scope, key))
    if layer is None:
        return None
    return LayerOut(scope=scope, key=key, settings=layer.settings, version=layer.version)


def device_settings(session: Session, device_id: str, now: datetime) -> DeviceSettingsOut:
    """Desired vs reported for one device (its desired settings computed on first sight)."""
    row = session.get(DeviceConfig, device_id)
    if row is None:
        recompute_desired(session, [device_id], now)
        row = session.get(DeviceConfig, device_id)
        assert row is not None
    diff = settings_diff(row.desired, row.reported or {})
    return DeviceSettingsOut(
        device_id=device_id,
        desired=row.desired,
        desired_version=row.desired_version,
        published=row.published_version == row.desired_version,
        reported=row.reported,
        reported_version=row.reported_version,
        applied=row.applied,
        error=row.error,
        in_sync=bool(row.applied) and row.reported_version == row.desired_version and not diff,
        diff=[DiffOut(path=d.path, desired=d.desired, reported=d.reported) for d in diff],
    )


def settings_overview(session: Session, visible: set[str] | None, *, unit: str | None, differs: bool,
                      limit: int) -> SettingsListOut:
    """Every visible device's settings state (``visible``: device ids, None for all), those not
    in sync first; with ``differs`` only those."""
    units = {d: u for d, u in session.execute(select(Device.id, Device.unit_code))}
    rows = []
    for row in session.scalars(select(DeviceConfig).order_by(DeviceConfig.device_id)):
        if (unit is not None and units.get(row.device_id) != unit) or (
                visible is not None and row.device_id not in visible):
            continue
        diff = settings_diff(row.desired, row.reported or {})
        in_sync = bool(row.applied) and row.reported_version == row.desired_version and not diff
        rows.append(DeviceSettingsRow(device_id=row.device_id, unit=units.get(row.device_id),
                                      desired_version=row.desired_version, reported_version=row.reported_version,
                                      applied=row.applied, error=row.error, in_sync=in_sync, differences=len(diff)))
    differing = [r for r in rows if not r.in_sync]
    shown = differing if differs else sorted(rows, key=lambda r: r.in_sync)
    return SettingsListOut(total=len(rows), differing=len(differing), devices=shown[:limit])
