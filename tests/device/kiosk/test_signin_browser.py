"""Staff sign-in in real headless Chromium (Debian's, driven by Playwright): the start screen's
"Cán bộ đăng nhập", the PIN form, a wrong PIN's message, the lock after five with its minutes in
Vietnamese (the form's button disabled), signing in once the lock is over, the bar naming the
operator id and kind, and signing out. axe-core checks the screens; screenshots go to
test-artifacts/kiosk-signin/."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from device.kiosk.staff import StaffDesk
from device.operators.book import OperatorBook, StaffOperator
from device.operators.signin import SignIn
from protocol.secrets import hash_secret
from tests.browser import axe_serious, chromium, needs_chromium

pytestmark = pytest.mark.browser

PIN = "24681012"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@needs_chromium
def test_sign_in_lock_and_sign_out_on_the_screen(tmp_path: Path, artifacts: Path) -> None:
    from playwright.sync_api import expect

    clock = Clock()
    book = OperatorBook(tmp_path / "operators.json")
    book.replace([StaffOperator("op-9c0ffee123", "unit_staff", pin_hash=hash_secret(PIN))], version=1)
    desk = StaffDesk(SignIn(book, tmp_path / "signin.json", clock=clock), clock=clock)
    session = DossierSession(pdf_builder=None)
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session, staff=desk)).start()
    shots = artifacts / "kiosk-signin"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1024})
            page.goto(server.url)
            page.get_by_role("button", name="Cán bộ đăng nhập").click()
            expect(page.get_by_role("heading", name="Cán bộ đăng nhập")).to_be_visible()
            expect(page.get_by_label("Mã PIN")).to_have_attribute("type", "password")

            page.get_by_label("Mã cán bộ").fill("op-9c0ffee123")
            for n in range(5):
                page.get_by_label("Mã PIN").fill("00000000")
                with page.expect_response(lambda r: r.url.endswith("/api/signin")):
                    page.get_by_role("button", name="Đăng nhập").click()
                if n < 4:
                    expect(page.locator("#notice")).to_have_text(
                        f"Mã cán bộ hoặc mã PIN không đúng, vui lòng nhập lại (còn {4 - n} lần thử "
                        "trước khi tạm khóa)")
                    expect(page.get_by_label("Mã PIN")).to_have_value("")  # the PIN left the screen
            lock = page.locator("#lock-text")
            expect(lock).to_have_text("Đăng nhập tạm khóa do nhập sai quá nhiều lần, vui lòng thử lại sau 5 phút")
            expect(page.get_by_role("button", name="Đăng nhập")).to_be_disabled()
            expect(page.locator("#notice")).to_be_empty()  # said once, in the lock's panel
            assert axe_serious(page) == []
            page.screenshot(path=shots / "01-locked.png")

            clock.now += 301  # the lock is over: the next poll says so
            expect(lock).to_be_hidden()
            page.get_by_label("Mã cán bộ").fill("OP-9C0FFEE123")  # as an on-screen keyboard's capitals
            page.get_by_label("Mã PIN").fill(PIN)
            page.get_by_role("button", name="Đăng nhập").click()
            expect(page.get_by_role("heading", name="Xin chào")).to_be_visible()
            expect(page.locator("#staff-who")).to_have_text("Cán bộ op-9c0ffee123 đang làm việc (cán bộ đơn vị)")
            expect(page.get_by_role("button", name="Cán bộ đăng nhập")).to_be_hidden()
            assert desk.operator().id == "op-9c0ffee123"
            assert axe_serious(page) == []
            page.screenshot(path=shots / "02-signed-in.png")

            page.get_by_role("button", name="Đăng xuất").click()
            expect(page.locator("#staff-bar")).to_be_hidden()
            expect(page.get_by_role("button", name="Cán bộ đăng nhập")).to_be_visible()
            assert desk.operator().kind == "citizen"

            # a dossier open: the header's sign-in says why not now and how to hand over
            page.get_by_role("button", name="Bắt đầu").click()
            page.get_by_label("Nhập mã hồ sơ").fill("000.00.12.H10-260101-0001")
            page.get_by_label("Nhập mã hồ sơ").press("Enter")
            session.wait_for_state("open", timeout=10)
            page.get_by_role("button", name="Cán bộ đăng nhập").click()
            expect(page.locator("#notice")).to_have_text(
                "Đang có hồ sơ mở, hồ sơ được ghi cho cán bộ đã mở nó. Bấm “Hoàn tất” để gửi hồ sơ "
                "(hoặc “Hủy hồ sơ”), rồi cán bộ khác đăng nhập")
            assert session.state == "open" and desk.operator().kind == "citizen"
            assert axe_serious(page) == []
            page.screenshot(path=shots / "03-dossier-open.png")
    finally:
        server.close()
        session.close()
