"""First boot: the kiosk's enrollment and settings, from the card's boot partition.

An admin prepares a batch of cards without a Linux machine: ``sohoa-fleet token issue --out DIR``
writes ``enrollment.token``, ``ca.crt`` and ``device-enrollment.yaml``; the admin copies the
folder's files into ``sohoa/`` on the boot partition (FAT: readable from any PC), and may add a
``device.yaml`` with this kiosk's settings (``device_id``, ``unit``, ``scanner``, ...).

At boot, before the agent (``sohoa-firstboot.service``), :func:`apply_boot_files`:

1. reads and checks everything (the token's shape, the CA certificate's PEM, the YAML); the agent
   config it composes (the image's base config < the enrollment sections < ``device.yaml``) must
   validate as :class:`device.config.AgentConfig`;
2. writes the token (0600), the CA certificate and the config to the data partition, fsynced;
3. only then deletes the files from the boot partition (the token first).

Bad input deletes nothing: the reason goes to ``sohoa/ERROR.txt`` on the boot partition, where the
admin who pulls the card finds it, and the agent keeps its previous config (if any).

The device id is the one in ``device.yaml``, or else made from the board's serial number
(``/proc/device-tree/serial-number`` on a Pi), or the DMI product UUID or the machine id on a PC.

>>> device_id_from_serial("10000000a1b2c3d4\\x00")
'kiosk-10000000a1b2c3d4'
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from device.config import AgentConfig
from device.durable import atomic_write, fsync_dir
from device.errors import SohoaError
from protocol.configfile import ConfigError, load_config
from protocol.topics import DEVICE_ID_PATTERN

log = logging.getLogger(__name__)

BOOT_FOLDER = "sohoa"
TOKEN_FILE = "enrollment.token"  # noqa: S105 - a file name, not a secret
CA_FILE = "ca.crt"
SNIPPET_FILE = "device-enrollment.yaml"
SETTINGS_FILE = "device.yaml"
ERROR_FILE = "ERROR.txt"
SERIAL_SOURCES = (
    Path("/proc/device-tree/serial-number"),
    Path("/sys/firmware/devicetree/base/serial-number"),
    Path("/sys/class/dmi/id/product_uuid"),
    Path("/etc/machine-id"),
)
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{8,512}$")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")
_SERIAL_JUNK = {"", "0", "0000000000000000", "00000000-0000-0000-0000-000000000000", "not settable", "default string"}


class BootFilesInvalid(SohoaError, ValueError):
    """The files on the boot partition cannot make a working kiosk; nothing was deleted."""


@dataclass(frozen=True)
class FirstBootPaths:
    """Where things are. On a kiosk: ``/boot/firmware``, ``/var/lib/sohoa`` (the data partition)
    and the image's ``/etc/sohoa/device.base.yaml``."""

    boot: Path = Path("/boot/firmware")
    data: Path = Path("/var/lib/sohoa")
    base_config: Path | None = Path("/etc/sohoa/device.base.yaml")
    serial_sources: tuple[Path, ...] = field(default=SERIAL_SOURCES)

    @property
    def folder(self) -> Path:
        return self.boot / BOOT_FOLDER

    @property
    def config(self) -> Path:
        """The agent's config, on the data partition (the root file system is read-only)."""
        return self.data / "config" / "device.yaml"

    @property
    def token(self) -> Path:
        return self.data / "secrets" / TOKEN_FILE

    @property
    def ca(self) -> Path:
        return self.data / "config" / CA_FILE


def device_id_from_serial(raw: str) -> str | None:
    """``kiosk-<serial>`` from a board serial, a DMI UUID or a machine id; None for junk."""
    serial = raw.strip().strip("\0").strip().lower()
    if serial in _SERIAL_JUNK:
        return None
    cleaned = re.sub(r"[^a-z0-9-]", "", serial).strip("-")
    candidate = f"kiosk-{cleaned}"[:64].rstrip("-")
    return candidate if re.match(DEVICE_ID_PATTERN, candidate) and cleaned else None


def board_device_id(sources: tuple[Path, ...] = SERIAL_SOURCES) -> str | None:
    """The first usable serial among ``sources``, as a device id."""
    for path in sources:
        try:
            raw = path.read_bytes().decode("ascii", errors="replace")
        except OSError:
            continue
        made = device_id_from_serial(raw)
        if made is not None:
            return made
    return None


