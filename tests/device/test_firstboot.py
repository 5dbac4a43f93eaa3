"""First boot from the boot partition: a temporary directory stands for the FAT partition, another
for the data partition. The files are the ones ``sohoa-fleet token issue --out`` writes (names
checked against the fleet's own constants). Bad input deletes nothing and says why in ERROR.txt."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from device.config import load
from device.firstboot import (
    BOOT_FOLDER,
    CA_FILE,
    ERROR_FILE,
    SETTINGS_FILE,
    SNIPPET_FILE,
    TOKEN_FILE,
    BootFilesInvalid,
    FirstBootPaths,
    apply_boot_files,
    board_device_id,
    device_id_from_serial,
    main,
)
from fleet.enroll import cli as fleet_cli
from provisioning.ca import CertificateAuthority

TOKEN = "et1.0123456789abcdef.c2VjcmV0LXNlY3JldC1zZWNyZXQ"
UNIT = "25"


@pytest.fixture
def ca_pem(tmp_path: Path) -> bytes:
    return CertificateAuthority.create(tmp_path / "ca").certificate_pem


def card(tmp_path: Path, ca_pem: bytes, *, settings: str | None = None, token: str = TOKEN) -> FirstBootPaths:
    """A boot partition with what ``token issue --out`` writes, copied into ``sohoa/``, a data
    partition, the image's base config and a board serial."""
    boot = tmp_path / "boot"
    folder = boot / BOOT_FOLDER
    folder.mkdir(parents=True)
    (folder / TOKEN_FILE).write_text(f"{token}\n")
    (folder / CA_FILE).write_bytes(ca_pem)
    (folder / SNIPPET_FILE).write_text(
        "# Enrollment for unit 25: token 0123456789abcdef, up to 1 device(s), expires 2026-12-31T00:00.\n"
        + yaml.safe_dump({
            "identity": {"dir": "/var/lib/sohoa/identity"},
            "enrollment": {"fleet_url": "https://fleet.example.vn", "unit_code": UNIT,
                           "token_file": "/etc/sohoa/secrets/enrollment.token", "ca_file": "/etc/sohoa/ca.crt"},
        }, sort_keys=False))
    if settings is not None:
        (folder / SETTINGS_FILE).write_text(settings)
    base = tmp_path / "device.base.yaml"
    base.write_text("broker:\n  host: fleet.example.vn\n  port: 8883\nscanner:\n  type: sane\n  dpi: 300\n")
    serial = tmp_path / "serial-number"
    serial.write_bytes(b"10000000a1b2c3d4\x00")
    return FirstBootPaths(boot=boot, data=tmp_path / "data", base_config=base, serial_sources=(serial,))


def test_file_names_are_what_token_issue_writes() -> None:
    assert (TOKEN_FILE, CA_FILE, SNIPPET_FILE) == (fleet_cli.TOKEN_FILE, fleet_cli.CA_FILE, fleet_cli.SNIPPET_FILE)


def test_files_move_to_the_data_partition_and_leave_the_boot_partition(tmp_path: Path, ca_pem: bytes) -> None:
    paths = card(tmp_path, ca_pem)
    assert apply_boot_files(paths) == "kiosk-10000000a1b2c3d4"
    assert paths.token.read_text().strip() == TOKEN
    assert stat.S_IMODE(paths.token.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.token.parent.stat().st_mode) == 0o700
    assert paths.ca.read_bytes() == ca_pem
    assert sorted(p.name for p in paths.folder.iterdir()) == []  # no secret left on the FAT partition
    config = load(paths.config)  # the agent's own loader takes it
    assert config.device_id == "kiosk-10000000a1b2c3d4" and config.unit == UNIT
    assert config.enrollment is not None and config.enrollment.token_file == paths.token
    assert config.enrollment.ca_file == paths.ca and config.enrollment.fleet_url == "https://fleet.example.vn"
    assert config.broker.port == 8883  # the image's base config survives
    assert apply_boot_files(paths) is None  # second boot: nothing to do, nothing changed
    assert load(paths.config) == config


