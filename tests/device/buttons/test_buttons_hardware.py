"""On a real counter box only (SOHOA_HARDWARE=1): every light and buzzer pattern plays on the
configured pins (a person watches), and the buttons' pins can be claimed."""

from __future__ import annotations

import pytest

from device.buttons import ButtonsConfig, CounterButtons, StatusPanel
from device.buttons.feedback import TRANSIENTS
from device.dossier.session import DossierSession
from tests.device.dossier.doubles import ListSource

pytestmark = pytest.mark.hardware


def test_real_pins_play_every_pattern() -> None:
    """Each one-off pattern in turn, then offline and attention, on the default pins."""
    config = ButtonsConfig(enabled=True)
    with StatusPanel(config) as panel:
        for pattern in TRANSIENTS:
            panel.show(pattern)
        panel.idle(30)
        panel.set_offline(True)
        panel.set_attention("check", slot="test")
        panel.wait_for(lambda h: h[-1:] == ["attention"], 10)
    session = DossierSession(pdf_builder=None)
    with CounterButtons(config, session, lambda kind: ListSource([])):
        pass
    session.close()