def _yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a PC editor may add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise BootFilesInvalid(f"{path.name}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        raise BootFilesInvalid(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BootFilesInvalid(f"{path.name}: must be a mapping of settings")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Prepared:
    """What will be written: the config (as a mapping) and the secrets' bytes."""

    config: dict[str, Any]
    token: bytes | None
    ca: bytes | None
    sources: list[Path]


def prepare(paths: FirstBootPaths) -> Prepared | None:
    """Read and check the boot partition's files; None when there are none (not a first boot)."""
    folder = paths.folder
    if not folder.is_dir():
        return None
    present = {name: folder / name for name in (TOKEN_FILE, CA_FILE, SNIPPET_FILE, SETTINGS_FILE)
               if (folder / name).is_file()}
    if not present:
        return None
    token: bytes | None = None
    if TOKEN_FILE in present:
        text = present[TOKEN_FILE].read_bytes().decode("ascii", errors="replace").strip()
        if not _TOKEN.match(text):
            raise BootFilesInvalid(f"{TOKEN_FILE}: not an enrollment token (one line, as 'token issue' wrote it)")
        token = f"{text}\n".encode()
    ca: bytes | None = None
    if CA_FILE in present:
        ca = present[CA_FILE].read_bytes()
        if not _PEM.search(ca):
            raise BootFilesInvalid(f"{CA_FILE}: not a PEM certificate")
    config: dict[str, Any] = {}
    if paths.base_config is not None and paths.base_config.is_file():
        config = _yaml_mapping(paths.base_config)
    with contextlib.suppress(FileNotFoundError):
        if paths.config.is_file():  # a re-provisioned kiosk keeps what the new files do not change
            config = _merge(config, _yaml_mapping(paths.config))
    if SNIPPET_FILE in present:
        snippet = _yaml_mapping(present[SNIPPET_FILE])
        unknown = set(snippet) - {"identity", "enrollment"}
        if unknown:
            raise BootFilesInvalid(f"{SNIPPET_FILE}: unexpected sections {sorted(unknown)}")
        config = _merge(config, snippet)
    if SETTINGS_FILE in present:
        config = _merge(config, _yaml_mapping(present[SETTINGS_FILE]))
    enrollment = config.get("enrollment")
    if isinstance(enrollment, dict):
        # Where the secrets live on this image, whatever paths the issuing host assumed.
        if token is not None or "token_file" in enrollment:
            enrollment["token_file"] = str(paths.token)
        if ca is not None:
            enrollment["ca_file"] = str(paths.ca)
        if "unit" not in config and enrollment.get("unit_code"):
            config["unit"] = enrollment["unit_code"]
    if token is not None and not isinstance(enrollment, dict):
        raise BootFilesInvalid(f"{TOKEN_FILE} without {SNIPPET_FILE}: copy every file 'token issue --out' wrote")
    if "device_id" not in config:
        made = board_device_id(paths.serial_sources)
        if made is None:
            raise BootFilesInvalid(f"no device_id in {SETTINGS_FILE} and no board serial number to make one from")
        config["device_id"] = made
    try:
        load_config(AgentConfig, text=yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    except ConfigError as exc:
        raise BootFilesInvalid("the resulting device config is invalid: " + "; ".join(
            line.replace("<config>:", "") for line in exc.errors)) from None
    return Prepared(config, token, ca, list(present.values()))


def apply_boot_files(paths: FirstBootPaths) -> str | None:
    """Move the boot partition's files to the data partition. Returns the device id configured,
    None when there was nothing to do; raises :class:`BootFilesInvalid` (also written to
    ``sohoa/ERROR.txt``) on bad input, deleting nothing."""
    try:
        prepared = prepare(paths)
    except BootFilesInvalid as exc:
        _report_error(paths, str(exc))
        raise
    if prepared is None:
        return None
    if prepared.token is not None:
        paths.token.parent.mkdir(parents=True, exist_ok=True)
        paths.token.parent.chmod(0o700)
        atomic_write(paths.token, prepared.token)
        paths.token.chmod(0o600)
    if prepared.ca is not None:
        atomic_write(paths.ca, prepared.ca)
    header = "# Written at first boot from the boot partition's sohoa/ folder; edit here, not there.\n"
    body = yaml.safe_dump(prepared.config, sort_keys=False, allow_unicode=True)
    atomic_write(paths.config, (header + body).encode())
    # Everything is durable on the data partition: now the copies on the boot partition can go,
    # the token first (a card pulled out later carries no secret).
    for source in sorted(prepared.sources, key=lambda p: p.name != TOKEN_FILE):
        source.unlink()
    (paths.folder / ERROR_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # FAT: directory fsync may not be supported
        fsync_dir(paths.folder)
    device_id = str(prepared.config["device_id"])
    log.info("first boot: configured as %s from the boot partition; its files were removed", device_id)
    return device_id


def _report_error(paths: FirstBootPaths, message: str) -> None:
    log.error("first boot: %s", message)
    try:
        (paths.folder / ERROR_FILE).write_text(
            f"Sohoa first boot could not use these files; nothing was deleted.\r\n{message}\r\n")
    except OSError as exc:
        log.warning("cannot write %s on the boot partition: %s", ERROR_FILE, exc)


def main(argv: list[str] | None = None) -> int:
    """``sohoa-device firstboot``: run by ``sohoa-firstboot.service`` before the agent."""
    parser = argparse.ArgumentParser(prog="sohoa-device firstboot", description=__doc__.split("\n", 1)[0])
    defaults = FirstBootPaths()
    parser.add_argument("--boot", type=Path, default=defaults.boot, help="the boot partition's mount point")
    parser.add_argument("--data", type=Path, default=defaults.data, help="the data partition's Sohoa directory")
    parser.add_argument("--base-config", type=Path, default=defaults.base_config, help="the image's base config")
    args = parser.parse_args(argv)
    paths = FirstBootPaths(boot=args.boot, data=args.data, base_config=args.base_config)
    try:
        device_id = apply_boot_files(paths)
    except BootFilesInvalid as exc:
        sys.stderr.write(f"sohoa-device firstboot: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"sohoa-device firstboot: {exc}\n")
        return 1
    if device_id is None and not paths.config.exists():
        sys.stderr.write(f"sohoa-device firstboot: no {paths.config} and no files in {paths.folder}\n")
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
