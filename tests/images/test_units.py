"""The systemd units and drop-ins the image ships: systemd itself checks their syntax
(``systemd-analyze verify``), and the settings the kiosk depends on are there. The units' behaviour
is shown by ``make image-test`` (tests/images/test_vm_image.py) in a booted image."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOTFS = Path(__file__).resolve().parents[2] / "images" / "rootfs"
UNITS = ROOTFS / "etc" / "systemd" / "system"


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text().replace("\\\n", " "))
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_units() -> None:
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, sorted(UNITS.glob("*.service")))],
                            capture_output=True, text=True, timeout=60, check=False)
    # The image's programs (cage, the venv) are not on this machine: that, and only that, is allowed.
    problems = [line for line in result.stderr.splitlines() if "is not executable" not in line and line.strip()]
    assert problems == []


def test_agent_unit() -> None:
    service = _unit(UNITS / "sohoa-agent.service")["Service"]
    assert (service["Type"], service["Restart"], service["KillMode"], service["NotifyAccess"]) == (
        "notify", "always", "mixed", "main")
    assert int(service["WatchdogSec"]) > 0
    command = shlex.split(service["ExecStart"])
    assert command[:2] == ["/usr/bin/python3", "/usr/lib/sohoa/launcher.py"]  # the launcher, outside the slots
    assert command[command.index("--") + 1:][-4:] == ["device", "run", "--config", "/var/lib/sohoa/config/device.yaml"]
    unit = _unit(UNITS / "sohoa-agent.service")["Unit"]
    assert unit["StartLimitIntervalSec"] == "0"  # a crash loop goes on until the launcher's rollback
    assert "time-sync.target" in unit["After"] and "time-sync.target" in unit["Wants"]


def test_kiosk_unit() -> None:
    service = _unit(UNITS / "sohoa-kiosk.service")["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0] == "/usr/bin/cage" and "/usr/bin/chromium" in command and "--kiosk" in command
    assert service["Restart"] == "always"


def test_watchdog_journal_and_time_sync_drop_ins() -> None:
    manager = _unit(ROOTFS / "etc" / "systemd" / "system.conf.d" / "sohoa-watchdog.conf")["Manager"]
    assert manager["RuntimeWatchdogSec"].rstrip("s").isdigit()
    journal = _unit(ROOTFS / "etc" / "systemd" / "journald.conf.d" / "sohoa.conf")["Journal"]
    assert journal["Storage"] == "volatile" and journal["RuntimeMaxUse"]
    wait = _unit(UNITS / "systemd-time-wait-sync.service.d" / "sohoa.conf")["Service"]
    assert int(wait["TimeoutStartSec"]) > 0  # offline kiosks still start


def test_one_writable_partition() -> None:
    entries = [line.split() for line in (ROOTFS / "etc" / "fstab").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    writable = [e for e in entries if e[2] in ("ext4", "vfat") and "ro" not in e[3].split(",")]
    assert [(e[1], e[2]) for e in writable] == [("/var/lib/sohoa", "ext4")]
    overlay = ROOTFS / "etc" / "initramfs-tools" / "scripts" / "init-bottom" / "sohoa-overlay"
    assert overlay.stat().st_mode & 0o111 and "lowerdir=" in overlay.read_text()
