"""The Dossiers page (/dossiers) in real headless Chromium (Debian's), served by uvicorn from the
fleet's app factory over dossiers fed through the real ingest writer: received vs digitized per
unit, the chase list oldest first and its XLSX, a mistyped code set apart, a walk-in named by an
admin (bad code refused first; audited; the counts move), a dossier's documents, pages, quality
verdicts and who digitized it, every time as dd/mm/yyyy HH:MM in the province's zone, English,
a viewer who cannot name, and axe-core finding no serious or critical violation. Screenshots in
test-artifacts/dossiers/."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fleet.api.app import create_app
from fleet.auth.models import AuditEntry
from fleet.db import make_engine, session_factory
from protocol.messages import Operator
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login, make_user
from tests.browser import BROWSER, axe_serious
from tests.fleet.conftest import make_config, state_of
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status
from tests.fleet.progress.conftest import NOW, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

H = "000.00.00.H99-2601"
SCANNED, OTHER, OLDEST, TYPO = f"{H}10-0001", f"{H}12-0002", f"{H}05-0003", f"{H}11-0O01"
WALK_IN = "WALKIN-1A2B3C4D"
VIEWER, VIEWER_PASSWORD = "xem-99003", "viewer-password-3"

pytestmark = BROWSER


@dataclass
class Served:
    url: str
    db_url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Commune 99003 received SCANNED and OTHER, 99001 received OLDEST (all January 2026);
    kiosk-c (99003) scanned SCANNED (a good and a rejected page, then a component and a result
    by postal staff), a mistyped code, and a walk-in (by unit staff) that OTHER's code is for."""
    tmp = tmp_path_factory.mktemp("dossiers-page")
    db_url = f"sqlite:///{tmp}/fleet.db"
    config = make_config(tmp, db_url)
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)
        ensure_admin(state_of(client).sessions)
        make_user(state_of(client).sessions, name=VIEWER, password=VIEWER_PASSWORD, role="viewer", unit_code="99003")
        load_units(client)
        rows = ((SCANNED, "99003", "2026-01-10"), (OTHER, "99003", "2026-01-12"), (OLDEST, "99001", "2026-01-05"))
        received = [{"code": c, "procedure_code": "1.004227", "unit_code": u, "received_date": d,
                     "due_date": "2026-01-25"} for c, u, d in rows]
        assert client.post("/api/v1/dossiers/received", json=received).status_code == 200
        good = page("kiosk-c", SCANNED, at("2026-01-10"), operator=Operator(kind="postal_staff", id="op-7"))
        blurred = page("kiosk-c", SCANNED, at("2026-01-10", 4), ok=False)
        walk_in_page = page("kiosk-c", None, at("2026-01-12", 2))
        send(client, [
            status("kiosk-c", "99003", at("2026-01-01")), good, blurred,
            closed("kiosk-c", SCANNED, [f"{SCANNED}.1.pdf", f"{SCANNED}-KQ1.pdf"], at("2026-01-10", 4),
                   page_ids=[good.page.page_id], operator=Operator(kind="postal_staff", id="op-7")),
            page("kiosk-c", TYPO, at("2026-01-11")), walk_in_page,
            closed("kiosk-c", None, [f"{WALK_IN}.1.pdf"], at("2026-01-12", 3), page_ids=[walk_in_page.page.page_id],
                   operator=Operator(kind="unit_staff", id="op-2")),
        ])
    with serve(create_app(config, clock=lambda: NOW)) as url:
        yield Served(url, db_url)


def _open(browser: Browser, served: Served, name: str, password: str, path: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 1000}, timezone_id="America/New_York").new_page()
    browser_login(page, served.url, name, password)
    page.goto(served.url + path)
    page.wait_for_selector("body[data-loaded='1']", timeout=15_000)
    return page


def test_a_viewer_sees_the_walk_in_but_cannot_name_it(browser: Browser, served: Served) -> None:
    from playwright.sync_api import expect

    page = _open(browser, served, VIEWER, VIEWER_PASSWORD, "/dossiers?from=2026-01")
    try:
        row = page.locator(f'#walkins tr[data-code="{WALK_IN}"]')
        expect(row).to_contain_text("Chỉ quản trị viên được ghi mã.")
        assert row.locator("form").count() == 0
        expect(page.locator('#units tr[data-unit="99001"]')).to_have_count(0)  # outside the viewer's unit
    finally:
        page.context.close()


