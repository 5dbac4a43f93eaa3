"""Telemetry from the real machine, and the temperature read from a thermal tree."""

from __future__ import annotations

from pathlib import Path

from device.delivery.outbox import Outbox
from device.telemetry import TelemetryCollector, read_temperature
from protocol.messages import ScannerInfo, decode, encode


def test_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    """Two zones (a battery and the CPU): the CPU's millidegrees are reported; a broken zone
    is skipped; no zones at all gives None."""
    for name, kind, temp in (("thermal_zone0", "battery", "30000"), ("thermal_zone1", "cpu-thermal", "51234"),
                             ("thermal_zone2", "soc", "garbage")):
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    assert read_temperature(tmp_path) == 51.234
    assert read_temperature(tmp_path / "missing") is None


def test_collect_is_a_valid_message(tmp_path: Path) -> None:
    with Outbox(tmp_path / "state") as outbox:
        outbox.add_page(b"abc", "image/png", lambda s: ("sohoa/v1/kiosk-0001/event", b"{}", "message-0001"))
        collector = TelemetryCollector("kiosk-0001", outbox, scanner=lambda: ScannerInfo(state="ready"),
                                       thermal_root=tmp_path)
        report = collector.collect()
    assert report.outbox.files == 1 and report.outbox.bytes == 3 and report.outbox.events == 1
    assert report.disk_total_bytes >= report.disk_free_bytes > 0
    assert 0 <= report.memory_percent <= 100 and report.temperature_c is None
    assert decode("sohoa/v1/kiosk-0001/telemetry", encode(report)).message == report
