"""The admin page's operations sections in real headless Chromium against a served fleet: desired
settings with the fleet's own check shown beside each field (nothing saved while one fails), a
bundle uploaded and rolled out in phases through the wizard (its field errors beside the fields,
then paused, resumed, cancelled after a confirmation), a command's arguments and a raw update
from the device view, a device moved to another unit, a device enrolled but never connected
opened and revoked, the setup sheet of single-use tokens for a batch of SD cards (each card's QR
code decoded, the print style keeping only the sheet). What each form did is checked through the
API. axe-core finds no serious or critical violation. One fleet and one browser for the module;
screenshots (and the sheet as PDF) in test-artifacts/admin/."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.progress.units import sample_csv
from protocol.messages import CommandAck, Status
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, ensure_admin, login_as
from tests.browser import BROWSER, axe_serious, loaded, shots_dir, signed_in
from tests.devices import enroll_device, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.progress.conftest import serve
from tests.fleet.test_web_admin import Served

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request


pytestmark = BROWSER


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app (SQLite file, PKI, the sample unit tree) on a free loopback port, with the suite's
    province admin; two kiosks of unit 99001 online."""
    tmp = tmp_path_factory.mktemp("admin-ops")
    app = create_app(with_pki(make_config(tmp, f"sqlite:///{tmp}/fleet.db"), tmp))
    # No kept-alive connection: between two checks the page may take longer than uvicorn keeps an
    # idle one open, and a request sent as it closes it is reset.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, limits=no_reuse) as http:
        ensure_admin(fleet_state(app).sessions)
        login_as(http, ADMIN_NAME, ADMIN_PASSWORD)
        assert http.post("/api/v1/units/import", content=sample_csv().encode(),
                         headers={"Content-Type": "text/csv"}).status_code == 200
        out = Served(url, http, tmp, app)
        for device in ("kiosk-a1", "kiosk-a2"):
            enroll_device(http, device, "99001", tmp)
            out.deliver(Status(device_id=device, state="online", unit="99001"))
        yield out


@pytest.fixture
def shots(artifacts: Path) -> Path:
    return shots_dir(artifacts, "admin")


@pytest.fixture
def admin(browser: Browser, served: Served) -> Iterator[Page]:
    with signed_in(browser, served.url, ADMIN_NAME, ADMIN_PASSWORD) as page:
        yield page


def _writes(page: Page, method: str, fragment: str) -> list[str]:
    """The URLs of the ``method`` requests to a URL containing ``fragment`` the page makes from now on."""
    seen: list[str] = []

    def note(request: Request) -> None:
        if request.method == method and fragment in request.url:
            seen.append(request.url)

    page.on("request", note)
    return seen


