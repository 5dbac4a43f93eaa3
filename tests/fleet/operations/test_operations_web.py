"""The operations page in real headless Chromium (Debian's), served by uvicorn from the fleet's
app factory; device messages go in through the ingest writer with the operations hook, as the
broker would deliver them. Shown: rollouts listed with their state; one rollout's phases,
per-device progress and summary counts following the devices; pause, resume and cancel by an
admin; a halted rollout with its reason; desired vs reported settings with the differences
highlighted and the "only differing" filter; commands and their states; English; a viewer sees
no buttons; without a login the page sends to /login. Users log in through the /login form
(tests/authn.py). Screenshots in test-artifacts/operations/."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import HttpConfig
from fleet.ingest import Incoming, Writer
from protocol.messages import CommandAck, ConfigReported, Message, Status, UpdateProgress, encode
from tests.authn import browser_login, login_as, make_user
from tests.browser import chromium, needs_chromium
from tests.fleet.conftest import make_config
from tests.fleet.operations.harness import unchecked_settings
from tests.services import free_port, wait_port

DEVICES = [f"kiosk-{i:02d}" for i in range(1, 6)]
_CHANNEL = {Status: "status", CommandAck: "cmd/ack", ConfigReported: "config/reported", UpdateProgress: "update"}


@dataclass
class Served:
    url: str
    app: FastAPI
    http: httpx.Client

    def user(self, role: str) -> tuple[str, str]:
        """A new user with ``role``: (name, password)."""
        name, password = f"{role}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
        make_user(fleet_state(self.app).sessions, name=name, password=password, role=role)  # type: ignore[arg-type]
        return name, password

    def browser(self, browser: Browser, role: str) -> Page:
        """A fresh browser context logged in through the /login form as a new user with ``role``."""
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        browser_login(page, self.url, *self.user(role))
        return page

    def deliver(self, *messages: Message) -> None:
        state = fleet_state(self.app)
        ops = fleet_state(self.app).services.operations
        assert ops is not None
        writer = Writer(state.sessions, state.metrics)
        writer.hooks.append(ops.hook)
        items = [Incoming(f"sohoa/v1/{m.device_id}/{_CHANNEL[type(m)]}", encode(m)) for m in messages]
        assert writer.write(items) == len(items)

    def progress(self, rollout_id: str, device_id: str, state: str, detail: str | None = None) -> None:
        self.deliver(UpdateProgress(device_id=device_id, rollout_id=rollout_id, version="0.2.0",
                                    state=state, detail=detail))

    def rollout(self, rollout_id: str) -> dict[str, object]:
        response = self.http.get(f"/api/v1/rollouts/{rollout_id}")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    def devices_in(self, rollout_id: str, state: str) -> list[str]:
        devices = self.rollout(rollout_id)["devices"]
        assert isinstance(devices, dict)
        return sorted(d for d, p in devices.items() if p["state"] == state)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app (SQLite file, no broker: nothing is published, the page only reads) on a free port."""
    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db").model_copy(
        update={"http": HttpConfig(page_refresh_s=0.3)})
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as http:
            served = Served(url, app, http)
            login_as(http, *served.user("province_admin"))
            yield served
    finally:
        server.should_exit = True
        thread.join(30)


def _setup(served: Served) -> None:
    served.deliver(*(Status(device_id=d, state="online", unit="U1") for d in DEVICES))
    put = served.http.put("/api/v1/bundles/app-0.2.0.bundle", content=b"signed bundle bytes")
    assert put.status_code == 201, put.text
    for rollout_id, error_threshold in (("r-good", 0.5), ("r-bad", 0.1)):
        created = served.http.post("/api/v1/rollouts", json={
            "rollout_id": rollout_id, "bundle": "app-0.2.0.bundle", "version": "0.2.0",
            "target": {"unit_subtree": "U1"},
            "phases": [{"percent": 20}, {"percent": 100, "error_threshold": error_threshold}]})
        assert created.status_code == 201, created.text
    # Settings: a fleet default, one device rejecting a value, one in sync, the others silent.
    assert served.http.put("/api/v1/settings/fleet/default",
                           json={"settings": {"kiosk_language": "vi", "scan": {"dpi": 300}}}).status_code == 200
    assert served.http.put("/api/v1/settings/device/kiosk-02",
                           json={"settings": {"scan": {"dpi": 100}}}).status_code == 422
    unchecked_settings(served.app, "kiosk-02", {"scan": {"dpi": 100}})  # as a fleet that did not check
    one = served.http.get("/api/v1/devices/kiosk-01/settings").json()
    two = served.http.get("/api/v1/devices/kiosk-02/settings").json()
    served.deliver(
        ConfigReported(device_id="kiosk-01", version=one["desired_version"], applied=True,
                       settings={"kiosk_language": "vi", "scan": {"dpi": 300, "colour_mode": "color"}}),
        ConfigReported(device_id="kiosk-02", version=two["desired_version"], applied=False,
                       error="scan.dpi: records need at least 200 dpi",
                       settings={"kiosk_language": "vi", "scan": {"dpi": 300, "colour_mode": "color"}}),
    )
    reboot = served.http.post("/api/v1/devices/kiosk-03/commands", json={"name": "reboot"})
    assert reboot.status_code == 201
    served.deliver(CommandAck(device_id="kiosk-03", command_id=reboot.json()["id"], state="rejected",
                              detail="a dossier is open"))


