"""The seven admin pages (/, /fleet, /progress, /dossiers, /deliveries, /operations, /admin) in
real headless Chromium (Debian's), served by uvicorn from the fleet's app factory over the
progress tests' data set plus an enrolled
kiosk whose certificates were revoked: the shared navigation bar (/static/nav.js) on each page
links to the others, shows who is signed in with their role, follows the page's language and
logs out (the session ends: the API answers 401 and the pages send to /login); /fleet shows the
revoked kiosk as revoked; axe-core finds no serious or critical violation on any page (nor on
/login). One browser for the module. Screenshots in test-artifacts/nav/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.config import FleetConfig, HttpConfig
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login, make_user
from tests.browser import BROWSER, axe_serious, shots_dir
from tests.devices import enroll_device, with_pki
from tests.fleet.alerts.conftest import Clock, online, send
from tests.fleet.conftest import make_config, state_of
from tests.fleet.progress.conftest import NOW, fill, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PAGES = {"home": "/", "fleet": "/fleet", "progress": "/progress", "dossiers": "/dossiers", "deliveries": "/deliveries",
         "operations": "/operations", "admin": "/admin"}
VIEWER, VIEWER_PASSWORD = "xem-99001", "viewer-password-1"

pytestmark = BROWSER


@dataclass
class Served:
    url: str
    config: FleetConfig


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app (SQLite file, PKI, clock at the progress data's NOW, pages refreshing every
    second) on a free loopback port: units, dossiers, pages and devices, kiosk-r enrolled in
    99001 and revoked, the suite's province admin and a viewer of 99001."""
    tmp = tmp_path_factory.mktemp("nav")
    config = with_pki(make_config(tmp, f"sqlite:///{tmp}/fleet.db"), tmp).model_copy(
        update={"http": HttpConfig(page_refresh_s=1.0)})
    clock = Clock(NOW)
    with TestClient(create_app(config, clock=clock)) as client:
        login(client)
        sessions = state_of(client).sessions
        ensure_admin(sessions)
        make_user(sessions, name=VIEWER, password=VIEWER_PASSWORD, role="viewer", unit_code="99001")
        fill(client)
        enroll_device(client, "kiosk-r", "99001", tmp, clock=clock)
        send(client, online("kiosk-r", NOW), NOW)
        assert client.post("/api/v1/devices/kiosk-r/revoke").status_code == 200
    with serve(create_app(config, clock=clock)) as url:
        yield Served(url, config)


@pytest.fixture
def shots(artifacts: Path) -> Path:
    return shots_dir(artifacts, "nav")


