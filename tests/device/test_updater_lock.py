"""The update lock seen from the counter: while an update holds the dossier session, the kiosk
screen and the clerk's buttons refuse to open a dossier and say why (the running agent's light
carries the reason ``updating``); with a dossier open the
update cannot take the lock. (The updater's side, waiting and holding from install to the end
of the trial, is in test_updater.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from device.agent import Agent
from device.buttons import ButtonsConfig, CounterButtons
from device.config import AgentConfig
from device.dossier.errors import UpdateInProgress
from device.dossier.session import DossierSession
from device.dossier.sources import PageSource
from device.kiosk.app import HttpError, KioskApp
from device.kiosk.config import KioskConfig
from tests.device.agent_harness import agent_config, wait_until
from tests.services import Mosquitto

T = 5.0


def test_kiosk_refuses_a_dossier_while_an_update_installs_and_says_why() -> None:
    """Bad input: a citizen pressing "open" (walk-in and with a typed code) while the lock is held."""
    session = DossierSession(pdf_builder=None)
    with KioskApp(KioskConfig(), session) as app:
        assert session.hold_for_update()
        for body in ({}, {"code": "000.00.12.H10-260101-0001"}):
            with pytest.raises(HttpError) as refused:
                app.act("open", body)
            assert (refused.value.status, refused.value.code) == (409, "updating")
        assert session.state == "idle"
        notice = app.state()["notice"]
        assert notice["code"] == "updating"
        assert "cập nhật phần mềm" in notice["vi"] and "software update" in notice["en"]
        session.release_update_hold()
        app.act("open", {})
        assert session.snapshot().state == "open"  # (read again: the narrowing above is stale)
        assert not session.hold_for_update()  # the other way: an open dossier keeps the update waiting
        session.cancel()
        assert session.hold_for_update()
        session.release_update_hold()


def test_buttons_refuse_a_dossier_while_an_update_installs(mock_factory: Any) -> None:
    """Bad input: the clerk pressing Scan while the lock is held. No dossier opens, nothing is
    asked of the scanner, and the light shows the refusal."""
    asked: list[str] = []

    def pages_for(kind: Literal["scan", "rescan"]) -> PageSource:
        asked.append(kind)
        raise AssertionError("the scanner must not be asked while the update lock is held")

    session = DossierSession(pdf_builder=None)
    buttons = CounterButtons(ButtonsConfig(enabled=True, debounce_s=0.0, feedback_time_scale=0.05), session,
                             pages_for, pin_factory=mock_factory)
    try:
        buttons.panel.wait_for(lambda h: h[-1:] == ["ready"], T)
        assert session.hold_for_update()
        pin = mock_factory.pin(buttons.config.scan_pin)
        pin.drive_low()
        pin.drive_high()
        buttons.panel.wait_for(lambda h: "invalid" in h, T)
        buttons.wait_idle(T)
        assert session.state == "idle" and asked == []
        with pytest.raises(UpdateInProgress, match="software update"):
            session.open()
    finally:
        buttons.close()
        session.close()


def test_agent_light_says_updating_while_the_lock_is_held(tmp_path: Path, mosquitto: Mosquitto,
                                                          mock_factory: Any) -> None:
    """The running agent's wiring: while the session is held for an update the status light
    carries the reason ``updating`` and Scan is refused before it reaches the session; released,
    the reason clears and Scan opens a dossier again. Bad input: Scan pressed during the hold."""
    config = AgentConfig.model_validate(agent_config(
        tmp_path, mosquitto.port, scanner={"type": "fake", "pages": 1, "width": 200, "height": 280},
        local_api={"enabled": False},
        buttons={"enabled": True, "debounce_s": 0.0, "long_press_s": 5, "feedback_time_scale": 0.05}))
    with Agent(config, pin_factory=mock_factory) as agent:
        assert agent.buttons is not None and agent.session is not None
        buttons, session = agent.buttons, agent.session
        assert session.hold_for_update()
        wait_until(lambda: "updating" in buttons.panel.attention, T, "the light to say an update installs")
        scan = mock_factory.pin(config.buttons.scan_pin)
        scan.drive_low()
        scan.drive_high()
        wait_until(lambda: "refused scan: updating" in buttons.history, T, "the refused Scan")
        buttons.wait_idle(T)
        assert session.state == "idle"
        session.release_update_hold()
        wait_until(lambda: "updating" not in buttons.panel.attention, T, "the reason to clear")
        scan.drive_low()
        scan.drive_high()
        session.wait_for(lambda s: s.state in ("open", "capturing", "review"), T)