def test_settings_errors_beside_their_fields_nothing_saved_until_they_fit(admin: Page, served: Served,
                                                                          shots: Path) -> None:
    """Bad input tried: a resolution below 200 dpi, a maintenance window opening and closing at
    the same time, a time zone that does not exist; each error beside its field, the save refused
    without a request, the level unchanged in the API."""
    from playwright.sync_api import expect

    puts = _writes(admin, "PUT", "/api/v1/settings/")
    loaded(admin, served.url + "/admin?view=settings")
    layer = admin.locator("#layer-form")
    layer.locator("select[name=scope]").select_option("unit")
    layer.locator("input[name=key]").fill("99001")
    layer.locator("button[type=submit]").click()
    form = admin.locator("#settings-form")
    expect(form).to_be_visible()
    expect(admin.locator("#settings-sync")).to_have_text("Cấp này chưa có cấu hình riêng.")
    form.locator('[data-path="scan.dpi"]').fill("100")
    expect(admin.locator("#err-settings-fields-scan_dpi")).to_have_text("Giá trị nhỏ hơn mức cho phép.")
    expect(form.locator('[data-path="scan.dpi"]')).to_have_attribute("aria-invalid", "true")
    form.locator('[data-path="maintenance_window.start"]').fill("02:00")
    form.locator('[data-path="maintenance_window.end"]').fill("02:00")
    window_error = admin.locator("#err-settings-fields-maintenance_window")
    expect(window_error).to_contain_text("start and end are equal")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Chưa lưu: 2 lỗi, xem bên cạnh từng ô.")
    admin.screenshot(path=str(shots / "settings-inline-errors.png"), full_page=True)
    form.locator('[data-path="maintenance_window.timezone"]').fill("Asia/Atlantis")
    expect(admin.locator("#err-settings-fields-maintenance_window_timezone")).to_contain_text("Asia/Atlantis")
    form.locator("button[type=submit]").click()
    expect(form.locator("#settings-fields")).to_have_attribute("data-problems", "2")  # dpi, time zone
    assert puts == []
    assert served.http.get("/api/v1/settings/unit/99001").status_code == 404

    form.locator('[data-path="scan.dpi"]').fill("400")
    form.locator('[data-path="maintenance_window.end"]').fill("05:00")
    form.locator('[data-path="maintenance_window.timezone"]').fill("")
    form.locator('[data-path="kiosk_language"]').select_option('"vi"')
    expect(form.locator("#settings-fields")).to_have_attribute("data-problems", "0")
    expect(window_error).to_be_hidden()
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text(
        "Đã lưu cấu hình đơn vị 99001 (phiên bản 1); 2 thiết bị sẽ nhận cấu hình mới.")
    assert len(puts) == 1
    saved = served.http.get("/api/v1/settings/unit/99001").json()
    assert saved["settings"] == {"scan": {"dpi": 400}, "kiosk_language": "vi",
                                 "maintenance_window": {"start": "02:00", "end": "05:00"}}
    assert served.http.get("/api/v1/devices/kiosk-a1/settings").json()["desired"]["scan"]["dpi"] == 400
    expect(admin.locator("#settings-sync")).to_have_text("Phiên bản 1 của cấp này.")

    # One device's level, in English: what it inherits is not repeated, its sync state is shown.
    loaded(admin, served.url + "/admin?view=settings&scope=device&key=kiosk-a1&lang=en")
    expect(admin.locator("#h-layer")).to_have_text("Settings of device kiosk-a1")
    expect(admin.locator("#settings-sync")).to_contain_text("does not run its desired settings yet")
    admin.locator('#settings-fields [data-path="telemetry_interval_s"]').fill("five")
    expect(admin.locator("#err-settings-fields-telemetry_interval_s")).to_have_text("A number is needed.")
    admin.screenshot(path=str(shots / "settings-device-en.png"), full_page=True)


