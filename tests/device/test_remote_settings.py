"""Remote settings on the device: valid desired settings are applied and kept on disk; invalid
ones are rejected with the reason and the last good settings stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.capture.config import SaneScannerConfig
from device.config import AgentConfig
from device.remote_settings import SettingsStore, agent_config_overrides
from protocol.messages import ConfigDesired, ConfigReported, decode, encode
from protocol.settings import RemoteSettings

DEVICE = "kiosk-0001"


def desired(version: int, settings: dict[str, object]) -> ConfigDesired:
    return ConfigDesired(device_id=DEVICE, version=version, settings=settings)


GOOD = {
    "scan": {"dpi": 400, "colour_mode": "color"},
    "quality": {"min_sharpness": 0.4},
    "classifier": {"model_version": "1.0-54d2359fb2", "min_confidence": 0.7},
    "telemetry_interval_s": 30,
    "kiosk_language": "en",
    "maintenance_window": {"start": "22:30", "end": "04:00", "timezone": "Asia/Ho_Chi_Minh"},
}


def test_defaults_then_apply_and_persist(tmp_path: Path) -> None:
    applied: list[RemoteSettings] = []
    store = SettingsStore(tmp_path / "settings.json", device_id=DEVICE, apply=applied.append,
                          available_models=lambda: {"1.0-54d2359fb2"})
    assert store.current == RemoteSettings() and store.version is None
    report = store.handle(desired(3, GOOD))
    assert report.applied and report.error is None and report.version == 3
    assert report.settings["scan"] == {"dpi": 400, "colour_mode": "color"}
    assert applied == [store.current] and store.current.quality.overrides() == {"min_sharpness": 0.4}
    again = SettingsStore(tmp_path / "settings.json", device_id=DEVICE)
    assert again.current == store.current and again.version == 3
    # The report goes on the wire as it is.
    raw = encode(report)
    decoded = decode(f"sohoa/v1/{DEVICE}/config/reported", raw).message
    assert isinstance(decoded, ConfigReported) and decoded.settings == report.settings


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"scan": {"dpi": 100}}, "scan.dpi"),
        ({"scan": {"colour_mode": "sepia"}}, "scan.colour_mode"),
        ({"scan_dpi": 300}, "scan_dpi"),
        ({"telemetry_interval_s": 0}, "telemetry_interval_s"),
        ({"kiosk_language": "fr"}, "kiosk_language"),
        ({"maintenance_window": {"start": "25:00", "end": "02:00"}}, "maintenance_window.start"),
        ({"maintenance_window": {"timezone": "Mars/Olympus"}}, "maintenance_window.timezone"),
        ({"maintenance_window": {"start": "02:00", "end": "02:00"}}, "maintenance_window"),
        ({"classifier": {"model_version": "9.9"}}, "not installed"),
    ],
)
def test_invalid_settings_are_rejected_and_the_last_good_kept(tmp_path: Path, bad: dict[str, object],
                                                              reason: str) -> None:
    """Bad input: a dpi under the records' minimum, an unknown colour mode, a mistyped key, a zero
    interval, an unsupported language, an impossible time, an unknown zone, an empty window, a model
    that is not on the device."""
    applied: list[RemoteSettings] = []
    path = tmp_path / "settings.json"
    store = SettingsStore(path, device_id=DEVICE, apply=applied.append, available_models=lambda: {"1.0-54d2359fb2"})
    assert store.handle(desired(1, GOOD)).applied
    before = path.read_bytes()
    report = store.handle(desired(2, bad))
    assert not report.applied and report.version == 2
    assert reason in (report.error or "")
    assert report.settings == json.loads(before)["settings"]
    assert path.read_bytes() == before and store.version == 1 and len(applied) == 1
    assert store.handle(desired(3, {**GOOD, "kiosk_language": "vi"})).applied  # a later good one goes through


def test_agent_refusal_restores_the_previous_settings(tmp_path: Path) -> None:
    """Bad input: settings the agent's hook cannot apply (the scanner refuses 600 dpi)."""
    seen: list[int] = []

    def apply(settings: RemoteSettings) -> None:
        seen.append(settings.scan.dpi)
        if settings.scan.dpi == 600:
            raise ValueError("scanner refuses 600 dpi")

    store = SettingsStore(tmp_path / "s.json", device_id=DEVICE, apply=apply)
    assert store.handle(desired(1, {"scan": {"dpi": 300}})).applied
    report = store.handle(desired(2, {"scan": {"dpi": 600}}))
    assert not report.applied and "refuses 600" in (report.error or "")
    assert seen == [300, 600, 300] and store.current.scan.dpi == 300


def test_redelivered_or_older_versions_are_not_applied_again(tmp_path: Path) -> None:
    """Bad input: the retained desired message delivered again after a reconnect, and an older version."""
    calls: list[RemoteSettings] = []
    store = SettingsStore(tmp_path / "s.json", device_id=DEVICE, apply=calls.append)
    store.handle(desired(5, GOOD))
    for version in (5, 4):
        report = store.handle(desired(version, {"kiosk_language": "vi"}))
        assert report.applied and report.version == 5 and report.settings["kiosk_language"] == "en"
    assert len(calls) == 1


def test_damaged_file_means_defaults(tmp_path: Path) -> None:
    """Bad input: a settings file cut short by something outside the store."""
    path = tmp_path / "s.json"
    path.write_text('{"version": 3, "settings": {"scan": ')
    store = SettingsStore(path, device_id=DEVICE)
    assert store.current == RemoteSettings() and store.version is None


def test_overrides_merge_into_the_agent_config() -> None:
    """The agent's config accepts what the settings decide (keys and value ranges line up)."""
    config = AgentConfig(device_id=DEVICE, unit="000.00.00.H01")
    settings = RemoteSettings.model_validate({"scan": {"dpi": 600, "colour_mode": "gray"}, "telemetry_interval_s": 15})
    dumped = config.model_dump(mode="python")
    for key, value in agent_config_overrides(settings).items():
        dumped[key] = {**dumped[key], **value}
    merged = AgentConfig.model_validate(dumped)
    assert isinstance(merged.scanner, SaneScannerConfig)
    assert (merged.scanner.dpi, merged.scanner.mode) == (600, "gray")
    assert merged.telemetry.interval_s == 15
