"""Months and days are the configured ``time_zone``'s, in SQL too, on SQLite and PostgreSQL: a
fleet in Europe/Berlin (summer time from 29 March 2026) counts a page captured at 22:30 UTC on
31 March in April and one at 21:30 UTC in March (both would be 1 April in Vietnam), in the
monthly figures (a digitized dossier matching nothing, a counted dossier) and in pages per day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from tests.authn import login
from tests.fleet.conftest import make_config
from tests.fleet.dossiers.conftest import load_units, page, send, status

NOW = datetime(2026, 4, 20, 12, tzinfo=UTC)


@pytest.fixture
def berlin(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    config = make_config(tmp_path, db_url).model_copy(update={"time_zone": "Europe/Berlin"})
    with TestClient(create_app(config, clock=lambda: NOW)) as client:
        login(client)
        yield client


def test_months_and_days_follow_the_configured_zone(berlin: TestClient) -> None:
    load_units(berlin)
    late, later = datetime(2026, 3, 31, 21, 30, tzinfo=UTC), datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    send(berlin, [status("kiosk-c", "99003", datetime(2026, 3, 1, tzinfo=UTC)),
                  page("kiosk-c", "H99-MARCH", late), page("kiosk-c", "H99-APRIL", later)])

    def unmatched(month: str) -> int:
        body = berlin.get("/api/v1/dossiers/summary", params={"from": month, "unit": "99003"}).json()
        return int(body["total"]["unmatched"])

    assert (unmatched("2026-03"), unmatched("2026-04")) == (1, 1)
    march = berlin.get("/api/v1/progress", params={"from": "2026-03", "unit": "99003"}).json()
    assert march["units"][0]["own"]["digitized"] == 1  # counts basis: the first accepted page's month
    days = berlin.get("/api/v1/progress/activity", params={"from": "2026-03", "to": "2026-04", "unit": "99003"})
    per_day = {d["day"]: d["pages"] for d in days.json()["pages_per_day"]["days"] if d["pages"]}
    assert per_day == {"2026-03-31": 1, "2026-04-01": 1}
    listed = berlin.get("/api/v1/dossiers", params={"digitized_from": "2026-04", "unit": "99003"}).json()
    assert [d["code"] for d in listed] == ["H99-APRIL"]
    assert berlin.get("/dossiers").text.count('value="2026-04"') == 2  # this month, Berlin's
