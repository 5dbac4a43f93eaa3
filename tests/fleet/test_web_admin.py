"""The admin page (/admin) in real headless Chromium (Debian's), served by uvicorn from the
fleet's app factory with its certificate authority: an admin issues an enrollment token through
the form (shown once with the CA pin and a QR code that decodes to it), two kiosks enroll with
it over HTTP as devices do and wait for approval, the admin accepts one and rejects the other
with a reason, then revokes the token (after a confirmation, which a first "cancel" leaves
untouched); users are created, moved to another role and unit, disabled and given a new
password; a unit tree CSV with errors is refused line by line, a good one imported, targets set;
a device's page sends collect_logs, follows its state and downloads the archive, then revokes
the device after a confirmation; the audit log shows all of it, filtered by actor, action and time. What each form
did is checked through the API, not only on the page. A viewer is told the page is for admins.
axe-core finds no serious or critical violation on any view. One fleet and one browser for the
module. Screenshots in test-artifacts/admin/."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.ingest import Incoming, Writer
from fleet.progress.units import sample_csv
from protocol.messages import CommandAck, Status, encode
from provisioning.identity import DeviceIdentity
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login_as, make_user
from tests.browser import BROWSER, axe_serious, loaded, shots_dir, signed_in
from tests.devices import enroll_device, enroll_request, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.progress.conftest import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

VIEWER, VIEWER_PASSWORD = "xem-admin-page", "viewer-password-1"

pytestmark = BROWSER


@dataclass
class Served:
    url: str
    http: httpx.Client  # the suite's province admin, through the API
    directory: Path
    app: FastAPI

    def deliver(self, message: CommandAck | Status) -> None:
        """A device's message, in through the ingest writer as the broker would bring it."""
        state = fleet_state(self.app)
        ops = state.services.operations
        assert ops is not None
        writer = Writer(state.sessions, state.metrics)
        writer.hooks.append(ops.hook)
        channel = "cmd/ack" if isinstance(message, CommandAck) else "status"
        assert writer.write([Incoming(f"sohoa/v1/{message.device_id}/{channel}", encode(message))]) == 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app (SQLite file, PKI, the sample unit tree) on a free loopback port, the suite's
    province admin and a viewer."""
    tmp = tmp_path_factory.mktemp("admin")
    app = create_app(with_pki(make_config(tmp, f"sqlite:///{tmp}/fleet.db"), tmp))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        sessions = fleet_state(app).sessions
        ensure_admin(sessions)
        make_user(sessions, name=VIEWER, password=VIEWER_PASSWORD, role="viewer", unit_code="99001")
        login_as(http, ADMIN_NAME, ADMIN_PASSWORD)
        assert http.post("/api/v1/units/import", content=sample_csv().encode(),
                         headers={"Content-Type": "text/csv"}).status_code == 200
        yield Served(url, http, tmp, app)


@pytest.fixture
def shots(artifacts: Path) -> Path:
    return shots_dir(artifacts, "admin")


@pytest.fixture
def admin(browser: Browser, served: Served) -> Iterator[Page]:
    with signed_in(browser, served.url, ADMIN_NAME, ADMIN_PASSWORD) as page:
        yield page



def _enroll(served: Served, device_id: str, token: str) -> httpx.Response:
    identity = DeviceIdentity(served.directory / "devices" / device_id, device_id)
    return served.http.post("/api/v1/enroll", content=enroll_request(identity, token, "99001"),
                            headers={"Content-Type": "application/json"})


def test_enrollment_token_issue_accept_reject_revoke(admin: Page, served: Served, shots: Path) -> None:
    """Bad input tried: a unit code the API refuses (its reason on the page, nothing issued), a
    rejection without a reason (asked for one, nothing sent), a revocation cancelled at the
    confirmation (the token stays active)."""
    import zxingcpp
    from PIL import Image
    from playwright.sync_api import expect

    loaded(admin, served.url + "/admin")
    expect(admin.locator("#tokens tbody")).to_contain_text("Không có.")
    form = admin.locator("#token-form")
    form.locator("input[name=unit_code]").fill("99 001")
    form.locator("button[type=submit]").click()  # the browser's own pattern check stops it
    assert served.http.get("/api/v1/enrollment-tokens").json() == []
    form.locator("input[name=unit_code]").fill("99001")
    form.locator("input[name=ttl_hours]").fill("100000")  # longer than enrollment.max_token_ttl_h
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_attribute("data-outcome", "failed")
    expect(admin.locator("#status")).to_contain_text("422")
    assert served.http.get("/api/v1/enrollment-tokens").json() == []
    form.locator("input[name=ttl_hours]").fill("24")
    form.locator("input[name=max_devices]").fill("3")
    form.locator("input[name=require_approval]").check()
    form.locator("button[type=submit]").click()
    expect(admin.locator("#issued")).to_be_visible()
    token = admin.locator("#issued-token").inner_text()
    [record] = served.http.get("/api/v1/enrollment-tokens").json()
    expect(admin.locator("#status")).to_have_text(f"Đã cấp mã {record['token_id']} cho đơn vị 99001.")
    assert record["require_approval"] and record["max_devices"] == 3 and record["state"] == "active"
    pin = admin.locator("#issued-pin").inner_text()
    assert len(pin) >= 43
    qr_png = shots / "token-qr.png"
    admin.locator("#issued-qr svg").screenshot(path=str(qr_png))
    [decoded] = zxingcpp.read_barcodes(Image.open(qr_png))
    assert json.loads(decoded.text) == {"enroll_url": admin.locator("#issued-url").inner_text(),
                                        "unit_code": "99001", "token": token, "ca_pin": pin}
    admin.screenshot(path=str(shots / "token-issued.png"), full_page=True)

    # Two kiosks enroll with it and wait for a decision.
    for device in ("kiosk-ok", "kiosk-no"):
        assert _enroll(served, device, token).status_code == 202
    loaded(admin, served.url + "/admin")
    expect(admin.locator("#issued")).to_be_hidden()  # shown once: not after a reload
    pending = admin.locator('#enrollments tr[data-state="pending"]')
    expect(pending).to_have_count(2)
    admin.locator('#enrollments tr[data-device="kiosk-ok"] button.accept').click()
    expect(admin.locator("#status")).to_contain_text("Đã chấp nhận kiosk-ok")
    expect(admin.locator('#enrollments tr[data-device="kiosk-ok"]')).to_have_attribute("data-state", "accepted")
    assert _enroll(served, "kiosk-ok", token).status_code == 200  # its next poll gets the certificate
    row = admin.locator('#enrollments tr[data-device="kiosk-no"]')
    row.locator("button.reject").click()
    expect(admin.locator("#status")).to_have_text("Hãy ghi lý do từ chối.")
    expect(row).to_have_attribute("data-state", "pending")
    row.locator("input.reason").fill("không có trong danh sách lắp đặt")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.reject").click()
    expect(admin.locator("#status")).to_contain_text("Đã từ chối kiosk-no")
    expect(row).to_have_attribute("data-state", "rejected")
    expect(row).to_contain_text("không có trong danh sách lắp đặt")
    assert _enroll(served, "kiosk-no", token).status_code == 403
    admin.screenshot(path=str(shots / "enrollments-decided.png"), full_page=True)

    # Revoke: a cancelled confirmation does nothing; a confirmed one revokes.
    token_row = admin.locator(f'#tokens tr[data-token="{record["token_id"]}"]')
    admin.once("dialog", lambda dialog: dialog.dismiss())
    token_row.locator("button").click()
    expect(token_row).to_have_attribute("data-state", "active")
    admin.once("dialog", lambda dialog: dialog.accept())
    token_row.locator("button").click()
    expect(token_row).to_have_attribute("data-state", "revoked")
    expect(admin.locator("#status")).to_have_text(f"Đã thu hồi mã {record['token_id']}.")
    assert served.http.get("/api/v1/enrollment-tokens").json()[0]["state"] == "revoked"
    admin.locator("#lang").click()
    expect(token_row.locator(".badge")).to_have_text("Revoked")
    expect(admin.locator("#status")).to_have_text(f"Token {record['token_id']} revoked.")
    admin.screenshot(path=str(shots / "token-revoked-en.png"), full_page=True)


def _user(served: Served, name: str) -> dict[str, object]:
    [user] = [u for u in served.http.get("/api/v1/users").json() if u["name"] == name]
    assert isinstance(user, dict)
    return user


def test_users_create_change_disable_reset(admin: Page, served: Served, shots: Path) -> None:
    """Bad input tried: a password shorter than the fleet allows (the API's reason shown, nobody
    created), a unit admin without a unit (refused, nothing changed)."""
    from playwright.sync_api import expect

    loaded(admin, served.url + "/admin?view=users")
    form = admin.locator("#user-form")
    form.locator("input[name=name]").fill("can-bo-01")
    form.locator("input[name=password]").fill("short")
    form.locator("select[name=role]").select_option("viewer")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_attribute("data-outcome", "failed")
    assert not [u for u in served.http.get("/api/v1/users").json() if u["name"] == "can-bo-01"]
    form.locator("input[name=password]").fill("mat-khau-dai-1")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã tạo người dùng can-bo-01.")
    row = admin.locator('#users tr[data-user="can-bo-01"]')
    expect(row).to_be_visible()
    assert _user(served, "can-bo-01")["role"] == "viewer"

    row.locator("select.role").select_option("unit_admin")
    row.locator("button.save").click()
    expect(admin.locator("#status")).to_have_attribute("data-outcome", "failed")
    assert _user(served, "can-bo-01")["role"] == "viewer"
    row.locator("select.role").select_option("unit_admin")
    row.locator("input.unit").fill("99001")
    row.locator("button.save").click()
    expect(admin.locator("#status")).to_contain_text("Đã lưu can-bo-01")
    changed = _user(served, "can-bo-01")
    assert (changed["role"], changed["unit_code"]) == ("unit_admin", "99001")

    row.locator("input.password").fill("mat-khau-moi-2")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.reset").click()
    expect(admin.locator("#status")).to_contain_text("Mật khẩu")
    with httpx.Client(base_url=served.url) as other:
        assert other.post("/api/v1/auth/login", json={"name": "can-bo-01", "password": "mat-khau-moi-2"}) \
            .status_code == 200
    admin.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.disable").click()
    expect(row).to_have_attribute("data-disabled", "1")
    assert _user(served, "can-bo-01")["disabled"] is True
    with httpx.Client(base_url=served.url) as other:
        assert other.post("/api/v1/auth/login", json={"name": "can-bo-01", "password": "mat-khau-moi-2"}) \
            .status_code == 401
    admin.screenshot(path=str(shots / "users.png"), full_page=True)


def test_units_import_with_errors_by_line_and_targets(admin: Page, served: Served, shots: Path,
                                                       tmp_path: Path) -> None:
    """Bad input tried: a CSV with an unknown tier on line 2 and a parent that does not exist on
    line 3 (both shown by line, nothing imported, the good line 4 included), a target above 100%
    (the browser refuses it, nothing sent)."""
    from playwright.sync_api import expect

    header = "code,name,tier,parent_code,valid_from,valid_to\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "99901,[THỬ] Xã Một,hamlet,99,2025-07-01,\n"
                   "99902,[THỬ] Xã Hai,commune,77,2025-07-01,\n"
                   "99903,[THỬ] Xã Ba,commune,99,2025-07-01,\n", encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text(header + "99903,[THỬ] Xã Ba,commune,99,2025-07-01,\n", encoding="utf-8")
    before = len(served.http.get("/api/v1/units").json())

    def targets_set() -> set[tuple[object, ...]]:
        return {(x["tier"], x["unit_code"], x["period_from"], x["rate"])
                for x in served.http.get("/api/v1/progress/targets").json()}

    targets_before = targets_set()

    loaded(admin, served.url + "/admin?view=units")
    expect(admin.locator("#units tbody tr[data-code]")).to_have_count(before)
    form = admin.locator("#units-form")
    form.locator("input[type=file]").set_input_files(str(bad))
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Không nhập gì: 2 lỗi, theo dòng bên dưới.")
    expect(admin.locator("#problems tbody tr")).to_have_count(2)
    expect(admin.locator('#problems tr[data-line="2"]')).to_contain_text("hamlet")
    expect(admin.locator('#problems tr[data-line="3"]')).to_contain_text("77")
    assert len(served.http.get("/api/v1/units").json()) == before
    admin.screenshot(path=str(shots / "units-import-errors.png"), full_page=True)
    form.locator("input[type=file]").set_input_files(str(good))
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã nhập: 1 đơn vị mới, 0 cập nhật, 0 không đổi.")
    expect(admin.locator("#problems")).to_be_hidden()
    expect(admin.locator('#units tr[data-code="99903"]')).to_have_count(1)

    targets = admin.locator("#target-form")
    targets.locator("input[name=unit_code]").fill("99903")
    targets.locator("input[name=period_from]").fill("2026-12")
    targets.locator("input[name=rate]").fill("150")
    targets.locator("button[type=submit]").click()
    assert targets_set() == targets_before
    targets.locator("input[name=rate]").fill("85")
    targets.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã đặt chỉ tiêu 99903 từ 2026-12: 85%.")
    targets.locator("input[name=unit_code]").fill("")
    targets.locator("select[name=tier]").select_option("commune")
    targets.locator("input[name=rate]").fill("70")
    targets.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã đặt chỉ tiêu Xã từ 2026-12: 70%.")
    assert targets_set() - targets_before == {(None, "99903", "2026-12", 0.85), ("commune", None, "2026-12", 0.7)}
    expect(admin.locator('#targets tr[data-scope="99903"]')).to_contain_text("85%")
    admin.screenshot(path=str(shots / "units-targets.png"), full_page=True)


def test_received_dossiers_import_with_errors_by_line(admin: Page, served: Served, shots: Path,
                                                     tmp_path: Path) -> None:
    """Bad input tried: a received list with a unit that does not exist (line 3) and a due date
    before the received date (line 4): both shown by line, nothing imported; then the good rows,
    one of them given twice, are imported, and the registry lists them; importing the same file
    again changes nothing."""
    from playwright.sync_api import expect

    header = "code,procedure_code,unit_code,received_date,due_date\n"
    first = "000.00.99.H99-261201-0001,1.001,99,2026-12-01,2026-12-05\n"
    good_rows = first + "000.00.99.H99-261201-0002,1.002,99,2026-12-01,\n" + first
    bad = tmp_path / "received-bad.csv"
    bad.write_text(header + first + "000.00.99.H99-261201-0003,1.001,77777,2026-12-01,\n"
                   "000.00.99.H99-261201-0004,1.001,99,2026-12-03,2026-12-02\n", encoding="utf-8")
    good = tmp_path / "received.csv"
    good.write_text(header + good_rows, encoding="utf-8")

    def registered() -> set[str]:
        answer = served.http.get("/api/v1/dossiers", params={"code": "000.00.99.H99-261201"}).json()
        return {d["code"] for d in answer}

    assert registered() == set()
    loaded(admin, served.url + "/admin?view=units")
    form = admin.locator("#received-form")
    form.locator("input[type=file]").set_input_files(str(bad))
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Không nhập gì: 2 lỗi, theo dòng bên dưới.")
    expect(admin.locator('#problems tr[data-line="3"]')).to_contain_text("77777")
    expect(admin.locator('#problems tr[data-line="4"]')).to_contain_text("before received_date")
    assert registered() == set()
    admin.screenshot(path=str(shots / "received-import-errors.png"), full_page=True)
    form.locator("input[type=file]").set_input_files(str(good))
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã nhập hồ sơ: 2 mới, 0 cập nhật, 0 không đổi, 1 dòng lặp lại.")
    expect(admin.locator("#problems")).to_be_hidden()
    assert registered() == {"000.00.99.H99-261201-0001", "000.00.99.H99-261201-0002"}
    form.locator("input[type=file]").set_input_files(str(good))
    form.locator("button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text("Đã nhập hồ sơ: 0 mới, 0 cập nhật, 2 không đổi, 1 dòng lặp lại.")


def _logs_archive(data: bytes = b"agent started\nscanner ready\n") -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("logs/agent.log")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def test_device_command_followed_logs_downloaded_then_revoked(admin: Page, served: Served, shots: Path) -> None:
    """collect_logs sent from the page; the device's answers (delivered, then succeeded with the
    archive's hash, after uploading it) show up without a reload and the archive downloads
    byte for byte. Bad input tried: a command the device rejects (its reason shown), a
    revocation cancelled at the confirmation (the device keeps its certificate)."""
    from playwright.sync_api import expect

    device = enroll_device(served.http, "kiosk-dev", "99001", served.directory)
    served.deliver(Status(device_id="kiosk-dev", state="online", unit="99001"))
    loaded(admin, served.url + "/admin?view=device&device=kiosk-dev")
    expect(admin.locator("#device-commands tbody")).to_have_text("Không có.")
    admin.locator("#command-form select[name=name]").select_option("collect_logs")
    admin.locator("#command-form button[type=submit]").click()
    expect(admin.locator("#status")).to_have_text(
        'Đã gửi lệnh "Thu nhật ký" tới kiosk-dev; trạng thái cập nhật bên dưới.')
    [command] = served.http.get("/api/v1/devices/kiosk-dev/commands").json()
    assert command["name"] == "collect_logs"
    row = admin.locator(f'#device-commands tr[data-command="{command["id"]}"]')
    served.deliver(CommandAck(device_id="kiosk-dev", command_id=command["id"], state="delivered"))
    expect(row).to_have_attribute("data-state", "delivered")
    archive = _logs_archive()
    sha256 = hashlib.sha256(archive).hexdigest()
    assert device.put_file(served.http, archive, content_type="application/gzip").status_code in (200, 201)
    served.deliver(CommandAck(device_id="kiosk-dev", command_id=command["id"], state="succeeded",
                                  detail=f"logs sha256={sha256} size={len(archive)}"))
    expect(row).to_have_attribute("data-state", "succeeded")
    with admin.expect_download() as download:
        row.locator("a.logs").click()
    assert Path(download.value.path()).read_bytes() == archive
    admin.screenshot(path=str(shots / "device-logs.png"), full_page=True)

    admin.locator("#command-form select[name=name]").select_option("reboot")
    admin.locator("#command-form button[type=submit]").click()
    expect(admin.locator("#status")).to_contain_text('Đã gửi lệnh "Khởi động lại máy"')
    reboot = next(c for c in served.http.get("/api/v1/devices/kiosk-dev/commands").json() if c["name"] == "reboot")
    served.deliver(CommandAck(device_id="kiosk-dev", command_id=reboot["id"], state="rejected",
                                  detail="a dossier is open"))
    reboot_row = admin.locator(f'#device-commands tr[data-command="{reboot["id"]}"]')
    expect(reboot_row).to_have_attribute("data-state", "rejected")
    expect(reboot_row).to_contain_text("a dossier is open")

    admin.once("dialog", lambda dialog: dialog.dismiss())
    admin.locator("#revoke-device").click()
    assert served.http.get("/api/v1/devices/kiosk-dev").json()["status"] != "revoked"
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.locator("#revoke-device").click()
    expect(admin.locator("#status")).to_contain_text("Đã thu hồi kiosk-dev")
    expect(admin.locator("#device-body")).to_have_attribute("data-status", "revoked")
    assert served.http.get("/api/v1/devices/kiosk-dev").json()["status"] == "revoked"
    with httpx.Client(base_url=served.url, timeout=30) as bare:  # the API refuses the device at once
        refused = device.put_file(bare, _logs_archive(b"after the revocation\n"), content_type="application/gzip")
    assert refused.status_code == 401, refused.text
    admin.locator("#lang").click()
    expect(admin.locator("#device-facts")).to_contain_text("Revoked")
    admin.screenshot(path=str(shots / "device-revoked-en.png"), full_page=True)


def test_audit_log_filters(admin: Page, served: Served, shots: Path) -> None:
    """After the two tests above (run alone, it makes its own entry). Bad input tried: a time
    range in the future (nothing shown, said so)."""
    from playwright.sync_api import expect

    assert served.http.post("/api/v1/enrollment-tokens", json={"unit_code": "99002"}).status_code == 201
    loaded(admin, served.url + "/admin?view=audit")
    expect(admin.locator("#audit tbody tr").first).to_be_visible()
    form = admin.locator("#audit-form")
    form.locator("input[name=actor]").fill(ADMIN_NAME)
    form.locator("input[name=action]").fill("token.*")
    form.locator("button[type=submit]").click()
    expected = [e["action"] for e in served.http.get(
        "/api/v1/audit", params={"actor": ADMIN_NAME, "action": "token.*"}).json()]
    assert expected and all(a.startswith("token.") for a in expected)
    rows = admin.locator("#audit tbody tr[data-action]")
    expect(rows).to_have_count(len(expected))
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.action)") == expected
    admin.screenshot(path=str(shots / "audit-filtered.png"), full_page=True)
    form.locator("input[name=since]").fill("2099-01-01T00:00")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#audit tbody")).to_have_text("Không có.")
    expect(admin.locator("#audit-caption")).to_have_text("0 mục")


def test_a_viewer_is_told_the_page_is_for_admins(browser: Browser, served: Served) -> None:
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    try:
        browser_login(page, served.url, VIEWER, VIEWER_PASSWORD)
        page.goto(served.url + "/admin?lang=en")
        expect(page.locator("#forbidden")).to_have_text("This page is for administrators.")
    finally:
        page.context.close()


def test_axe_finds_no_serious_violation(admin: Page, served: Served) -> None:
    """Every view, Vietnamese and English, with data shown and a status line."""
    found = {}
    for path in ("/admin", "/admin?view=users", "/admin?view=units", "/admin?view=audit",
                 "/admin?view=device&device=kiosk-dev", "/admin?view=users&lang=en"):
        loaded(admin, served.url + path)
        found[path] = axe_serious(admin)
    loaded(admin, served.url + "/admin")
    admin.locator("#token-form input[name=unit_code]").fill("99003")
    admin.locator("#token-form button[type=submit]").click()
    admin.wait_for_selector("#issued svg")
    found["/admin (token issued)"] = axe_serious(admin)
    assert {path: v for path, v in found.items() if v} == {}
