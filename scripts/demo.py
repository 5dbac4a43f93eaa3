"""``make demo``: the whole system on one machine, on embedded defaults.

Starts mosquitto on 127.0.0.1:1883, the fleet manager on http://127.0.0.1:8000 and one virtual
kiosk that scans through the SANE ``test`` backend (enabled by a SANE_CONFIG_DIR of its own: no
system file is touched) and imports a few sample pages the project renders itself. Everything
lives under ``var/demo/``; Ctrl-C stops it all.

    python -m scripts.demo [--fresh] [--scan-every 30]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "demo"
PY = sys.executable
DEVICE_ID = "kiosk-demo-01"
UNIT = "25"  # Phú Thọ's province code under Decision 124/2004 (sample; the unit tree comes later)
SAMPLE_DPI = 200
SAMPLE_TYPES = ("dossier_receipt", "application_form", "birth_certificate", "id_card", "receipt")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError):
            if check():
                return
        time.sleep(0.2)
    raise SystemExit(f"demo: {what} did not come up within {timeout:.0f} s (logs in {VAR})")


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - fixed loopback URL
        return bool(resp.status == 200)


def _render_samples(inbox: Path) -> int:
    """Sample pages rendered by the project's own generator: fictitious people, no real papers."""
    try:
        from PIL import Image

        from training.generator import render
    except ImportError as exc:
        print(f"demo: no sample pages ({exc.name} is missing); the scanner still feeds pages")
        return 0
    inbox.mkdir(parents=True, exist_ok=True)
    for i, doctype in enumerate(SAMPLE_TYPES, 1):
        image = render(doctype, seed=i, dpi=SAMPLE_DPI)
        # The file says its resolution, as a scanner's would: the pipeline checks >= 200 dpi.
        Image.fromarray(image[:, :, ::-1]).save(inbox / f"sample-{i:02d}-{doctype}.jpg", quality=92,
                                                dpi=(SAMPLE_DPI, SAMPLE_DPI))
    return len(SAMPLE_TYPES)


def _write_configs(scan_every: float) -> dict[str, Path]:
    paths = {name: VAR / name for name in ("mqtt", "fleet", "device", "sane", "inbox")}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    log_file = VAR / "mosquitto.log"
    log_file.touch()
    if os.geteuid() == 0:
        # Started as root, mosquitto drops to its own user: let that user write its log and sessions.
        with suppress(KeyError):
            user = pwd.getpwnam("mosquitto")
            for path in (paths["mqtt"], log_file):
                os.chown(path, user.pw_uid, user.pw_gid)
    (VAR / "mosquitto.conf").write_text(
        "listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {paths['mqtt']}/\nlog_dest file {VAR / 'mosquitto.log'}\n"
    )
    (paths["sane"] / "dll.conf").write_text("test\n")
    (paths["sane"] / "test.conf").write_text(
        'number_of_devices 1\nmode Color\nresolution 200\ntest-picture "Color pattern"\n'
    )
    (VAR / "fleet.yaml").write_text(
        "# The demo's fleet manager: SQLite and the file store under var/demo/fleet.\n"
        f"database:\n  url: sqlite:///{paths['fleet']}/fleet.db\n"
        f"storage:\n  dir: {paths['fleet']}/files\n"
        "ingest:\n  heartbeat_timeout_s: 45\n"
    )
    (VAR / "device.yaml").write_text(
        "# The demo's virtual kiosk: the SANE test backend's feeder and a folder of sample pages.\n"
        f"device_id: {DEVICE_ID}\nunit: '{UNIT}'\n"
        "fleet_url: http://127.0.0.1:8000\n"
        f"state_dir: {paths['device']}\n"
        "min_free_bytes: 104857600\n"
        "scanner:\n  type: sane\n  device: auto\n  source: adf\n  dpi: 200\n  max_pages: 3\n"
        f"folder:\n  path: {paths['inbox']}\n  interval_s: 2\n"
        "telemetry:\n  interval_s: 10\n"
        f"triggers:\n  scan_at_start: true\n  scan_every_s: {scan_every}\n"
        "usb_watch:\n  enabled: false\n"
    )
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="forget the previous demo's data first")
    parser.add_argument("--scan-every", type=float, default=60.0, help="seconds between scanner batches")
    args = parser.parse_args(argv)

    if args.fresh and VAR.exists():
        shutil.rmtree(VAR)
    for port, who in ((1883, "the MQTT broker"), (8000, "the fleet manager")):
        if not _port_free(port):
            print(f"demo: port {port} on 127.0.0.1 is taken; stop what uses it ({who} needs it)", file=sys.stderr)
            return 1
    paths = _write_configs(args.scan_every)
    samples = _render_samples(paths["inbox"])

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = (VAR / f"{name}.log").open("ab")
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT, env={**env, **(extra_env or {})},
                                             stdout=log, stderr=subprocess.STDOUT)))

    stopping = False

    def stop(_sig: int = 0, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        start("mosquitto", [mosquitto, "-c", str(VAR / "mosquitto.conf")])
        _wait("mosquitto", lambda: _tcp_open(1883))
        start("fleet", [PY, "-m", "fleet", "serve", "--config", str(VAR / "fleet.yaml")])
        _wait("the fleet manager", lambda: _http_ok("http://127.0.0.1:8000/healthz"), timeout=60)
        start("device", [PY, "-m", "device", "run", "--config", str(VAR / "device.yaml")],
              {"SANE_CONFIG_DIR": str(paths["sane"])})
        print(
            "\nSohoa demo is running.\n"
            "  Fleet manager:  http://127.0.0.1:8000/       (devices and the latest pages)\n"
            "  API docs:       http://127.0.0.1:8000/docs\n"
            "  Metrics:        http://127.0.0.1:8000/metrics\n"
            "  MQTT broker:    mqtt://127.0.0.1:1883\n"
            f"  Virtual kiosk:  {DEVICE_ID}, scanning the SANE test backend every {args.scan_every:.0f} s"
            f"{f' and importing {samples} sample pages' if samples else ''}\n"
            f"  Logs and data:  {VAR}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"demo: {name} stopped (exit {proc.returncode}); see {VAR / (name + '.log')}",
                          file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        print("demo: stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
