"""The agent's config: defaults, every error with its file and line, loopback-only endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from device.capture.config import FakeScannerConfig, SaneScannerConfig
from device.config import AgentConfig, load, validate_config_main
from protocol.configfile import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
device_id: kiosk-0001
unit: "000.00.00.H01"
broker:
  host: 127.0.0.1
  port: 1883
state_dir: /tmp/sohoa-state
scanner:
  type: sane
  source: adf
  dpi: 300
"""

BAD = """\
device_id: Kiosk_1
unit: "000.00.00.H01"
broker:
  port: 99999
  reconect_max_s: 5
scanner:
  type: sane
  dpi: 50
  mode: sepia
local_api:
  host: 0.0.0.0
"""


def test_defaults_suit_a_counter_kiosk() -> None:
    """Only identity is required; scanner defaults to SANE, ADF, 300 dpi, colour, A4."""
    cfg = AgentConfig(device_id="kiosk-0001", unit="000.00.00.H01")
    assert isinstance(cfg.scanner, SaneScannerConfig)
    assert (cfg.scanner.dpi, cfg.scanner.mode, cfg.scanner.source) == (300, "color", "adf")
    assert (cfg.scanner.area.width_mm, cfg.scanner.area.height_mm) == (210.0, 297.0)
    assert cfg.local_api.host == "127.0.0.1"
    for name, field in AgentConfig.model_fields.items():
        assert field.description, f"{name} has no description"


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(GOOD + "folder:\n  path: /srv/inbox\n")
    cfg = load(path)
    assert cfg.broker.port == 1883 and cfg.folder is not None
    assert validate_config_main(str(path)) == 0


def test_every_error_has_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad device id, a port out of range, a mistyped key, a dpi too low, an unknown colour
    mode and a non-loopback endpoint: each reported with the line it is on; exit code 1."""
    path = tmp_path / "agent.yaml"
    path.write_text(BAD)
    assert validate_config_main(str(path)) == 1
    err = capsys.readouterr().err.splitlines()
    expected = {
        1: "device_id",
        4: "broker.port",
        5: "broker.reconect_max_s",
        8: "scanner.sane.dpi",
        9: "scanner.sane.mode",
        11: "local_api.host",
    }
    for line, key in expected.items():
        assert any(e.startswith(f"{path}:{line}: {key}:") for e in err), (line, key, err)
    assert len(err) == len(expected)


def test_cli_validate_config(tmp_path: Path) -> None:
    """``sohoa-device validate-config`` as a user runs it: one line per error, exit 1; a YAML
    syntax error also names its line."""
    path = tmp_path / "agent.yaml"
    path.write_text(GOOD + "scanner_typo: 1\n")
    done = subprocess.run([sys.executable, "-m", "device", "validate-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{path}:11: scanner_typo: Extra inputs are not permitted" in done.stderr
    path.write_text("device_id: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.errors[0].startswith(f"{path}:2:")


def test_cross_field_rules() -> None:
    """Reconnect max below min and a fleet URL without a scheme are refused; the fake scanner
    needs no hardware settings."""
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"device_id": "kiosk-0001", "unit": "u",
                                    "broker": {"reconnect_min_s": 10, "reconnect_max_s": 1}})
    with pytest.raises(ValidationError):
        AgentConfig(device_id="kiosk-0001", unit="u", fleet_url="fleet.example")
    cfg = AgentConfig.model_validate({"device_id": "kiosk-0001", "unit": "u", "scanner": {"type": "fake"}})
    assert isinstance(cfg.scanner, FakeScannerConfig)
    assert AgentConfig.model_validate({"device_id": "kiosk-0001", "unit": "u", "scanner": None}).scanner is None


def test_validate_config_imports_no_opencv_and_no_http_client(tmp_path: Path) -> None:
    """Checking a config file (on a machine being set up, in CI) loads the config models only:
    not the page pipeline (OpenCV), not the updater (httpx), not the MQTT client."""
    path = tmp_path / "device.yaml"
    path.write_text(GOOD + "camera:\n  type: fake\npdf:\n  dpi: 300\nupdater:\n  public_keys: [/etc/sohoa/k.pem]\n")
    probe = (
        "import sys\n"
        "from device.cli import main\n"
        "code = main(['validate-config', sys.argv[1]])\n"
        "heavy = ('cv2', 'httpx', 'paho', 'device.inference.pipeline', 'device.updater', 'device.dossier.pdf_writer')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "print('loaded:', loaded)\n"
        "raise SystemExit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout, done.stdout
