"""The fleet screen in real headless Chromium (Debian's), served by uvicorn from the fleet's app
factory: devices with their state, an offline alert appearing (highlighted, acknowledgeable)
when a device's Last Will arrives and clearing when it returns, the device page with its
timeline and a thumbnail from the page file endpoint, English. Screenshots in
test-artifacts/fleet/."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image, ImageDraw

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import HttpConfig
from fleet.ingest import Incoming, Writer
from protocol.messages import Message, encode
from protocol.topics import Channel, topic
from tests.authn import browser_login, ensure_admin, login_as
from tests.browser import chromium, needs_chromium
from tests.devices import enroll_device, with_pki
from tests.fleet.alerts.conftest import T0, Clock, alerts_config, jam, offline, online, page, report
from tests.services import free_port, wait_port


def _png() -> bytes:
    image = Image.new("RGB", (120, 170), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 110, 30), fill="navy")
    for y in range(45, 160, 12):
        draw.line((12, y, 108, y), fill="gray", width=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Served:
    url: str
    app: FastAPI
    clock: Clock
    tmp: Path

    def send(self, message: Message, channel: Channel) -> None:
        state = fleet_state(self.app)
        item = Incoming(topic(message.device_id, channel), encode(message), received_at=self.clock.now)
        assert Writer(state.sessions, state.metrics).write([item]) == 1

    def evaluate(self) -> list[str]:
        evaluator = fleet_state(self.app).services.alerts
        assert evaluator is not None
        return [f"{t['event']}:{t['alert']['kind']}" for t in evaluator.run_once()]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app (SQLite file, clock at T0, page refreshing every 0.3 s) on a free loopback port."""
    clock = Clock()
    config = with_pki(alerts_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db"), tmp_path).model_copy(
        update={"http": HttpConfig(page_refresh_s=0.3)})
    app = create_app(config, clock=clock)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port, timeout=30)
        yield Served(f"http://127.0.0.1:{port}", app, clock, tmp_path)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.browser
@needs_chromium
def test_fleet_screen_alert_appears_and_clears(served: Served, artifacts: Path) -> None:
    """kiosk-b's Last Will arrives; 20 minutes later its row and an offline alert stand out,
    the alert is acknowledged from the screen, and it disappears when kiosk-b is back. Bad input
    tried: a page whose file has not been uploaded (a placeholder, not a broken image)."""
    from playwright.sync_api import expect

    shots = artifacts / "fleet"
    shots.mkdir(parents=True, exist_ok=True)
    png = _png()
    with httpx.Client(base_url=served.url) as http:
        login_as(http, *ensure_admin(fleet_state(served.app).sessions))
        kiosk_a = enroll_device(http, "kiosk-a", "99001", served.tmp, clock=served.clock)
        http.headers.pop("Authorization")
        upload = kiosk_a.put_file(http, png)  # signed by kiosk-a's key, at the fleet's (test) time
    assert upload.status_code in (200, 201), upload.text
    for device in ("kiosk-a", "kiosk-b"):
        served.send(online(device, T0), Channel.STATUS)
        served.send(report(device, T0, backlog=3), Channel.TELEMETRY)
    served.send(page("kiosk-a", png, T0, dossier="000.00.00.H99-260320-0001"), Channel.EVENT)
    served.send(page("kiosk-a", b"not uploaded", T0 + timedelta(seconds=5), ok=False, n=2), Channel.EVENT)

    with chromium() as browser:
        view = browser.new_page(viewport={"width": 1400, "height": 900})
        browser_login(view, served.url, *ensure_admin(fleet_state(served.app).sessions))
        view.goto(served.url + "/fleet")
        row_b = view.locator('#devices tr[data-device="kiosk-b"]')
        expect(row_b).to_contain_text("Trực tuyến")
        expect(view.locator("#devices tbody tr")).to_have_count(2)
        expect(view.locator("#no-alerts")).to_have_text("Không có cảnh báo nào đang mở.")
        view.screenshot(path=str(shots / "fleet-all-online.png"), full_page=True)

        served.clock.advance(minutes=1)
        served.send(offline("kiosk-b", served.clock.now), Channel.STATUS)  # its Last Will
        served.clock.advance(minutes=20)
        served.send(report("kiosk-a", served.clock.now), Channel.TELEMETRY)
        assert served.evaluate() == ["opened:offline"]
        alert_row = view.locator('#alerts tr[data-kind="offline"][data-device="kiosk-b"]')
        expect(alert_row).to_have_class("alert-open")
        expect(alert_row).to_contain_text("Mất kết nối")
        expect(row_b).to_have_class("has-alert")
        expect(row_b).to_contain_text("Mất kết nối")
        expect(view.locator('#devices tbody tr').first).to_have_attribute("data-device", "kiosk-b")
        # Both rows' colours read in one task of the page: the screen redraws its table every
        # second, and an element found in one call may be gone (no style at all) by the next.
        colours = view.evaluate("""() => ['kiosk-b', 'kiosk-a'].map(d => getComputedStyle(
            document.querySelector(`#devices tr[data-device="${d}"] td`)).backgroundColor)""")
        assert all(colours) and colours[0] != colours[1], colours
        expect(view.locator("#sum-n_alerts b")).to_have_text("1")
        view.screenshot(path=str(shots / "fleet-offline-alert.png"), full_page=True)

        alert_row.locator("button.ack").click()
        expect(alert_row).to_have_class("alert-acknowledged")
        expect(view.locator("#sum-n_alerts b")).to_have_text("0")

        served.clock.advance(minutes=2)
        served.send(online("kiosk-b", served.clock.now), Channel.STATUS)
        assert served.evaluate() == ["resolved:offline"]
        expect(view.locator("#alerts tbody tr")).to_have_count(0)
        expect(row_b).not_to_have_class("has-alert")
        expect(row_b).to_contain_text("Trực tuyến")
        view.screenshot(path=str(shots / "fleet-alert-cleared.png"), full_page=True)

        # The device page: timeline, thumbnails from the page file endpoint, a jam alert.
        served.send(jam("kiosk-a", served.clock.now), Channel.EVENT)
        assert served.evaluate() == ["opened:scanner_jammed"]
        view.goto(served.url + "/fleet?device=kiosk-a")
        expect(view.locator("#title")).to_have_text("Thiết bị kiosk-a")
        expect(view.locator('#timeline tr[data-type="scanner_jammed"]')).to_have_count(1)
        expect(view.locator('#timeline tr[data-type="page_captured"]')).to_have_count(2)
        expect(view.locator('#alerts tr[data-kind="scanner_jammed"]')).to_have_class("alert-open")
        thumbnail = view.locator("#pages figure img")
        expect(thumbnail).to_have_count(1)
        expect(thumbnail).to_have_js_property("naturalWidth", 120)
        expect(view.locator("#pages figure .noimg")).to_have_text("chưa tải lên")
        expect(view.locator("#pages")).to_contain_text("Bị loại (blurry)")
        expect(view.locator("#pages")).to_contain_text("don_de_nghi")
        view.screenshot(path=str(shots / "fleet-device-kiosk-a.png"), full_page=True)

        view.locator("#lang").click()
        expect(view.locator("#title")).to_have_text("Device kiosk-a")
        expect(view.locator("#pages")).to_contain_text("Rejected (blurry)")
        expect(view.locator('#alerts tr[data-kind="scanner_jammed"]')).to_contain_text("Scanner jammed")
        view.screenshot(path=str(shots / "fleet-device-kiosk-a-en.png"), full_page=True)