def test_bundle_upload_and_phased_rollout_wizard(admin: Page, served: Served, shots: Path, tmp_path: Path) -> None:
    """Bad input tried: a phase above 100% and phases that do not end at 100% (each error beside
    its field, no rollout planned); a cancellation dismissed at the confirmation (still running)."""
    from playwright.sync_api import expect

    bundle = tmp_path / "sohoa-agent-2.1.0.bundle"
    bundle.write_bytes(b"a signed bundle, as images/bundle.py writes it" * 100)
    loaded(admin, served.url + "/admin?view=updates")
    admin.locator("#bundle-form input[type=file]").set_input_files(str(bundle))
    admin.locator("#bundle-form button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã tải lên sohoa-agent-2.1.0.bundle (5 kB).")
    row = admin.locator('#bundles tr[data-bundle="sohoa-agent-2.1.0.bundle"]')
    expect(row).to_contain_text(hashlib.sha256(bundle.read_bytes()).hexdigest())
    form = admin.locator("#rollout-form")
    expect(form.locator("select[name=bundle]")).to_have_value("sohoa-agent-2.1.0.bundle")
    expect(form.locator("input[name=version]")).to_have_value("2.1.0")
    form.locator("input[name=unit_subtree]").fill("99")

    percent = form.locator('[data-path="phases.0.percent"]')
    percent.fill("150")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#err-rollout-form-phases_0_percent")).to_have_text("Giá trị lớn hơn mức cho phép.")
    expect(admin.locator("#status")).to_have_text("Chưa lập: 1 lỗi, xem bên cạnh từng ô.")
    percent.fill("50")
    for _ in range(2):  # drop the 20% and the 100% phases: 50% alone
        admin.locator("#phases tbody tr").nth(1).locator("button").click()
    expect(admin.locator("#phases tbody tr")).to_have_count(1)
    form.locator("button[type=submit]").click()
    expect(admin.locator("#err-rollout-form-phases")).to_contain_text("end at 100")
    assert served.http.get("/api/v1/rollouts").json() == []
    admin.screenshot(path=str(shots / "rollout-wizard-errors.png"), full_page=True)

    admin.locator("#add-phase").click()
    form.locator('[data-path="phases.1.percent"]').fill("100")
    rollout_id = form.locator("input[name=rollout_id]").input_value()
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text(f"Đã lập đợt {rollout_id} cho 2 thiết bị, đã bắt đầu.")
    planned = served.http.get(f"/api/v1/rollouts/{rollout_id}").json()
    assert [(p["percent"], p["success_threshold"], p["error_threshold"]) for p in planned["phases"]] == [
        (50, 1.0, 0.1), (100, 1.0, 0.1)]
    assert planned["offer"]["version"] == "2.1.0" and planned["devices_total"] == 2
    assert planned["offer"]["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    line = admin.locator(f'#rollout-list tr[data-rollout="{rollout_id}"]')
    expect(line).to_have_attribute("data-status", "running")
    line.locator("button.pause").click()
    expect(line).to_have_attribute("data-status", "paused")
    assert served.http.get(f"/api/v1/rollouts/{rollout_id}").json()["summary"]["status"] == "paused"
    line.locator("button.resume").click()
    expect(line).to_have_attribute("data-status", "running")
    admin.once("dialog", lambda dialog: dialog.dismiss())
    line.locator("button.cancel").click()
    expect(admin.locator("#status")).to_contain_text("Đang chạy")
    assert served.http.get(f"/api/v1/rollouts/{rollout_id}").json()["summary"]["status"] == "running"
    admin.once("dialog", lambda dialog: dialog.accept())
    line.locator("button.cancel").click()
    expect(line).to_have_attribute("data-status", "cancelled")
    assert served.http.get(f"/api/v1/rollouts/{rollout_id}").json()["summary"]["status"] == "cancelled"
    admin.screenshot(path=str(shots / "rollout-cancelled.png"), full_page=True)

    # The same rollout again with its maintenance window: an impossible hour first (the error
    # beside the window's field, nothing planned, no settings stored), then 22:00-04:30, stored
    # as unit 99's layer before the rollout starts.
    def unit_layer() -> object:
        answer = served.http.get("/api/v1/settings/unit/99")
        return answer.json()["settings"] if answer.status_code == 200 else None

    layer_before, rollouts_before = unit_layer(), len(served.http.get("/api/v1/rollouts").json())
    form.locator("input[name=window_start]").fill("25:00")
    form.locator("input[name=window_end]").fill("04:30")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#err-rollout-form-window_start")).not_to_be_empty()
    expect(admin.locator("#status")).to_have_text("Chưa lập: 1 lỗi, xem bên cạnh từng ô.")
    assert unit_layer() == layer_before
    assert len(served.http.get("/api/v1/rollouts").json()) == rollouts_before
    form.locator("input[name=window_start]").fill("22:00")
    form.locator("input[name=rollout_id]").fill("cap-nhat-co-khung-gio")
    form.locator("button[type=submit]").click()
    second = "cap-nhat-co-khung-gio"
    expect(admin.locator("#status")).to_have_text(
        f"Đã lập đợt {second}, đã bắt đầu; khung giờ cài đặt của 99: 22:00–04:30.")
    layer = unit_layer()
    assert isinstance(layer, dict) and layer["maintenance_window"]["start"] == "22:00"
    assert layer["maintenance_window"]["end"] == "04:30"
    assert served.http.get(f"/api/v1/rollouts/{second}").json()["summary"]["status"] == "running"
    admin.screenshot(path=str(shots / "rollout-window.png"), full_page=True)


def test_device_arguments_update_move_and_a_device_never_connected(admin: Page, served: Served,
                                                                   shots: Path) -> None:
    """Bad input tried: a test scan of 0 pages (the error beside the field, nothing queued), a
    move cancelled at the confirmation (the unit unchanged)."""
    from playwright.sync_api import expect

    enroll_device(served.http, "kiosk-new", "99001", served.directory)
    posts = _writes(admin, "POST", "/api/v1/devices/kiosk-new/commands")
    loaded(admin, served.url + "/admin?view=device&device=kiosk-new")
    expect(admin.locator("#device-facts")).to_contain_text("Đã đăng ký, chưa kết nối")
    form = admin.locator("#command-form")
    form.locator("select[name=name]").select_option("test_scan")
    form.locator('[data-path="max_pages"]').fill("0")
    expect(admin.locator("#err-command-args-max_pages")).to_have_text("Giá trị nhỏ hơn mức cho phép.")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Chưa gửi: 1 lỗi ở tham số, xem bên cạnh từng ô.")
    assert posts == [] and served.http.get("/api/v1/devices/kiosk-new/commands").json() == []
    form.locator('[data-path="max_pages"]').fill("3")
    form.locator('[data-path="source"]').select_option('"adf"')
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text('Đã gửi lệnh "Quét thử" tới kiosk-new; trạng thái cập nhật bên dưới.')
    [queued] = served.http.get("/api/v1/devices/kiosk-new/commands").json()
    assert (queued["name"], queued["args"], queued["state"]) == ("test_scan", {"source": "adf", "max_pages": 3},
                                                                 "queued")
    served.deliver(CommandAck(device_id="kiosk-new", command_id=queued["id"], state="failed", detail="no paper"))
    failed = admin.locator(f'#device-commands tr[data-command="{queued["id"]}"]')
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed.locator(".badge")).to_have_text("Lỗi")  # the state's name, not the refusal line's text

    assert served.http.put("/api/v1/bundles/sohoa-agent-2.2.0.bundle", content=b"bundle 2.2.0").status_code == 201
    form.locator("select[name=name]").select_option("update")
    expect(admin.locator("#command-bundle-pick")).to_be_visible()
    form.locator("select[name=bundle]").select_option("sohoa-agent-2.2.0.bundle")
    expect(form.locator('[data-path="version"]')).to_have_value("2.2.0")
    form.locator('[data-path="rollout_id"]').fill("tay-kiosk-new")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_contain_text('Đã gửi lệnh "Cập nhật phần mềm"')
    update = next(c for c in served.http.get("/api/v1/devices/kiosk-new/commands").json() if c["name"] == "update")
    assert update["args"]["url"] == served.url + "/api/v1/bundles/sohoa-agent-2.2.0.bundle"
    assert update["args"]["sha256"] == hashlib.sha256(b"bundle 2.2.0").hexdigest()

    move = admin.locator("#move-form")
    expect(move.locator("input[name=unit_code]")).to_have_value("99001")
    move.locator("input[name=unit_code]").fill("99003")
    admin.once("dialog", lambda dialog: dialog.dismiss())
    move.locator("button[type=submit]").click()
    assert served.http.get("/api/v1/devices/kiosk-new").json()["unit"] == "99001"
    admin.once("dialog", lambda dialog: dialog.accept())
    move.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã chuyển kiosk-new từ đơn vị 99001 sang 99003.")
    assert served.http.get("/api/v1/devices/kiosk-new").json()["unit"] == "99003"
    assert served.http.get("/api/v1/audit", params={"action": "device.moved"}).json()[0]["detail"] == \
        "from=99001 to=99003"
    admin.screenshot(path=str(shots / "device-args-moved.png"), full_page=True)

    admin.once("dialog", lambda dialog: dialog.accept())
    admin.locator("#revoke-device").click()
    expect(admin.locator("#status")).to_have_text("Đã thu hồi kiosk-new (1 chứng chỉ).")
    expect(admin.locator("#device-body")).to_have_attribute("data-status", "revoked")


