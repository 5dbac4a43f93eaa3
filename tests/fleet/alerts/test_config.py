"""The ``alerts:`` section of the fleet's config file. Bad input tried: a mistyped key, a
negative interval, a webhook that is not http(s): each reported with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import load
from protocol.configfile import ConfigError


def test_alerts_section_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "fleet.yaml"
    good.write_text("alerts:\n  interval_s: 10\n  offline_after_s: 300\n  webhook_url: https://it.example/hook\n")
    config = load(good)
    assert (config.alerts.interval_s, config.alerts.offline_after_s) == (10, 300)
    assert config.alerts.webhook_url == "https://it.example/hook"
    assert load(None).alerts.webhook_url is None and load(None).alerts.enabled

    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts:\n  interval_s: -1\n  offline_afer_s: 300\n  webhook_url: ftp://it.example\n")
    with pytest.raises(ConfigError) as caught:
        load(bad)
    errors = "\n".join(caught.value.errors)
    assert f"{bad}:2" in errors and "interval_s" in errors
    assert f"{bad}:3" in errors and "offline_afer_s" in errors
    assert f"{bad}:4" in errors and "webhook_url" in errors
