"""The kiosk screen and the clerk's buttons on one session: what one does, the other shows, and
neither can act against a state the other has moved on from."""

from __future__ import annotations

from typing import Any

import httpx

from device.buttons import ButtonsConfig, CounterButtons
from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from tests.device.dossier.doubles import ListSource, RecordingSink, page_image

CODE = "000.00.12.H10-260101-0456"
T = 10.0


def test_screen_and_buttons_share_one_dossier(mock_factory: Any) -> None:
    """The citizen opens the dossier on the screen; the clerk's Scan adds the feeder's pages to
    it and the screen lists them; Done on the screen closes it and the counter light says so;
    the clerk's Rescan after that rescans nothing: it arms result mode for the next dossier and
    changes nothing of the closed one."""
    sink = RecordingSink()
    session = DossierSession(sink=sink, pdf_builder=None)
    config = ButtonsConfig(enabled=True, debounce_s=0.0, long_press_s=1.0, feedback_time_scale=0.05)
    buttons = CounterButtons(config, session, lambda kind: ListSource([page_image(1), page_image(2)]),
                             pin_factory=mock_factory)
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session)).start()
    http = httpx.Client(base_url=server.url, timeout=10)
    try:
        assert http.post("/api/open", json={"code": CODE}).json()["state"] == "open"
        scan = mock_factory.pin(config.scan_pin)
        scan.drive_low()
        scan.drive_high()
        buttons.wait_idle(T)
        state = http.get("/api/state").json()
        assert state["state"] == "review" and state["dossier_code"] == CODE
        assert [p["sequence"] for p in state["pages"]] == [1, 2]
        assert http.post("/api/finish").json()["state"] == "closed"
        buttons.panel.wait_for(lambda h: "dossier_closed" in h, T)
        rescan = mock_factory.pin(config.rescan_pin)
        rescan.drive_low()
        rescan.drive_high()
        buttons.wait_idle(T)
        assert buttons.history == ["scan", "result armed"]
        assert len(sink.dossiers) == 1 and len(sink.dossiers[0].pages) == 2
        assert http.get("/api/state").json()["last_closed"] == {"dossier_code": CODE, "pages": 2,
                                                                "kind": "component"}
    finally:
        http.close()
        server.close()
        buttons.close()
        session.close()
