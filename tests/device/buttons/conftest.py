"""Button tests: small timings and a debounce clock the test moves; the MockFactory pins
come from ``tests/device/conftest.py``."""

from __future__ import annotations

import pytest

from device.buttons import ButtonsConfig


@pytest.fixture
def buttons_config() -> ButtonsConfig:
    """Small timings: the long press (gpiozero's hold thread) and the patterns run in real time."""
    return ButtonsConfig(enabled=True, debounce_s=0.05, long_press_s=0.15, feedback_time_scale=0.05)


class FakeClock:
    """The controller's debounce clock, moved by the test (no waiting for bounce windows)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
