"""Fixtures shared by the device tests, one per seam, each restoring what it changed in ``finally``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.device.agent_harness import FileReceiver, Recorder
from tests.services import Mosquitto

DEVICE = "kiosk-test"
"""The device id ``agent_harness.agent_config`` gives the agent under test."""


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Any]:
    """The device's page pipeline (model loaded once), shared by a module's tests."""
    from device.inference.pipeline import PagePipeline

    pipe = PagePipeline()
    try:
        yield pipe
    finally:
        pipe.close()


@pytest.fixture
def mock_factory() -> Iterator[Any]:
    """gpiozero's MockFactory as the pin factory (the pins we cannot have here)."""
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
def receiver() -> Iterator[FileReceiver]:
    """A real HTTP server on loopback that takes page files as the fleet's upload endpoint does."""
    rx = FileReceiver()
    try:
        yield rx
    finally:
        rx.close()


@pytest.fixture
def recorder(mosquitto: Mosquitto) -> Iterator[Recorder]:
    """A plain paho subscriber recording everything the agent under test publishes."""
    rec = Recorder(mosquitto.port, DEVICE)
    try:
        yield rec
    finally:
        rec.close()