@pytest.mark.browser
@needs_chromium
def test_operations_page_rollouts_settings_commands(served: Served, artifacts: Path) -> None:
    """Bad input tried: a rollout whose canary rolls back (halted, shown with its reason, nothing
    offered to phase 2), a phase-2 device rolling back under that phase's error threshold (the
    rollout goes on), another admin pausing behind the page's back (the buttons follow the real
    state), a device rejecting its settings (highlighted with the reason)."""
    from playwright.sync_api import expect

    shots = artifacts / "operations"
    shots.mkdir(parents=True, exist_ok=True)
    _setup(served)
    [canary] = served.devices_in("r-good", "offered")
    [bad_canary] = served.devices_in("r-bad", "offered")
    served.progress("r-good", canary, "waiting", "maintenance window opens 2026-11-26T01:00+07:00")

    with chromium() as browser:
        anonymous = browser.new_page()
        anonymous.goto(served.url + "/operations?view=settings")
        expect(anonymous).to_have_url(re.compile(r"/login\?next="))  # nobody reads it without a login
        view = served.browser(browser, "province_admin")
        view.goto(served.url + "/operations")
        expect(view.locator("#rollouts tbody tr")).to_have_count(2)
        good_row = view.locator('#rollouts tr[data-rollout="r-good"]')
        expect(good_row).to_contain_text("Đang chạy")
        served.progress("r-bad", bad_canary, "rolled_back", "health check 'pipeline' failed: answered no")
        bad_row = view.locator('#rollouts tr[data-rollout="r-bad"]')
        expect(bad_row).to_have_attribute("data-status", "halted")
        expect(bad_row).to_contain_text("Tự dừng do lỗi")
        view.screenshot(path=str(shots / "rollouts.png"), full_page=True)

        # One rollout: phases and devices follow the devices' reports.
        good_row.locator("a").click()
        expect(view.locator("#title")).to_have_text("Đợt triển khai r-good")
        canary_row = view.locator(f'#rollout-devices tr[data-device="{canary}"]')
        expect(canary_row).to_have_attribute("data-state", "waiting")
        expect(canary_row).to_contain_text("Chờ khung giờ bảo trì (mở lúc 26/11/2026 01:00)")  # said in Vietnamese
        expect(view.locator("#sum-pending b")).to_have_text("4")
        for state in ("downloading", "installing", "succeeded"):
            served.progress("r-good", canary, state)
        expect(canary_row).to_have_attribute("data-state", "succeeded")
        phase2 = served.devices_in("r-good", "offered")
        assert len(phase2) == 4
        served.progress("r-good", phase2[0], "rolled_back", "health check 'scanner' failed: answered no")
        served.progress("r-good", phase2[1], "installing")
        expect(view.locator('#phases tr[data-phase="2"]')).to_contain_text("Đã quay lại bản cũ: 1")
        rolled_back = view.locator(f'#rollout-devices tr[data-device="{phase2[0]}"]')
        expect(rolled_back).to_contain_text("Đã quay lại bản cũ")
        expect(view.locator("#sum-succeeded b")).to_have_text("1")
        expect(view.locator("#sum-rolled_back b")).to_have_text("1")
        expect(view.locator("#sum-installing b")).to_have_text("1")
        expect(view.locator("#halt")).to_be_hidden()
        view.screenshot(path=str(shots / "rollout-running.png"), full_page=True)

        view.locator("#pause").click()
        expect(view.locator("#rollout-status .badge")).to_have_text("Tạm dừng")
        expect(view.locator("#pause")).to_be_disabled()
        expect(view.locator("#resume")).to_be_enabled()
        view.screenshot(path=str(shots / "rollout-paused.png"), full_page=True)
        view.locator("#resume").click()
        expect(view.locator("#rollout-status .badge")).to_have_text("Đang chạy")
        assert served.http.post("/api/v1/rollouts/r-good/pause").status_code == 200  # another admin pauses
        expect(view.locator("#rollout-status .badge")).to_have_text("Tạm dừng")  # the page follows
        expect(view.locator("#resume")).to_be_enabled()
        view.once("dialog", lambda dialog: dialog.accept())
        view.locator("#cancel").click()
        expect(view.locator("#rollout-status .badge")).to_have_text("Đã hủy")
        for button in ("#pause", "#resume", "#cancel"):
            expect(view.locator(button)).to_be_disabled()
        assert served.rollout("r-good")["summary"]["status"] == "cancelled"  # type: ignore[index]
        view.screenshot(path=str(shots / "rollout-cancelled.png"), full_page=True)

        view.goto(served.url + "/operations?rollout=r-bad")
        expect(view.locator("#halt")).to_contain_text("giai đoạn 1: 1/1 thiết bị lỗi hoặc đã quay lại bản cũ")
        expect(view.locator('#rollout-devices tr[data-state="pending"]')).to_have_count(4)
        expect(view.locator("#pause")).to_be_disabled()
        expect(view.locator("#cancel")).to_be_enabled()
        view.screenshot(path=str(shots / "rollout-halted.png"), full_page=True)

        # Settings: who differs, and where.
        view.goto(served.url + "/operations?view=settings")
        expect(view.locator("#sum-n_total b")).to_have_text("5")
        expect(view.locator("#sum-n_differing b")).to_have_text("4")
        expect(view.locator('#settings tr[data-device="kiosk-01"]')).not_to_have_class("differs")
        expect(view.locator('#settings tr[data-device="kiosk-02"]')).to_have_class("differs")
        expect(view.locator('#settings tr[data-device="kiosk-02"]')).to_contain_text("200 dpi")
        view.locator("#differs").check()
        expect(view.locator("#settings tbody tr")).to_have_count(4)
        expect(view.locator('#settings tr[data-device="kiosk-01"]')).to_have_count(0)
        view.screenshot(path=str(shots / "settings-differing.png"), full_page=True)
        view.locator('#settings tr[data-device="kiosk-02"] a').click()
        expect(view.locator("#title")).to_have_text("Thiết bị kiosk-02")
        dpi = view.locator('#device-settings tr[data-key="scan.dpi"]')
        expect(dpi).to_have_class("differs")
        expect(dpi.locator("td.desired")).to_have_text("100")
        expect(dpi.locator("td.reported")).to_have_text("300")
        expect(view.locator('#device-settings tr[data-key="kiosk_language"]')).not_to_have_class("differs")
        expect(view.locator('#device-settings tr[data-key="scan.colour_mode"]')).to_have_class("unset")
        expect(view.locator("#device-error")).to_contain_text("records need at least 200 dpi")
        background = "e => getComputedStyle(e).backgroundColor"
        assert dpi.locator("td").first.evaluate(background) != \
            view.locator('#device-settings tr[data-key="kiosk_language"] td').first.evaluate(background)
        view.screenshot(path=str(shots / "device-settings-kiosk-02.png"), full_page=True)

        # Commands, then English.
        view.goto(served.url + "/operations?view=commands")
        reboot = view.locator("#commands tr").filter(has_text="a dossier is open")
        expect(reboot).to_contain_text("Khởi động lại máy")
        expect(reboot).to_contain_text("a dossier is open")
        # The offers never taken were withdrawn: 5 by the cancel, the halted rollout's canary's by the halt.
        withdrawn = view.locator('#commands tr[data-state="rejected"]')
        expect(withdrawn.filter(has_text="Đợt đã hủy trước khi thiết bị nhận lệnh")).to_have_count(5)
        expect(withdrawn.filter(has_text="Đợt đã tự dừng trước khi thiết bị nhận lệnh")).to_have_count(1)
        view.screenshot(path=str(shots / "commands.png"), full_page=True)
        view.locator("#state-filter").select_option("rejected")
        expect(view.locator("#commands tbody tr")).to_have_count(7)  # the reboot and 6 withdrawn offers
        view.locator("#state-filter").select_option("succeeded")
        expect(view.locator("#commands tbody tr")).to_have_count(1)  # the "no commands" row
        expect(view.locator("#commands tbody")).to_contain_text("Chưa có lệnh nào.")
        view.locator("#state-filter").select_option("")
        view.locator("#lang").click()
        expect(reboot).to_contain_text("Reboot")
        expect(withdrawn.filter(has_text="rollout cancelled before delivery")).to_have_count(5)  # English as sent
        expect(view.locator("#sum-c-rejected")).to_contain_text("Rejected")
        view.goto(served.url + "/operations?rollout=r-good&lang=en")
        expect(view.locator("#rollout-status .badge")).to_have_text("Cancelled")
        expect(view.locator("#title")).to_have_text("Rollout r-good")
        expect(view.locator("#devices-shown")).to_have_text("")  # all 5 shown
        view.screenshot(path=str(shots / "rollout-cancelled-en.png"), full_page=True)

        # A viewer reads the same page without the buttons.
        viewer = served.browser(browser, "viewer")
        viewer.goto(served.url + "/operations?rollout=r-bad&lang=en")
        expect(viewer.locator("body")).to_have_attribute("data-role", "viewer")
        expect(viewer.locator("#halt")).to_contain_text(
            "phase 1: 1 of 1 devices failed or rolled back (halt threshold 10%)")
        expect(viewer.locator("#controls")).to_be_hidden()
        viewer.screenshot(path=str(shots / "rollout-halted-viewer.png"), full_page=True)
