"""The progress dashboard in real headless Chromium (Debian's), served by uvicorn from the
fleet's app factory over the known data set: the right rates, drill-down province -> district
-> commune, units behind target standing out, English. Screenshots in test-artifacts/progress/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login
from tests.browser import chromium, needs_chromium
from tests.fleet.conftest import make_config, state_of
from tests.fleet.progress.conftest import NOW, fill, serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The app over the known data set (SQLite file) on a free loopback port; its URL."""
    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db")
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)  # a province admin
        ensure_admin(state_of(client).sessions)  # the browser's
        fill(client)
        rows = [("991", "2025-03", 5), ("99001", "2025-03", 10), ("99002", "2025-03", 7), ("99004", "2025-03", 4)]
        assert client.post("/api/v1/progress/received", json=[
            {"unit_code": u, "period": m, "received": n} for u, m, n in rows]).status_code == 200
    with serve(create_app(config, clock=lambda: NOW)) as url:
        yield url


@pytest.mark.browser
@needs_chromium
def test_dashboard_rates_and_drill_down(served: str, artifacts: Path) -> None:
    """The province row shows its own 50,0% and 36,4% for its subtree; clicking it lists its
    communes with 99003 and 99004 marked behind; in March 2025 (three tiers) the drill goes
    province -> district -> commune and the breadcrumb leads back."""
    from playwright.sync_api import expect

    shots = artifacts / "progress"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        browser_login(page, served, ADMIN_NAME, ADMIN_PASSWORD)
        page.goto(served + "/progress?from=2026-01&to=2026-02")
        province = page.locator('tr[data-code="99"]')
        expect(province.locator("td.rate")).to_have_text("50,0%")
        expect(province.locator("td.total_rate")).to_have_text("36,4%")
        expect(province.locator("td.status")).to_have_text("Đạt")
        page.screenshot(path=str(shots / "dashboard-provinces.png"), full_page=True)

        province.locator("a.drill").click()
        expect(page.locator('tr[data-code="99003"]')).to_be_visible()
        expect(page.locator("#units tbody tr")).to_have_count(4)
        for code, rate, status in (("99001", "50,0%", "met"), ("99003", "30,0%", "behind"),
                                   ("99004", "0,0%", "behind")):
            row = page.locator(f'tr[data-code="{code}"]')
            expect(row.locator("td.rate")).to_have_text(rate)
            expect(row).to_have_class(status)
        expect(page.locator('tr[data-code="99003"] td.status')).to_have_text("⚠ Chưa đạt")
        background = "e => getComputedStyle(e).backgroundColor"
        behind_bg = page.locator('tr[data-code="99003"] td.rate').evaluate(background)
        met_bg = page.locator('tr[data-code="99001"] td.rate').evaluate(background)
        assert behind_bg != met_bg
        expect(page.locator("#chart svg rect")).to_have_count(4)
        page.screenshot(path=str(shots / "dashboard-province-99.png"), full_page=True)

        page.locator("#behind_only").check()
        expect(page.locator("#units tbody tr")).to_have_count(2)
        page.locator("#behind_only").uncheck()
        page.locator("#lang").click()
        expect(page.locator("#units thead")).to_contain_text("Rate")
        expect(page.locator('tr[data-code="99003"] td.status')).to_have_text("⚠ Behind")
        page.locator("#lang").click()

        # Three tiers (before 1/7/2025): province -> district -> commune.
        page.goto(served + "/progress?from=2025-03")
        page.locator('tr[data-code="99"] a.drill').click()
        expect(page.locator('tr[data-code="991"] td.tier')).to_have_text("Huyện")
        page.locator('tr[data-code="991"] a.drill').click()
        expect(page.locator('tr[data-code="99002"]')).to_be_visible()
        expect(page.locator("#units tbody tr")).to_have_count(4)  # 991 itself and its three communes
        expect(page.locator('tr[data-code="991"] td.received')).to_have_text("5")
        expect(page.locator("#crumbs")).to_contain_text("Huyện Đông Sơn")
        expect(page.locator("#summary")).to_contain_text("22")  # the district's subtree received
        page.screenshot(path=str(shots / "dashboard-district-991.png"), full_page=True)
        page.locator("#crumbs a[data-go='']").click()
        expect(page.locator("#units tbody tr")).to_have_count(1)
        expect(page.locator("#xlsx")).to_have_attribute(
            "href", "/api/v1/progress/report.xlsx?from=2025-03&to=2025-03")
