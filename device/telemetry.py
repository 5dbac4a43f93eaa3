"""Health reports: agent version, uptime, CPU, memory, disk, SoC temperature where the board
has one, scanner state and outbox depth. Never personal data.

>>> collector = TelemetryCollector("kiosk-0001", outbox, scanner=lambda: ScannerInfo(state="ready"))  # doctest: +SKIP
>>> collector.collect().outbox.events  # doctest: +SKIP
0
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from device import __version__
from device.delivery.outbox import Outbox
from protocol.messages import ScannerInfo, Telemetry

log = logging.getLogger(__name__)

THERMAL = Path("/sys/class/thermal")
_PREFERRED_ZONES = ("cpu", "soc", "x86_pkg", "acpitz")


def read_temperature(root: Path = THERMAL) -> float | None:
    """SoC temperature in °C from the first sensible thermal zone, or None where there is none."""
    zones = sorted(root.glob("thermal_zone*"))
    readings: list[tuple[int, float]] = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        rank = next((i for i, word in enumerate(_PREFERRED_ZONES) if word in kind), len(_PREFERRED_ZONES))
        readings.append((rank, milli / 1000.0))
    if not readings:
        return None
    return min(readings)[1]


class TelemetryCollector:
    """Builds one :class:`Telemetry` message from the machine and the agent's state."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        scanner: Callable[[], ScannerInfo],
        accepting: Callable[[], bool] = lambda: True,
        thermal_root: Path = THERMAL,
    ) -> None:
        self.device_id = device_id
        self.outbox = outbox
        self.scanner = scanner
        self.accepting = accepting
        self.thermal_root = thermal_root
        self.started = time.monotonic()
        psutil.cpu_percent(None)  # the first call only sets the reference point

    def collect(self) -> Telemetry:
        return Telemetry(
            device_id=self.device_id,
            agent_version=__version__,
            uptime_s=time.monotonic() - self.started,
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            disk_free_bytes=self.outbox.free_bytes(),
            disk_total_bytes=self.outbox.total_bytes(),
            temperature_c=read_temperature(self.thermal_root),
            scanner=self.scanner(),
            outbox=self.outbox.depth(),
            accepting_scans=self.accepting(),
        )
