"""Times and document types on the web pages: one format in the province's zone, names not ids.

The pages draw their data in the browser, so the check runs in real headless Chromium (Debian's)
set to another zone (New York) than the province's: a page falling back to the browser's zone or
to a raw class id fails. The pages' HTML is also checked through ``TestClient``: each includes
the one formatter and builds no date format of its own."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import FleetConfig
from fleet.display import local_time, script, zone
from fleet.ingest import Incoming, Writer
from protocol.doctypes import DOCTYPES, LABELS_EN, LABELS_VI, UNSURE
from protocol.messages import DoctypeCorrected, Message, PageCaptured, encode
from protocol.topics import Channel, topic
from tests.authn import browser_login, ensure_admin, login
from tests.browser import chromium, needs_chromium
from tests.fleet.alerts.conftest import Clock, alerts_config, online, page, report
from tests.services import free_port, wait_port

MOMENT = datetime(2026, 3, 20, 17, 6, tzinfo=UTC)  # 00:06 on 21 March in Vietnam
SHOWN = "21/03/2026 00:06"
PAGES = ("/", "/fleet", "/progress", "/operations")
RAW_ID = re.compile(r"\b(" + "|".join(map(re.escape, (*DOCTYPES, UNSURE))) + r")\b")


def test_local_time_is_one_format_in_the_configured_zone() -> None:
    assert local_time(MOMENT, zone("Asia/Ho_Chi_Minh")) == SHOWN
    assert local_time(MOMENT.replace(tzinfo=None), zone("Asia/Ho_Chi_Minh")) == SHOWN  # the database's naive UTC
    assert local_time(MOMENT, zone("Asia/Tokyo")) == "21/03/2026 02:06"
    assert FleetConfig().time_zone == "Asia/Ho_Chi_Minh"
    with pytest.raises(ValidationError, match="'Mars/Base' is not a time zone"):
        FleetConfig.model_validate({"time_zone": "Mars/Base"})


def test_every_page_uses_the_one_formatter(tmp_path: Path) -> None:
    config = alerts_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db").model_copy(update={"time_zone": "Asia/Tokyo"})
    with TestClient(create_app(config)) as client:
        login(client)
        served = client.get("/static/display.js")
        assert served.status_code == 200 and '"Asia/Tokyo"' in served.text
        assert all(LABELS_VI[d] in served.text and LABELS_EN[d] in served.text for d in DOCTYPES)
        for path in PAGES:
            html = client.get(path).text
            assert '<script src="/static/display.js"></script>' in html, path
            for own_format in ("toLocaleTimeString(", "toLocaleDateString(", "Intl.DateTimeFormat", "timeZone"):
                assert own_format not in html, (path, own_format)
            assert re.search(r"Date\([^;]*\)\.toLocaleString", html) is None, path


@dataclass
class Served:
    url: str
    app: FastAPI

    def send(self, message: Message, channel: Channel) -> None:
        state = fleet_state(self.app)
        item = Incoming(topic(message.device_id, channel), encode(message), received_at=MOMENT)
        assert Writer(state.sessions, state.metrics).write([item]) == 1


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app (SQLite file, its clock at MOMENT) on a free loopback port."""
    app = create_app(alerts_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db"), clock=Clock(MOMENT))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port, timeout=30)
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.browser
@needs_chromium
def test_pages_show_local_times_and_doctype_names(served: Served, artifacts: Path) -> None:
    """A receipt page captured, then corrected from an ID card, at one UTC instant: every page
    shows that instant as 21/03/2026 00:06 in a browser set to New York, and the type by its
    Vietnamese name (English with ``?lang=en``), never ``receipt`` or ``id_card``."""
    from playwright.sync_api import expect

    shots = artifacts / "display"
    shots.mkdir(parents=True, exist_ok=True)
    served.send(online("kiosk-a", MOMENT), Channel.STATUS)
    served.send(report("kiosk-a", MOMENT), Channel.TELEMETRY)
    captured = page("kiosk-a", b"a receipt", MOMENT)
    captured = PageCaptured(device_id="kiosk-a", ts=MOMENT,
                            page=captured.page.model_copy(update={"doctype": "receipt"}))
    served.send(captured, Channel.EVENT)
    served.send(DoctypeCorrected(device_id="kiosk-a", ts=MOMENT, page_id=captured.page.page_id,
                                 sha256=captured.page.sha256, doctype="receipt", previous="id_card",
                                 by="clerk"), Channel.EVENT)

    with chromium() as browser:
        context = browser.new_context(timezone_id="America/New_York", viewport={"width": 1400, "height": 900})
        view = context.new_page()
        browser_login(view, served.url, *ensure_admin(fleet_state(served.app).sessions))

        view.goto(served.url + "/")
        row = view.locator('#devices tr[data-device="kiosk-a"]')
        expect(row).to_contain_text(SHOWN)
        expect(view.locator("#pages")).to_contain_text(SHOWN)
        view.screenshot(path=str(shots / "home.png"), full_page=True)

        view.goto(served.url + "/fleet?device=kiosk-a")
        expect(view.locator("#pages figcaption").first).to_contain_text(LABELS_VI["receipt"])
        expect(view.locator("#pages figcaption").first).to_contain_text(SHOWN)
        corrected = view.locator('#timeline tr[data-type="doctype_corrected"]')
        expect(corrected).to_contain_text(LABELS_VI["id_card"])
        expect(corrected).to_contain_text(SHOWN)
        view.screenshot(path=str(shots / "device-vi.png"), full_page=True)
        text = view.locator("main").inner_text()
        assert RAW_ID.search(text) is None, RAW_ID.search(text)

        view.goto(served.url + "/fleet?device=kiosk-a&lang=en")
        expect(view.locator("#pages figcaption").first).to_contain_text(LABELS_EN["receipt"])
        expect(view.locator("#pages figcaption").first).to_contain_text(SHOWN)

        # The formatter itself, for another province zone and a zone-less (database) string.
        view = context.new_page()  # a new realm: the fleet's SOHOA is not declared there
        view.set_content(f"<script>{script('Asia/Tokyo')}</script>")
        assert view.evaluate("SOHOA.when('2026-03-20T17:06:00+00:00')") == local_time(MOMENT, zone("Asia/Tokyo"))
        assert view.evaluate("SOHOA.when('2026-03-20T17:06:00')") == "21/03/2026 02:06"
        assert view.evaluate("SOHOA.doctype('household_book', 'vi')") == LABELS_VI["household_book"]
        assert view.evaluate("SOHOA.doctype('newer_class', 'vi')") == "newer_class"
