"""The dashboard's charts and alerts: the series behind pages per day and rejects by reason, for
a known data set (see conftest) plus rejected pages with known reasons, on SQLite and
PostgreSQL; then in real headless Chromium: the SVG bars carry the right numbers and heights,
open alerts of the units shown appear on /progress with their severity and clear when the device
returns. Screenshots in test-artifacts/progress/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.ingest import Incoming, Writer
from protocol.messages import QualityVerdict, Status, encode
from protocol.topics import Channel, topic
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, browser_login, ensure_admin, login
from tests.browser import chromium, needs_chromium
from tests.fleet.conftest import make_config, state_of
from tests.fleet.progress.conftest import NOW, P, _page, at, fill, serve

# Rejected pages with known reasons on 12 February: four at 99003 (kiosk-c), one on the device
# with no unit (outside every subtree).
REJECTS: list[tuple[str, list[str]]] = [
    ("kiosk-c", ["glare"]), ("kiosk-c", ["glare"]), ("kiosk-c", ["glare"]), ("kiosk-c", ["glare", "skewed"]),
    ("kiosk-c", []), ("kiosk-n", ["blank"]),
]


def write(client: TestClient, items: list[Incoming]) -> None:
    state = state_of(client)
    assert Writer(state.sessions, state.metrics).write(items) == len(items)


def add_rejects(client: TestClient) -> None:
    items = []
    for n, (device, issues) in enumerate(REJECTS):
        page = _page(device, 100 + n, P(f"R{n}", at("2026-02-12"), QualityVerdict(ok=False, issues=issues)))
        items.append(Incoming(topic(device, Channel.EVENT), encode(page), received_at=page.ts))
    write(client, items)


def evaluate(client: TestClient) -> list[tuple[str, str]]:
    response = client.post("/api/v1/alerts/evaluate")
    assert response.status_code == 200, response.text
    return sorted((t["event"], t["alert"]["subject"]) for t in response.json())


def get(client: TestClient, path: str, **params: str) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_pages_per_day_and_rejects_for_a_known_data_set(filled: TestClient) -> None:
    """Traps: a page at 20:00 UTC on 31 January (1 February in Vietnam), a device with no unit
    (counted for the whole province set, not under 99), a page rejected with two reasons (counted
    under both), a rejection with no reason, a range running past today. Bad input tried: an
    unknown unit, a month 2026-1, a range ending before it starts."""
    add_rejects(filled)
    body = get(filled, "/api/v1/progress/pages-per-day", **{"from": "2026-01", "to": "2026-02", "unit": "99"})
    days = {d["day"]: (d["pages"], d["rejected"]) for d in body["days"]}
    assert len(days) == 59 and next(iter(days)) == "2026-01-01" and list(days)[-1] == "2026-02-28"
    assert days["2026-01-15"] == (16, 0)  # A1..A8, two pages each
    assert days["2026-01-31"] == (0, 0) and days["2026-02-01"] == (2, 0)  # A9 is 1 February's, with C's A2
    assert days["2026-02-06"] == (2, 1) and days["2026-02-12"] == (5, 5)
    assert days["2026-01-05"] == (0, 0)  # N1: its device has no unit
    assert sum(p for p, _ in days.values()) == 36 and sum(r for _, r in days.values()) == 7
    everything = get(filled, "/api/v1/progress/pages-per-day", **{"from": "2026-01", "to": "2026-02"})
    assert sum(d["pages"] for d in everything["days"]) == 38 and everything["root"] is None
    commune = get(filled, "/api/v1/progress/pages-per-day", **{"from": "2026-01", "to": "2026-02", "unit": "99001"})
    assert sum(d["pages"] for d in commune["days"]) == 20
    # Up to today only: NOW is 1 March 00:00 in Vietnam.
    running = get(filled, "/api/v1/progress/pages-per-day", **{"from": "2026-02", "to": "2026-03"})
    assert running["days"][-1]["day"] == "2026-03-01" and len(running["days"]) == 29

    rejects = get(filled, "/api/v1/progress/rejects", **{"from": "2026-01", "to": "2026-02", "unit": "99"})
    assert (rejects["pages"], rejects["rejected"]) == (36, 7)
    both = get(filled, "/api/v1/progress/activity", **{"from": "2026-01", "to": "2026-02", "unit": "99"})
    assert both == {"pages_per_day": body, "rejects": rejects}  # what the dashboard asks for, in one pass
    assert [(r["reason"], r["pages"]) for r in rejects["reasons"]] == [
        ("glare", 4), ("blurry", 2), ("skewed", 1), ("unspecified", 1)]
    assert rejects["reasons"][0]["label_vi"] == "Lóa sáng" and rejects["reasons"][0]["label_en"] == "Glare"
    every = get(filled, "/api/v1/progress/rejects", **{"from": "2026-01", "to": "2026-02"})
    assert (every["rejected"], dict((r["reason"], r["pages"]) for r in every["reasons"])["blank"]) == (8, 1)
    january = get(filled, "/api/v1/progress/rejects", **{"from": "2026-01", "unit": "99"})
    assert (january["rejected"], january["reasons"]) == (0, [])

    for path in ("/api/v1/progress/pages-per-day", "/api/v1/progress/rejects", "/api/v1/progress/activity"):
        assert filled.get(path, params={"from": "2026-01", "unit": "98"}).status_code == 404
        assert filled.get(path, params={"from": "2026-1"}).status_code == 422
        assert filled.get(path, params={"from": "2026-03", "to": "2026-01"}).status_code == 422


def test_series_stay_with_the_unit_a_moved_device_served(filled: TestClient) -> None:
    """Fault tried: kiosk-a moves from 99001 to 99003 and scans one more page: 99001 keeps its
    20 pages, 99003 gets only the new one."""
    moved = at("2026-02-20")
    page = _page("kiosk-a", 200, P("M1", at("2026-02-21")))
    write(filled, [Incoming(topic("kiosk-a", Channel.STATUS),
                            encode(Status(device_id="kiosk-a", state="online", unit="99003", ts=moved)),
                            received_at=moved),
                   Incoming(topic("kiosk-a", Channel.EVENT), encode(page), received_at=page.ts)])
    span = {"from": "2026-01", "to": "2026-02"}
    old = get(filled, "/api/v1/progress/pages-per-day", **span, unit="99001")
    new = get(filled, "/api/v1/progress/pages-per-day", **span, unit="99003")
    assert sum(d["pages"] for d in old["days"]) == 20
    assert sum(d["pages"] for d in new["days"]) == 6 and {d["day"]: d["pages"] for d in new["days"]}["2026-02-21"] == 1


def test_alerts_of_a_subtree_and_their_counts(filled: TestClient) -> None:
    """Offline alerts of kiosk-p (99), kiosk-c (99003) and kiosk-n (no unit): the subtree filter
    and the counts keep to the units asked for. Bad input tried: a unit with no alerts, an
    unknown unit (nothing, not everything)."""
    assert evaluate(filled) == [("opened", "device:kiosk-c"), ("opened", "device:kiosk-n"),
                                ("opened", "device:kiosk-p")]
    under = get(filled, "/api/v1/alerts", status="active", under="99")
    assert sorted(a["device_id"] for a in under) == ["kiosk-c", "kiosk-p"]
    assert [a["device_id"] for a in get(filled, "/api/v1/alerts", status="active", under="99003")] == ["kiosk-c"]
    assert get(filled, "/api/v1/alerts", status="active", under="99001") == []
    assert get(filled, "/api/v1/alerts", status="active", under="12") == []
    counts = get(filled, "/api/v1/alerts/counts", under="99")
    assert counts == {"total": 2, "by_status": {"open": 2}, "by_severity": {"error": 2}, "by_kind": {"offline": 2},
                      "by_unit": {"99": 1, "99003": 1}}
    assert get(filled, "/api/v1/alerts/counts")["total"] == 3


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, TestClient]]:
    """The app over the known data set with the rejects and offline alerts (SQLite file), served
    on a free loopback port; its URL and a client on the same database (to change the data)."""
    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db")
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)  # a province admin
        ensure_admin(state_of(client).sessions)  # the browser's
        fill(client)
        add_rejects(client)
        assert len(evaluate(client)) == 3
        with serve(create_app(config, clock=lambda: NOW)) as url:
            yield url, client


def _height(locator: Any) -> float:
    return float(locator.get_attribute("height"))


@pytest.mark.browser
@needs_chromium
def test_charts_and_alerts_on_the_dashboard(served: tuple[str, TestClient], artifacts: Path) -> None:
    """The pages-per-day bars carry each day's figures and heights in proportion (16 pages on
    15 January, 2 on 1 February: 8 to 1); the reasons chart lists glare first with twice the
    bar of blurry; the open offline alerts show on /progress with their severity, the province
    row carries their count, drilling into 99 leaves the alert of the device with no unit out;
    the alert clears once the device returns. Screenshots in test-artifacts/progress/."""
    from playwright.sync_api import expect

    url, client = served
    shots = artifacts / "progress"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        browser_login(page, url, ADMIN_NAME, ADMIN_PASSWORD)
        page.goto(url + "/progress?from=2026-01&to=2026-02")
        expect(page.locator("#alerts tbody tr")).to_have_count(3)
        expect(page.locator("#alerts-title")).to_have_text("Cảnh báo đang mở (3)")
        kiosk_c = page.locator("#alerts tr", has_text="kiosk-c")
        expect(kiosk_c).to_have_class("alert sev-error open")
        expect(kiosk_c.locator("td.severity")).to_have_text("⛔ Nghiêm trọng")
        expect(kiosk_c.locator("td.kind")).to_have_text("Mất kết nối")
        expect(kiosk_c.locator("td.unit")).to_have_text("99003")
        expect(page.locator('tr[data-code="99"] span.alert-badge')).to_have_text("⚑ 2")

        days = page.locator("#chart-days g.day")
        expect(days).to_have_count(59)
        busy, quiet = page.locator('g.day[data-day="2026-01-15"]'), page.locator('g.day[data-day="2026-02-01"]')
        expect(busy).to_have_attribute("data-pages", "16")
        expect(busy.locator("title")).to_have_text("15/01: 16 trang, 0 bị loại")
        assert _height(busy.locator("rect.ok")) == pytest.approx(8 * _height(quiet.locator("rect.ok")), rel=0.01)
        assert _height(busy.locator("rect.rejected")) == 0
        rejected_day = page.locator('g.day[data-day="2026-02-12"]')
        expect(rejected_day).to_have_attribute("data-rejected", "6")  # kiosk-n's blank page counts here
        assert _height(rejected_day.locator("rect.ok")) == 0 < _height(rejected_day.locator("rect.rejected"))

        reasons = page.locator("#chart-rejects g.reason")
        expect(reasons).to_have_count(5)
        expect(reasons.first).to_have_attribute("data-reason", "glare")
        glare = float(page.locator('g.reason[data-reason="glare"] rect').get_attribute("width") or 0)
        blurry = float(page.locator('g.reason[data-reason="blurry"] rect').get_attribute("width") or 0)
        assert glare == pytest.approx(2 * blurry)
        expect(page.locator('g.reason[data-reason="glare"] title')).to_have_text("Lóa sáng: 4 trang")
        page.screenshot(path=str(shots / "charts-alerts-provinces.png"), full_page=True)

        page.locator('tr[data-code="99"] a.drill').click()
        expect(page.locator("#alerts tbody tr")).to_have_count(2)
        expect(page.locator('tr[data-code="99003"] span.alert-badge')).to_have_text("⚑ 1")
        expect(page.locator("#chart-rejects g.reason")).to_have_count(4)  # no blank page under 99
        expect(page.locator('g.day[data-day="2026-02-12"]')).to_have_attribute("data-rejected", "5")
        page.locator("#lang").click()
        expect(page.locator("#alerts-title")).to_have_text("Open alerts (2)")
        expect(page.locator('g.reason[data-reason="glare"] text').first).to_have_text("Glare")
        page.screenshot(path=str(shots / "charts-alerts-province-99.png"), full_page=True)

        back = NOW + timedelta(seconds=1)
        write(client, [Incoming(topic("kiosk-c", Channel.STATUS),
                                encode(Status(device_id="kiosk-c", state="online", unit="99003", ts=back)),
                                received_at=back)])
        assert evaluate(client) == [("resolved", "device:kiosk-c")]
        page.reload()
        expect(page.locator('tr[data-code="99"]')).to_be_visible()
        expect(page.locator("#alerts tbody tr")).to_have_count(2)  # all units again after a reload: 3 - 1
        expect(page.locator("#alerts tr", has_text="kiosk-c")).to_have_count(0)
