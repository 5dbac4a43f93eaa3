"""``/healthz`` and ``/metrics``."""

from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import func, select, text

from fleet.api.deps import SessionDep, StateDep
from fleet.models import Device

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    ingest: Literal["off", "connected", "disconnected"]


@router.get("/healthz")
def healthz(state: StateDep, session: SessionDep) -> HealthOut:
    """200 with the parts' states; the database must answer."""
    session.execute(text("SELECT 1"))
    ingest = state.services.ingest
    return HealthOut(status="ok", database="ok",
                     ingest="off" if ingest is None else ("connected" if ingest.connected else "disconnected"))


@router.get("/metrics", response_class=Response,
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(state: StateDep, session: SessionDep) -> Response:
    """Prometheus text format."""
    now = state.now()
    cutoff = now - timedelta(seconds=state.config.ingest.heartbeat_timeout_s)
    online = session.scalar(
        select(func.count()).select_from(Device).where(Device.status != "offline", Device.last_seen >= cutoff)
    )
    state.metrics.devices_online.set(online or 0)
    state.metrics.devices_known.set(session.scalar(select(func.count()).select_from(Device)) or 0)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
