"""A device's updater set up on a temporary root, for the updater tests (tests/device/test_updater*.py).

Slot A is bootstrapped with the ``sohoa_probe`` wheel at 0.1.0; the smoke test imports
``sohoa_probe`` from ``current/app/site-packages`` in a fresh interpreter, as the agent would
start from the slot, and checks its ``OK`` flag."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from device.update_config import UpdaterConfig
from device.update_slots import SlotStore
from protocol.messages import UpdateProgress
from tests.images.helpers import make_wheel

DEVICE_ID = "kiosk-0001"


def probe(root: Path) -> tuple[str, bool] | None:
    """(version, OK) of sohoa_probe as a fresh interpreter sees it from the current slot; None if broken."""
    env = dict(os.environ, PYTHONPATH=str(root / "current" / "app" / "site-packages"))
    code = "import sohoa_probe, importlib.metadata as m; print(m.version('sohoa_probe'), sohoa_probe.OK)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return None
    version, ok = result.stdout.split()
    return version, ok == "True"


def bootstrap(root: Path, work: Path) -> None:
    """Slot A with sohoa_probe 0.1.0 and a model, current -> A (what the OS image ships)."""
    wheel = make_wheel(work / "boot-wheels", version="0.1.0")
    source = work / "boot-slot"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--target", str(source / "app" / "site-packages"), str(wheel)],
        check=True,
    )
    (source / "model").mkdir(parents=True)
    (source / "model" / "doctype.tflite").write_bytes(b"TFL3 old model")
    SlotStore(root).bootstrap(source, version="0.1.0", model_version="1.0")


FLEET_URL = "http://127.0.0.1"
"""The fleet the test updaters belong to: the loopback servers that offer bundles."""


def config(root: Path, public_key: Path, **overrides: object) -> UpdaterConfig:
    values: dict[str, object] = {
        "root": root,
        "public_keys": [public_key],
        "jitter_max_s": 0,
        "retry_min_s": 0.01,
        "retry_max_s": 0.05,
        "health_timeout_s": 0.5,
        "health_interval_s": 0.05,
        "lock_check": "off",
        "allow_http": True,  # the loopback test servers speak plain HTTP (still only from the fleet's origin)
    }
    values.update(overrides)
    return UpdaterConfig.model_validate(values)


@dataclass
class Recorder:
    """What the agent's callables saw."""

    reports: list[UpdateProgress] = field(default_factory=list)
    restarts: int = 0

    def report(self, message: UpdateProgress) -> None:
        self.reports.append(message)

    def restart(self) -> None:
        self.restarts += 1

    def states(self) -> list[str]:
        out: list[str] = []
        for r in self.reports:
            if not out or out[-1] != r.state:
                out.append(r.state)
        return out
