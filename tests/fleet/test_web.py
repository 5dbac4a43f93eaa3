"""The fleet as a user meets it: `sohoa-fleet serve` and `sohoa-fleet ingest` as real
processes, a device's traffic through mosquitto, the web page in headless Chromium."""

from __future__ import annotations

import io
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from fleet.db import make_engine, migrate, session_factory
from fleet.models import Event
from protocol.messages import encode
from tests.authn import browser_login, login_as
from tests.browser import chromium, needs_chromium
from tests.devices import enroll_device
from tests.fleet.conftest import Publisher
from tests.fleet.messages import page_event, status, telemetry
from tests.services import Mosquitto, free_port, wait_port

DEVICE = "kiosk-0007"


def _png() -> bytes:
    """A small real page image (the browser must be able to show it)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (248, 351), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 228, 60), outline="black", width=2)
    for y in range(90, 330, 16):
        draw.line((24, y, 224, y), fill=(60, 60, 60), width=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PNG = _png()


@pytest.fixture
def fleet_process(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    """`sohoa-fleet serve` on a free port, its SQLite and files under tmp_path, with a CA in
    tmp_path/pki/ca (devices enroll; the API is served over HTTPS from it); its URL."""
    port = free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(f"http:\n  port: {port}\n  page_refresh_s: 0.5\nbroker:\n  port: {mosquitto.port}\n"
                      f"pki:\n  ca_dir: {tmp_path}/pki/ca\n")
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.browser
@needs_chromium
def test_web_page_shows_devices_and_pages(fleet_process: str, mosquitto: Mosquitto, artifacts: Path,
                                          tmp_path: Path) -> None:
    """A device comes online, reports a jammed scanner and sends a page: the page at / shows
    it without a reload (it refreshes itself), with the page's image once uploaded."""
    from playwright.sync_api import expect

    event = page_event(DEVICE, PNG, dossier_code="000.00.00.H13-260101-0042")
    publisher = Publisher(mosquitto)
    try:
        with chromium() as browser:
            page = browser.new_context(ignore_https_errors=True).new_page()  # the fleet CA is not Chromium's
            password = (tmp_path / "var/fleet/initial-admin-password").read_text().strip()  # `serve` made `admin`
            browser_login(page, fleet_process, "admin", password)
            page.goto(fleet_process + "/")
            expect(page.locator("#devices")).to_contain_text("Chưa có thiết bị nào", timeout=10_000)
            publisher.publish(f"sohoa/v1/{DEVICE}/status", encode(status(DEVICE, "online")), retain=True)
            publisher.publish(f"sohoa/v1/{DEVICE}/telemetry", encode(telemetry(DEVICE, state="jammed")))
            publisher.publish(f"sohoa/v1/{DEVICE}/event", encode(event))
            row = page.locator(f'[data-device="{DEVICE}"]')
            expect(row).to_contain_text("Trực tuyến", timeout=15_000)
            expect(row).to_contain_text("Kẹt giấy")
            card = page.locator(f'[data-page="{event.page.page_id}"]')
            expect(card).to_contain_text("Đang tải tệp lên", timeout=15_000)
            expect(card).to_contain_text("H13-260101-0042")
            trust = ssl.create_default_context(cafile=str(tmp_path / "pki/ca/ca.crt"))
            with httpx.Client(base_url=fleet_process, verify=trust) as http:
                login_as(http, "admin", password)
                kiosk = enroll_device(http, DEVICE, "26734", tmp_path)
                http.headers.pop("Authorization")
                upload = kiosk.put_file(http, PNG)  # signed by the device's key
            assert upload.status_code == 201, upload.text
            image = card.locator("img")
            expect(image).to_have_count(1, timeout=15_000)
            page.wait_for_function("img => img.complete && img.naturalWidth === 248", arg=image.element_handle())
            page.screenshot(path=str(artifacts / "fleet-web-page.png"), full_page=True)
    finally:
        publisher.close()


def _worker(config: Path, cwd: Path) -> subprocess.Popen[str]:
    """Start `sohoa-fleet ingest` and return once its subscriptions exist (its log says so)."""
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "ingest", "--config", str(config), "--client-id",
                             "worker-2"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "subscribed" in line:
            return proc
    raise AssertionError("the worker stopped before subscribing")


def test_extra_ingest_worker_process(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`sohoa-fleet ingest` alone (no HTTP). Bad situation tried: SIGTERM right after five
    events were published, before the worker may have written them. It exits 0; what it had
    not acknowledged waits in its persistent session, and the restarted worker stores all
    five exactly once."""
    url = f"sqlite:///{tmp_path}/fleet.db"
    config = tmp_path / "fleet.yaml"
    config.write_text(f"database:\n  url: {url}\nbroker:\n  port: {mosquitto.port}\n")
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)

    def stored() -> int:
        with sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Event)) or 0)

    publisher = Publisher(mosquitto)
    proc = _worker(config, tmp_path)
    try:
        for i in range(5):
            publisher.publish(f"sohoa/v1/{DEVICE}/event", encode(page_event(DEVICE, bytes([i]), sequence=i + 1)))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        proc = _worker(config, tmp_path)
        # Another process writes: poll the database, bounded.
        deadline = time.monotonic() + 20
        while stored() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored() == 5
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert stored() == 5
    finally:
        publisher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        engine.dispose()
