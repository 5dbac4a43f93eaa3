"""The first hour of a new IT admin, through the web pages only, in real headless Chromium against
a served fleet that starts empty (no unit, no device, only the admin's account): sign in, import
the unit tree, set the digitization target, issue an enrollment token, a kiosk enrolls with the
token the page showed, the admin sees it online, pushes a setting, runs a test scan, uploads a
bundle and rolls it out, and reads what happened in the audit log. The kiosk's side is what a
kiosk sends: its enrollment over HTTP, its MQTT messages (status, command answers, settings
report, update progress) through the fleet's ingest writer. Each step is checked through the API,
a screenshot per step in test-artifacts/first-hour/, axe on the audit log it ends on (every admin
view has its own axe check in test_web_admin and test_web_admin_ops)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.ingest import Incoming, Writer
from fleet.progress.units import sample_csv
from protocol.messages import CommandAck, ConfigReported, Message, Status, UpdateProgress, encode
from provisioning.identity import DeviceIdentity
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, ensure_admin, login_as
from tests.browser import BROWSER, axe_serious, chromium
from tests.devices import enroll_request, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.progress.conftest import serve

if TYPE_CHECKING:
    from fastapi import FastAPI

KIOSK, UNIT = "kiosk-an-phu-01", "99001"

pytestmark = BROWSER

CHANNELS = {Status: "status", CommandAck: "cmd/ack", ConfigReported: "config/reported", UpdateProgress: "update"}


def _send(app: FastAPI, message: Message) -> None:
    """What the kiosk publishes, in through the ingest writer as the broker would bring it."""
    state = fleet_state(app)
    ops = state.services.operations
    assert ops is not None
    writer = Writer(state.sessions, state.metrics)
    writer.hooks.append(ops.hook)
    topic = f"sohoa/v1/{message.device_id}/{CHANNELS[type(message)]}"
    assert writer.write([Incoming(topic, encode(message))]) == 1


@pytest.fixture
def empty_fleet(tmp_path: Path) -> Iterator[tuple[str, FastAPI, httpx.Client]]:
    """A fleet with its CA and only the province admin's account, on a free loopback port; a
    client of that admin to check each step through the API."""
    app = create_app(with_pki(make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db"), tmp_path))
    # No kept-alive connection: between two checks the page may take longer than uvicorn keeps an
    # idle one open, and a request sent as it closes it is reset.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, limits=no_reuse) as http:
        ensure_admin(fleet_state(app).sessions)
        login_as(http, ADMIN_NAME, ADMIN_PASSWORD)
        yield url, app, http


def test_the_first_hour_of_an_it_admin(empty_fleet: tuple[str, FastAPI, httpx.Client], artifacts: Path,
                                       tmp_path: Path) -> None:
    """One walk, longer than the suite's usual test (about 30 s here): what it proves is that the
    steps hold together from an empty fleet, in the order a newcomer takes them, with no curl."""
    from playwright.sync_api import expect

    url, app, http = empty_fleet
    shots = artifacts / "first-hour"
    shots.mkdir(parents=True, exist_ok=True)
    units_csv = tmp_path / "don-vi.csv"
    units_csv.write_text(sample_csv(), encoding="utf-8")
    bundle = tmp_path / "sohoa-agent-1.1.0.bundle"
    bundle.write_bytes(b"signed update bundle" * 64)
    assert http.get("/api/v1/units").json() == [] and http.get("/api/v1/devices").json() == []

    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        def loaded(path: str) -> None:
            page.goto(url + path)
            page.wait_for_selector("body[data-loaded]", state="attached", timeout=15_000)

        # 1. Sign in: the admin page sends a stranger to the login form, and back after it.
        page.goto(url + "/admin?view=units")
        expect(page.locator("input[name=password]")).to_be_visible()
        page.fill("input[name=name]", ADMIN_NAME)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        shot("01-sign-in")
        page.click("button[type=submit]")
        page.wait_for_url("**/admin?view=units")
        page.wait_for_selector("body[data-loaded]", state="attached")

        # 2. Import the unit tree, set the commune tier's target.
        expect(page.locator("#units tbody")).to_have_text("Không có.")
        page.locator("#units-form input[type=file]").set_input_files(str(units_csv))
        page.locator("#units-form button[type=submit]").click()
        expect(page.locator("#status")).to_have_text("Đã nhập: 11 đơn vị mới, 0 cập nhật, 0 không đổi.")
        targets = page.locator("#target-form")
        targets.locator("select[name=tier]").select_option("commune")
        targets.locator("input[name=period_from]").fill("2026-01")
        targets.locator("input[name=rate]").fill("35")
        targets.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_text("Đã đặt chỉ tiêu Xã từ 2026-01: 35%.")
        set_targets = http.get("/api/v1/progress/targets").json()
        assert ("commune", None, "2026-01", 0.35) in {(x["tier"], x["unit_code"], x["period_from"], x["rate"])
                                                      for x in set_targets}
        shot("02-units-and-target")

        # 3. Issue an enrollment token; the kiosk enrolls with what the page shows.
        page.locator("#views a[data-view=enrollment]").click()
        page.wait_for_selector("#token-form")
        page.locator("#token-form input[name=unit_code]").fill(UNIT)
        page.locator("#token-form button[type=submit]").click()
        expect(page.locator("#issued")).to_be_visible()
        token = page.locator("#issued-token").inner_text()
        shot("03-token-issued")
        identity = DeviceIdentity(tmp_path / "kiosk", KIOSK)
        enrolled = http.post("/api/v1/enroll", content=enroll_request(identity, token, UNIT),
                             headers={"Content-Type": "application/json"})
        assert enrolled.status_code == 200, enrolled.text
        assert enrolled.json()["ca_pem"]

        # 4. See it: enrolled, then online once it speaks.
        loaded(f"/admin?view=device&device={KIOSK}")
        expect(page.locator("#device-facts")).to_contain_text("Đã đăng ký, chưa kết nối")
        _send(app, Status(device_id=KIOSK, state="online", unit=UNIT, agent_version="1.0.0"))
        loaded(f"/admin?view=device&device={KIOSK}")
        expect(page.locator("#device-facts")).to_contain_text("Trực tuyến")
        expect(page.locator("#device-facts")).to_contain_text("phiên bản 1.0.0")
        assert http.get(f"/api/v1/devices/{KIOSK}").json()["online"] is True
        shot("04-kiosk-online")

        # 5. Push a setting to its unit; the kiosk applies it.
        loaded(f"/admin?view=settings&scope=unit&key={UNIT}")
        page.locator('#settings-fields [data-path="scan.dpi"]').fill("400")
        expect(page.locator("#settings-fields")).to_have_attribute("data-problems", "0")
        page.locator("#settings-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("1 thiết bị sẽ nhận cấu hình mới")
        desired = http.get(f"/api/v1/devices/{KIOSK}/settings").json()
        assert desired["desired"]["scan"]["dpi"] == 400
        _send(app, ConfigReported(device_id=KIOSK, version=desired["desired_version"], applied=True,
                                  settings=desired["desired"]))
        loaded(f"/admin?view=settings&scope=device&key={KIOSK}")
        expect(page.locator("#settings-sync")).to_contain_text("Thiết bị đang chạy đúng cấu hình")
        shot("05-setting-applied")

        # 6. A test scan: queued from the page, answered by the kiosk.
        loaded(f"/admin?view=device&device={KIOSK}")
        page.locator("#command-form select[name=name]").select_option("test_scan")
        page.locator('#command-args [data-path="max_pages"]').fill("2")
        page.locator("#command-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text('Đã gửi lệnh "Quét thử"')
        [command] = http.get(f"/api/v1/devices/{KIOSK}/commands").json()
        assert command["args"] == {"max_pages": 2}
        _send(app, CommandAck(device_id=KIOSK, command_id=command["id"], state="succeeded",
                              detail="2 pages scanned, 2 accepted"))
        row = page.locator(f'#device-commands tr[data-command="{command["id"]}"]')
        expect(row).to_have_attribute("data-state", "succeeded")
        expect(row).to_contain_text("2 pages scanned")
        shot("06-test-scan")

        # 7. Upload a bundle and roll it out to the province in one phase; the kiosk installs it.
        loaded("/admin?view=updates")
        page.locator("#bundle-form input[type=file]").set_input_files(str(bundle))
        page.locator("#bundle-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("Đã tải lên sohoa-agent-1.1.0.bundle")
        form = page.locator("#rollout-form")
        expect(form.locator("input[name=version]")).to_have_value("1.1.0")
        form.locator("input[name=unit_subtree]").fill("99")
        for _ in range(2):
            page.locator("#phases tbody tr").first.locator("button").click()  # one phase: 100%
        rollout_id = form.locator("input[name=rollout_id]").input_value()
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_text(f"Đã lập đợt {rollout_id} cho 1 thiết bị, đã bắt đầu.")
        line = page.locator(f'#rollout-list tr[data-rollout="{rollout_id}"]')
        expect(line).to_have_attribute("data-status", "running")
        shot("07-rollout-running")
        _send(app, UpdateProgress(device_id=KIOSK, rollout_id=rollout_id, version="1.1.0", state="succeeded"))
        expect(line).to_have_attribute("data-status", "completed", timeout=15_000)  # the list follows a running one
        assert http.get(f"/api/v1/rollouts/{rollout_id}").json()["summary"]["status"] == "completed"
        shot("08-rollout-completed")

        # 8. Read the audit log: every step above, by this admin.
        loaded("/admin?view=audit")
        page.locator("#audit-form input[name=actor]").fill(ADMIN_NAME)
        page.locator("#audit-form button[type=submit]").click()
        actions = set(page.locator("#audit tbody tr[data-action]").evaluate_all(
            "rows => rows.map(r => r.dataset.action)"))
        assert {"auth.login", "token.created", "POST /api/v1/units/import", "PUT /api/v1/progress/targets",
                "PUT /api/v1/settings/{scope}/{key}", "POST /api/v1/devices/{device_id}/commands",
                "PUT /api/v1/bundles/{name}", "POST /api/v1/rollouts"} <= actions, actions
        assert not any("contract" in a for a in actions)  # the forms' checks as one types are no writes
        shot("09-audit-log")
        assert axe_serious(page) == []
