"""The remote-settings contract: what the fleet may set, checked the same way on both sides; the
maintenance window reads local time and may wrap past midnight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from protocol.settings import MaintenanceWindow, RemoteSettings, parse_settings


def test_parse_settings_takes_a_partial_dict_and_fills_defaults() -> None:
    parsed = parse_settings({"scan": {"dpi": 400}, "maintenance_window": {"start": "22:00", "end": "03:00"}})
    assert parsed.scan.dpi == 400 and parsed.scan.colour_mode == "color"
    assert parsed.maintenance_window.start == "22:00"
    assert parse_settings({}) == RemoteSettings()


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"scan": {"dpi": 100}}, ("scan", "dpi")),  # records need at least 200 dpi
        ({"scan": {"dip": 300}}, ("scan", "dip")),  # a typo in a nested key
        ({"broker": {"host": "evil"}}, ("broker",)),  # local-only keys are not settable
        ({"maintenance_window": {"timezone": "Mars/Olympus"}}, ("maintenance_window", "timezone")),
        ({"kiosk_language": "fr"}, ("kiosk_language",)),
    ],
)
def test_parse_settings_names_the_bad_key(settings: dict[str, object], where: tuple[str, ...]) -> None:
    """Bad input: each error names its key, so the fleet can answer 422 with it."""
    with pytest.raises(ValidationError) as caught:
        parse_settings(settings)
    assert [err["loc"] for err in caught.value.errors()] == [where]


def test_maintenance_window_local_time_wrapping_midnight() -> None:
    window = MaintenanceWindow(start="23:00", end="02:00", timezone="Asia/Ho_Chi_Minh", days=[0, 1, 2, 3, 4])
    # 2026-11-23 is a Monday. 23:30 Monday in Hanoi = 16:30 UTC.
    monday_night = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)
    assert window.is_open(monday_night)
    closes = window.closes_at(monday_night)
    assert closes is not None and (closes.day, closes.hour) == (24, 2)
    # Tuesday 01:30 local (still Monday's window).
    assert window.is_open(datetime(2026, 11, 23, 18, 30, tzinfo=UTC))
    # Tuesday 12:00 local: closed, next opening Tuesday 23:00 local.
    noon = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    assert not window.is_open(noon) and window.closes_at(noon) is None
    nxt = window.next_open(noon)
    assert (nxt.day, nxt.hour) == (24, 23)
    # Friday 23:30 opens (Friday is listed); Saturday 23:30 does not; next is Monday 23:00.
    assert window.is_open(datetime(2026, 11, 27, 16, 30, tzinfo=UTC))
    saturday = datetime(2026, 11, 28, 16, 30, tzinfo=UTC)
    assert not window.is_open(saturday)
    assert (window.next_open(saturday).day, window.next_open(saturday).hour) == (30, 23)


def test_window_rejects_bad_days() -> None:
    """Bad input: day 7 and no day at all."""
    for days in ([7], []):
        with pytest.raises(ValidationError):
            MaintenanceWindow(days=days)
