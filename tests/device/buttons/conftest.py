"""One fixture per seam: gpiozero's MockFactory as the pin factory, restored in ``finally``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from device.buttons import ButtonsConfig


@pytest.fixture
def mock_factory() -> Iterator[object]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


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
