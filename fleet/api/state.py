"""What the app holds for its lifetime: config, database, file store, metrics, ingest."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import FleetConfig
from fleet.ingest import Ingest
from fleet.metrics import FleetMetrics
from fleet.storage import FileStore


@dataclass
class FleetState:
    config: FleetConfig
    engine: Engine
    sessions: sessionmaker[Session]
    store: FileStore
    metrics: FleetMetrics
    ingest: Ingest | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The fleet's time (tests move it forward instead of waiting)."""
        return self.clock()