def _signed_in(browser: Browser, served: Served, name: str, password: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    browser_login(page, served.url, name, password)
    return page


def _session_cookie(page: Page, served: Served) -> str:
    """The session token the browser holds for the fleet."""
    [cookie] = [c for c in page.context.cookies(served.url) if c.get("name") == "sohoa_session"]
    return str(cookie["value"])


def _ready(page: Page) -> None:
    """The nav has heard who is signed in."""
    page.wait_for_selector("body[data-nav-ready='1']", timeout=15_000)


def test_nav_reaches_every_page_and_shows_the_user(browser: Browser, served: Served, shots: Path) -> None:
    """From each page the bar links to all seven (the current one marked), shows the admin and
    the role; clicking goes there. Bad input tried: the page's own language toggle (the bar
    follows it, and its links carry ?lang=en to the next page)."""
    from playwright.sync_api import expect

    page = _signed_in(browser, served, ADMIN_NAME, ADMIN_PASSWORD)
    try:
        order = list(PAGES)
        for i, key in enumerate(order):
            page.goto(served.url + PAGES[key])
            _ready(page)
            bar = page.locator("#sohoa-nav")
            expect(bar.locator("#sohoa-nav-user")).to_have_text(f"{ADMIN_NAME} · Quản trị tỉnh")
            expect(bar.locator("#sohoa-logout")).to_have_text("Đăng xuất")
            links = bar.locator("nav a")
            assert [links.nth(n).get_attribute("href") for n in range(links.count())] == list(PAGES.values())
            expect(bar.locator("a[aria-current=page]")).to_have_attribute("data-nav", key)
            assert page.locator("#sohoa-nav").count() == 1  # one bar, not one per refresh
            page.screenshot(path=str(shots / f"nav-{key}.png"))
            target = order[(i + 1) % len(order)]
            bar.locator(f"a[data-nav={target}]").click()
            expect(page).to_have_url(served.url + PAGES[target])

        page.goto(served.url + "/fleet")
        _ready(page)
        page.locator("#lang").click()  # the page's own toggle
        ops = page.locator("#sohoa-nav a[data-nav=operations]")
        expect(ops).to_have_text("Operations")
        expect(page.locator("#sohoa-nav-user")).to_have_text(f"{ADMIN_NAME} · Province admin")
        ops.click()
        expect(page).to_have_url(served.url + "/operations?lang=en")
        expect(page.locator("#lang")).to_have_text("Tiếng Việt")  # the operations page in English
        expect(page.locator("#sohoa-nav a[data-nav=progress]")).to_have_text("Digitization progress")
        page.goto(served.url + "/progress")  # its toggle does not touch the URL: the bar follows the page
        _ready(page)
        expect(page.locator("#sohoa-nav a[data-nav=fleet]")).to_have_text("Thiết bị")
        page.locator("#lang").click()
        expect(page.locator("#sohoa-nav a[data-nav=fleet]")).to_have_text("Devices")
        expect(page.locator("#sohoa-nav a[data-nav=fleet]")).to_have_attribute("href", "/fleet?lang=en")
        page.screenshot(path=str(shots / "nav-progress-en.png"))
    finally:
        page.context.close()


def test_nav_shows_a_viewer_and_their_unit(browser: Browser, served: Served) -> None:
    """A viewer of 99001: role and unit in the bar (Vietnamese, then English)."""
    from playwright.sync_api import expect

    page = _signed_in(browser, served, VIEWER, VIEWER_PASSWORD)
    try:
        page.goto(served.url + "/fleet")
        _ready(page)
        expect(page.locator("#sohoa-nav-user")).to_have_text(f"{VIEWER} · Chỉ xem (đơn vị 99001)")
        expect(page.locator("#sohoa-nav-user")).to_have_attribute("data-role", "viewer")
        page.locator("#lang").click()
        expect(page.locator("#sohoa-nav-user")).to_have_text(f"{VIEWER} · Viewer (unit 99001)")
    finally:
        page.context.close()


def test_fleet_shows_a_revoked_device_as_revoked(browser: Browser, served: Served, shots: Path) -> None:
    """kiosk-r said 'online' and was then revoked: /fleet says revoked (not online, not
    offline), counts it apart, and its own page too; / says the same."""
    from playwright.sync_api import expect

    page = _signed_in(browser, served, ADMIN_NAME, ADMIN_PASSWORD)
    try:
        page.goto(served.url + "/fleet")
        row = page.locator('#devices tr[data-device="kiosk-r"]')
        expect(row).to_have_attribute("data-revoked", "1")
        expect(row.locator("span.revoked")).to_have_text("Đã thu hồi")
        expect(row).not_to_contain_text("Trực tuyến")
        expect(row).not_to_contain_text("Mất kết nối")
        expect(page.locator("#sum-n_revoked b")).to_have_text("1")
        page.screenshot(path=str(shots / "fleet-revoked.png"), full_page=True)
        page.locator("#lang").click()
        expect(row.locator("span.revoked")).to_have_text("Revoked")
        page.goto(served.url + "/fleet?device=kiosk-r")
        expect(page.locator('#devices tr[data-device="kiosk-r"] span.revoked')).to_have_text("Đã thu hồi")
        page.goto(served.url + "/")
        expect(page.locator('#devices tr[data-device="kiosk-r"]')).to_contain_text("Đã thu hồi")
    finally:
        page.context.close()




AXE_PAGES = {
    "/": "#devices tr[data-device]",
    "/fleet": "#devices tr[data-device]",
    "/fleet?device=kiosk-r": "#timeline thead th",
    "/fleet?lang=en": "#devices tr[data-device]",
    "/progress": "#units tbody tr[data-code]",
    "/progress?lang=en": "#units tbody tr[data-code]",
    "/dossiers": "body[data-loaded]",
    "/deliveries": "body[data-loaded]",
    "/operations": "body[data-loaded]",
    "/operations?view=settings": "body[data-loaded]",
    "/operations?view=commands": "body[data-loaded]",
    "/operations?device=kiosk-a": "body[data-loaded]",
}


def test_axe_finds_no_serious_violation(browser: Browser, served: Served) -> None:
    """Every page once its data is shown, Vietnamese and English, and the login page. Bad
    input tried: the login form with a wrong password (its error message)."""
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    try:
        page.goto(served.url + "/login")
        found = {"/login": axe_serious(page)}
        page.fill("input[name=name]", ADMIN_NAME)
        page.fill("input[name=password]", "wrong")
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.wait_for_selector(".error")
        found["/login (error)"] = axe_serious(page)
        browser_login(page, served.url, ADMIN_NAME, ADMIN_PASSWORD)
        for path, shown in AXE_PAGES.items():
            page.goto(served.url + path)
            _ready(page)
            page.wait_for_selector(shown, timeout=15_000)
            found[path] = axe_serious(page)
        assert {path: v for path, v in found.items() if v} == {}
    finally:
        page.context.close()


def test_logout_ends_the_session(browser: Browser, served: Served, shots: Path) -> None:
    """Log out from /operations: the browser is on /login, its next API call is 401, a page
    sends it to /login, and the old session token is refused by the API too (bad input tried:
    replaying the cookie the browser had)."""
    from playwright.sync_api import expect

    page = _signed_in(browser, served, ADMIN_NAME, ADMIN_PASSWORD)
    try:
        page.goto(served.url + "/operations")
        _ready(page)
        with httpx.Client(base_url=served.url, cookies={"sohoa_session": _session_cookie(page, served)}) as http:
            before = http.get("/api/v1/auth/me")
            assert before.status_code == 200 and before.json()["name"] == ADMIN_NAME
            page.locator("#sohoa-logout").click()
            expect(page).to_have_url(served.url + "/login")
            page.screenshot(path=str(shots / "logged-out.png"))
            assert page.evaluate("() => fetch('/api/v1/devices').then((r) => r.status)") == 401
            assert http.get("/api/v1/auth/me").status_code == 401
        page.goto(served.url + "/fleet")
        expect(page).to_have_url(re.compile(re.escape(served.url) + r"/login\?next=%2Ffleet$"))
    finally:
        page.context.close()


def test_a_session_ended_elsewhere_sends_the_page_to_login(browser: Browser, served: Served) -> None:
    """The session is logged out from outside the page (another tab, an expired session): the
    page's next refresh is answered 401 and the bar sends it to /login, to come back to the
    same page. Bad input tried: the page keeps polling with the dead session."""
    from playwright.sync_api import expect

    page = _signed_in(browser, served, ADMIN_NAME, ADMIN_PASSWORD)
    try:
        page.goto(served.url + "/fleet?lang=en")
        _ready(page)
        with httpx.Client(base_url=served.url, cookies={"sohoa_session": _session_cookie(page, served)}) as http:
            assert http.post("/api/v1/auth/logout", headers={"Origin": served.url}).status_code == 204
        expect(page).to_have_url(served.url + "/login?next=%2Ffleet%3Flang%3Den", timeout=10_000)
        page.goto(served.url + "/login?next=%2Ffleet%3Flang%3Den")
        page.fill("input[name=name]", ADMIN_NAME)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        expect(page).to_have_url(served.url + "/fleet?lang=en")
        expect(page.locator("#sohoa-nav-user")).to_have_text(f"{ADMIN_NAME} · Province admin")
    finally:
        page.context.close()