def test_the_dossiers_page(browser: Browser, served: Served, artifacts: Path) -> None:
    from openpyxl import load_workbook
    from playwright.sync_api import expect

    shots = artifacts / "dossiers"
    shots.mkdir(parents=True, exist_ok=True)
    page = _open(browser, served, ADMIN_NAME, ADMIN_PASSWORD, "/dossiers?from=2026-01")
    try:
        commune = page.locator('#units tr[data-unit="99003"]')
        for cell, text in (("received", "2"), ("digitized", "1"), ("rate", "50,0%"), ("results", "1"),
                           ("unmatched", "1")):
            expect(commune.locator(f"td.{cell}")).to_have_text(text)
        expect(page.locator('#units tr[data-unit="99001"] td.rate')).to_have_text("0,0%")
        chase = page.locator("#chase tbody tr")
        expect(chase).to_have_count(2)
        assert [chase.nth(i).get_attribute("data-code") for i in range(2)] == [OLDEST, OTHER]  # oldest first
        expect(chase.first).to_contain_text("05/01/2026")
        expect(page.locator(f'#unmatched tr[data-code="{TYPO}"]')).to_contain_text("11/01/2026 10:00")  # 03:00 UTC
        xlsx = page.request.get(served.url + str(page.locator("#chase-xlsx").get_attribute("href")))
        assert xlsx.status == 200
        sheet = load_workbook(io.BytesIO(xlsx.body())).active
        assert sheet is not None
        assert [row[0] for row in sheet.iter_rows(min_row=3, values_only=True)] == [OLDEST, OTHER]
        page.screenshot(path=str(shots / "dossiers.png"), full_page=True)

        # Naming the walk-in: a result's code first (refused, said on the row), then OTHER's.
        form = page.locator(f'#walkins form[data-walkin="{WALK_IN}"]')
        form.locator("input").fill(f"{OTHER}-KQ1")
        form.locator("button").click()
        expect(form.locator(".error")).to_contain_text("is not a dossier code")
        form.locator("input").fill(OTHER.lower())
        form.locator("button").click()
        expect(page.locator("#notice")).to_have_text(f"Đã ghi mã {OTHER} cho {WALK_IN}.")
        expect(page.locator(f'#walkins tr[data-code="{WALK_IN}"]')).to_have_count(0)
        expect(commune.locator("td.digitized")).to_have_text("2")
        expect(page.locator("#chase tbody tr")).to_have_count(1)
        expect(page.locator("#detail-title")).to_have_text(f"Hồ sơ {OTHER}")
        expect(page.locator('#facts dd[data-fact="operator"]')).to_have_text("Cán bộ đơn vị (op-2)")
        engine = make_engine(served.db_url)
        with session_factory(engine)() as session:
            actions = [(a.action, a.outcome) for a in session.scalars(select(AuditEntry).where(
                AuditEntry.target == f"/api/v1/dossiers/{WALK_IN}/name"))]
        engine.dispose()
        assert ("POST /api/v1/dossiers/{walk_in}/name", "200") in actions
        assert ("POST /api/v1/dossiers/{walk_in}/name", "409") in actions

        # Search by the beginning of a code, in lower case: one dossier, its detail.
        page.locator("#code").fill(SCANNED[:-2].lower())
        page.locator("#search button").click()
        expect(page.locator("#detail-title")).to_have_text(f"Hồ sơ {SCANNED}")
        expect(page.locator('#facts dd[data-fact="state"]')).to_have_text("Đã số hóa")
        expect(page.locator('#facts dd[data-fact="received_on"]')).to_have_text("10/01/2026")
        expect(page.locator('#facts dd[data-fact="operator"]')).to_have_text("Nhân viên bưu điện (op-7)")
        documents = page.locator("#documents tbody tr")
        expect(documents).to_have_count(2)
        expect(documents.locator("td.kind")).to_have_text(["Thành phần", "Kết quả"])
        expect(documents.first.locator("td.when")).to_have_text("10/01/2026 11:00")
        expect(documents.first).to_contain_text("chưa tải lên")
        expect(documents.locator("td.operator")).to_have_text(["Nhân viên bưu điện (op-7)"] * 2)
        quality = page.locator("#pages tbody td.quality")
        expect(quality).to_have_text(["Đạt", "Không đạt: blurry"])
        expect(page.locator("#pages tbody td.operator")).to_have_text(["Nhân viên bưu điện (op-7)", "–"])
        expect(page.locator("#pages tbody td.when").first).to_have_text("10/01/2026 10:00")
        page.screenshot(path=str(shots / "dossier-detail.png"), full_page=True)
        violations = {"vi": axe_serious(page)}

        page.locator("#lang").click()
        expect(page.locator("#units-title")).to_have_text("Received and digitized per unit")
        expect(documents.locator("td.kind")).to_have_text(["Component", "Result"])
        expect(page.locator('#facts dd[data-fact="operator"]')).to_have_text("Postal staff (op-7)")
        expect(page.locator("#sohoa-nav a[data-nav=dossiers]")).to_have_attribute("aria-current", "page")
        page.screenshot(path=str(shots / "dossier-detail-en.png"), full_page=True)
        violations["en"] = axe_serious(page)
        assert {k: v for k, v in violations.items() if v} == {}
    finally:
        page.context.close()