def test_setup_sheet_for_a_batch_of_sd_cards(admin: Page, served: Served, shots: Path) -> None:
    """Three single-use tokens, one card each with a QR code that decodes to that card's token;
    printed, only the sheet remains. Bad input tried: 51 cards, above the form's 50 (the browser
    refuses, nothing issued)."""
    import zxingcpp
    from PIL import Image
    from playwright.sync_api import expect

    before = {k["token_id"] for k in served.http.get("/api/v1/enrollment-tokens").json()}
    loaded(admin, served.url + "/admin")
    form = admin.locator("#sheet-form")
    form.locator("input[name=unit_code]").fill("99004")
    form.locator("input[name=count]").fill("51")
    form.locator("button[type=submit]").click()
    form.locator("input[name=count]").fill("3")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã cấp 3 mã dùng một lần cho đơn vị 99004; in phiếu bên dưới.")
    cards = admin.locator("#setup-sheet .sd-card")
    expect(cards).to_have_count(3)
    issued = [k for k in served.http.get("/api/v1/enrollment-tokens").json() if k["token_id"] not in before]
    assert len(issued) == 3 and all((k["unit_code"], k["max_devices"]) == ("99004", 1) for k in issued)
    tokens = set()
    for index in range(3):
        card = cards.nth(index)
        png = shots / f"sheet-card-{index + 1}.png"
        card.locator("svg").screenshot(path=str(png))
        [decoded] = zxingcpp.read_barcodes(Image.open(png))
        payload = json.loads(decoded.text)
        assert payload["unit_code"] == "99004" and payload["token"] == card.locator("code").first.inner_text()
        tokens.add(payload["token"])
    assert len(tokens) == 3
    admin.emulate_media(media="print")
    expect(admin.locator("#token-form")).to_be_hidden()
    expect(admin.locator("#enrollments")).to_be_hidden()
    expect(admin.locator("#sheet-printit")).to_be_hidden()
    expect(cards.first).to_be_visible()
    admin.pdf(path=str(shots / "setup-sheet.pdf"), format="A4")
    admin.screenshot(path=str(shots / "setup-sheet-print.png"), full_page=True)
    admin.emulate_media(media="screen")
    admin.locator("#sheet-hide").click()
    expect(cards).to_have_count(0)


def test_axe_finds_no_serious_violation(admin: Page, served: Served) -> None:
    """The new views with their forms drawn (the settings form with an error shown), Vietnamese
    and English; axe takes seconds a page, so three pages."""
    found = {}
    for path, ready in (("/admin?view=updates&lang=en", "#phases tbody tr"),
                        ("/admin?view=device&device=kiosk-a1", "#command-args[data-command]")):
        loaded(admin, served.url + path)
        admin.wait_for_selector(ready, state="attached")
        found[path] = axe_serious(admin)
    loaded(admin, served.url + "/admin?view=settings&scope=fleet&key=default")
    admin.locator('#settings-fields [data-path="scan.dpi"]').fill("9999")
    admin.wait_for_selector("#err-settings-fields-scan_dpi:not(:empty)")
    found["settings with an error"] = axe_serious(admin)
    assert {path: v for path, v in found.items() if v} == {}
