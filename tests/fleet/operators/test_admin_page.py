"""The admin page's counter operators view (/admin?view=operators) in real headless Chromium
(Debian's), served by uvicorn from the fleet's app factory: an admin adds a postal staff member
with a PIN and a staff card (the card's token and QR shown once; the QR decodes to the token the
stored hash checks), a unit's clerk with a PIN only, lists them per unit, sets a new PIN, draws a
new card (the old one stops matching) and retires one after a confirmation (a first "cancel"
leaves them active). Bad input is refused on the page without a call (neither PIN nor card, a
PIN with letters); a unit admin is refused another unit by the API, its reason on the page; a
viewer is told the page is for admins. What each form did is checked in the database and the
audit log (no PIN or token in it). axe-core finds no serious or critical violation. One fleet
and one browser for the module. Screenshots in test-artifacts/admin-operators/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.operators.models import CounterOperator
from fleet.progress.units import sample_csv
from protocol.secrets import check_secret
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login_as, make_user
from tests.browser import BROWSER, axe_serious
from tests.fleet.conftest import make_config
from tests.fleet.progress.conftest import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

UNIT_ADMIN, VIEWER, PASSWORD = "qt-xa-99003", "xem-99003", "operators-page-pw-1"
PIN, NEW_PIN = "24681357", "97531864"

pytestmark = BROWSER


@dataclass
class Served:
    url: str
    http: httpx.Client  # the suite's province admin, through the API
    app: FastAPI

    def row(self, label: str) -> CounterOperator:
        with fleet_state(self.app).sessions() as session:
            found = session.scalar(select(CounterOperator).where(CounterOperator.label == label))
            assert found is not None
            session.expunge(found)
            return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("admin-operators")
    app = create_app(make_config(tmp, f"sqlite:///{tmp}/fleet.db"))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        sessions = fleet_state(app).sessions
        ensure_admin(sessions)
        make_user(sessions, name=UNIT_ADMIN, password=PASSWORD, role="unit_admin", unit_code="99003")
        make_user(sessions, name=VIEWER, password=PASSWORD, role="viewer", unit_code="99003")
        login_as(http, ADMIN_NAME, ADMIN_PASSWORD)
        assert http.post("/api/v1/units/import", content=sample_csv().encode(),
                         headers={"Content-Type": "text/csv"}).status_code == 200
        yield Served(url, http, app)


def _page(browser: Browser, served: Served, name: str, password: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    browser_login(page, served.url, name, password)
    page.goto(served.url + "/admin?view=operators")
    page.wait_for_selector("body[data-loaded]", state="attached", timeout=15_000)
    return page


def _decode_qr(page: Page, out: Path) -> str:
    import zxingcpp
    from PIL import Image

    page.locator("#op-card-qr svg").screenshot(path=str(out))
    [decoded] = zxingcpp.read_barcodes(Image.open(out))
    return str(decoded.text)


def test_operators_added_listed_changed_and_retired(browser: Browser, served: Served, artifacts: Path) -> None:
    from playwright.sync_api import expect

    shots = artifacts / "admin-operators"
    shots.mkdir(parents=True, exist_ok=True)
    page = _page(browser, served, ADMIN_NAME, ADMIN_PASSWORD)
    try:
        expect(page.locator('#views a[data-view="operators"]')).to_have_text("Cán bộ số hóa")
        expect(page.locator("#operators tbody")).to_contain_text("Không có.")
        form = page.locator("#operator-form")
        form.locator("input[name=unit_code]").fill("99001")
        form.locator("select[name=kind]").select_option("postal_staff")
        form.locator("input[name=label]").fill("BĐ-07")
        form.locator("button[type=submit]").click()  # neither PIN nor card: said, nothing sent
        expect(page.locator("#status")).to_have_text("Cán bộ cần mã PIN hoặc thẻ.")
        form.locator("input[name=pin]").fill("12ab5678")
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_text("Mã PIN gồm 6 đến 12 chữ số.")
        expect(form.locator("input[name=pin]")).to_have_value("")  # the PIN left the field
        assert served.http.get("/api/v1/operators").json() == []

        form.locator("input[name=pin]").fill(PIN)
        form.locator("input[name=card]").check()
        form.locator("button[type=submit]").click()
        expect(page.locator("#op-card")).to_be_visible()
        token = page.locator("#op-card-token").inner_text()
        postal = served.row("BĐ-07")
        expect(page.locator("#status")).to_have_text(
            f"Đã thêm cán bộ BĐ-07 ({postal.id}); các máy của đơn vị sẽ nhận danh sách mới.")
        assert postal.kind == "postal_staff" and postal.unit_code == "99001"
        assert postal.pin_hash and check_secret(PIN, postal.pin_hash)
        assert postal.card_hash and check_secret(token, postal.card_hash)
        assert _decode_qr(page, shots / "card-qr.png") == token  # what the device's camera reads
        assert axe_serious(page) == []
        page.screenshot(path=str(shots / "card-issued.png"), full_page=True)
        page.locator("#op-card-hide").click()
        expect(page.locator("#op-card")).to_be_hidden()
        expect(page.locator("#op-card-token")).to_have_text("")

        form.locator("input[name=unit_code]").fill("99003")
        form.locator("input[name=label]").fill("CB-03")
        form.locator("input[name=pin]").fill(PIN)
        form.locator("button[type=submit]").click()
        expect(page.locator("#operators tbody tr[data-operator]")).to_have_count(2)
        expect(page.locator("#op-card")).to_be_hidden()  # no card asked, none shown

        # One unit's list.
        page.locator("#operator-filter input[name=unit]").fill("99001")
        page.locator("#operator-filter button[type=submit]").click()
        expect(page.locator("#operators tbody tr[data-operator]")).to_have_count(1)
        row = page.locator(f'#operators tr[data-operator="{postal.id}"]')
        expect(row).to_contain_text("Nhân viên bưu điện")

        # A new PIN, a new card, retire.
        row.locator("input.pin").fill(NEW_PIN)
        row.locator("button.set-pin").click()
        expect(page.locator("#status")).to_have_text(
            "Đã lưu BĐ-07: mã PIN mới; các máy của đơn vị sẽ nhận danh sách mới.")
        changed = served.row("BĐ-07")
        assert changed.pin_hash and check_secret(NEW_PIN, changed.pin_hash) and not check_secret(PIN, changed.pin_hash)
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.new-card").click()
        expect(page.locator("#op-card")).to_be_visible()
        new_token = page.locator("#op-card-token").inner_text()
        changed = served.row("BĐ-07")
        assert new_token != token and changed.card_hash
        assert check_secret(new_token, changed.card_hash) and not check_secret(token, changed.card_hash)
        page.once("dialog", lambda dialog: dialog.dismiss())
        row.locator("button.retire").click()
        expect(row).to_have_attribute("data-active", "1")
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.retire").click()
        expect(row).to_have_attribute("data-active", "0")
        expect(row.locator(".badge")).to_have_text("Đã ngừng")
        assert served.row("BĐ-07").active is False
        page.locator("#lang").click()
        expect(row.locator(".badge")).to_have_text("Retired")
        expect(row.locator("button.restore")).to_have_text("Bring back")
        page.screenshot(path=str(shots / "operators-en.png"), full_page=True)

        audit = served.http.get("/api/v1/audit", params={"action": "operator.*"}).json()
        assert [e["action"] for e in audit].count("operator.create") == 2
        assert {"pin", "card", "retired"} <= {e.get("detail") for e in audit}
        text = str(audit)
        assert PIN not in text and NEW_PIN not in text and token not in text and new_token not in text
    finally:
        page.context.close()


def test_a_unit_admin_is_kept_to_their_units_and_a_viewer_out(browser: Browser, served: Served) -> None:
    from playwright.sync_api import expect

    page = _page(browser, served, UNIT_ADMIN, PASSWORD)
    try:
        form = page.locator("#operator-form")
        form.locator("input[name=unit_code]").fill("99004")
        form.locator("input[name=label]").fill("CB-X")
        form.locator("input[name=pin]").fill(PIN)
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_attribute("data-outcome", "failed")
        expect(page.locator("#status")).to_contain_text("403")
        with fleet_state(served.app).sessions() as session:
            assert session.scalar(select(CounterOperator).where(CounterOperator.label == "CB-X")) is None
        page.locator("#operator-filter button[type=submit]").click()
        labels = page.locator("#operators tbody tr[data-operator]").evaluate_all(
            "rows => rows.map(r => r.dataset.label)")
        assert "BĐ-07" not in labels  # another unit's operator is not listed
    finally:
        page.context.close()
    page = _page(browser, served, VIEWER, PASSWORD)
    try:
        expect(page.locator("#forbidden")).to_have_text("Trang này dành cho quản trị viên.")
    finally:
        page.context.close()