def test_device_settings_from_the_card_win(tmp_path: Path, ca_pem: bytes) -> None:
    settings = "\ufeffdevice_id: kiosk-xa-phu-1\nunit: '25'\nscanner:\n  dpi: 200\n"  # a BOM from Notepad
    paths = card(tmp_path, ca_pem, settings=settings)
    assert apply_boot_files(paths) == "kiosk-xa-phu-1"
    config = load(paths.config)
    assert config.scanner is not None and config.scanner.dpi == 200  # merged into the base's scanner
    assert config.broker.host == "fleet.example.vn"


@pytest.mark.parametrize(
    ("settings", "token", "reason"),
    [
        ("device_id: Kiosk One\n", TOKEN, "device_id"),
        ("scanner: [unclosed\n", TOKEN, "device.yaml:2: not valid YAML"),
        ("- a list\n", TOKEN, "must be a mapping"),
        ("no_such_key: 1\n", TOKEN, "no_such_key"),
        (None, "not a token!", "not an enrollment token"),
    ],
)
def test_bad_input_deletes_nothing_and_says_why(
    tmp_path: Path, ca_pem: bytes, settings: str | None, token: str, reason: str
) -> None:
    paths = card(tmp_path, ca_pem, settings=settings, token=token)
    before = {p.name: p.read_bytes() for p in paths.folder.iterdir()}
    with pytest.raises(BootFilesInvalid, match=reason):
        apply_boot_files(paths)
    after = {p.name: p.read_bytes() for p in paths.folder.iterdir() if p.name != ERROR_FILE}
    assert after == before
    assert reason.split(":")[0] in (paths.folder / ERROR_FILE).read_text()
    assert not paths.config.exists() and not paths.token.exists()
    assert main(["--boot", str(paths.boot), "--data", str(paths.data), "--base-config", str(tmp_path / "none")]) == 1


def test_a_bad_ca_file_and_a_lonely_token_are_refused(tmp_path: Path, ca_pem: bytes) -> None:
    paths = card(tmp_path, ca_pem)
    (paths.folder / CA_FILE).write_text("hello")
    with pytest.raises(BootFilesInvalid, match="not a PEM certificate"):
        apply_boot_files(paths)
    (paths.folder / CA_FILE).write_bytes(ca_pem)
    (paths.folder / SNIPPET_FILE).unlink()
    with pytest.raises(BootFilesInvalid, match=r"without device-enrollment\.yaml"):
        apply_boot_files(paths)
    assert (paths.folder / TOKEN_FILE).exists()


def test_device_id_from_board_serials(tmp_path: Path) -> None:
    assert device_id_from_serial("10000000A1B2C3D4\x00") == "kiosk-10000000a1b2c3d4"
    assert device_id_from_serial("4C4C4544-0042-3510-8051-B4C04F4B4E32\n") == (
        "kiosk-4c4c4544-0042-3510-8051-b4c04f4b4e32")
    for junk in ("", "0000000000000000\x00", "Not Settable", "00000000-0000-0000-0000-000000000000", "***"):
        assert device_id_from_serial(junk) is None
    missing, junk_file, good = tmp_path / "missing", tmp_path / "junk", tmp_path / "machine-id"
    junk_file.write_text("0\n")
    good.write_text("3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b\n")
    assert board_device_id((missing, junk_file, good)) == "kiosk-3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b"
    assert board_device_id((missing,)) is None


def test_no_serial_and_no_device_id_is_an_error(tmp_path: Path, ca_pem: bytes) -> None:
    paths = card(tmp_path, ca_pem)
    bare = FirstBootPaths(boot=paths.boot, data=paths.data, base_config=paths.base_config, serial_sources=())
    with pytest.raises(BootFilesInvalid, match="no board serial"):
        apply_boot_files(bare)


def test_cli_without_files_and_without_a_config_fails(tmp_path: Path) -> None:
    assert main(["--boot", str(tmp_path / "boot"), "--data", str(tmp_path / "data")]) == 1
