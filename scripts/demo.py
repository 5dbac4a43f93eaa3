"""``make demo``: the whole system on one machine, enrolled and over TLS, in one command.

Creates (or reloads) a local certificate authority with ``python -m provisioning init``, starts
mosquitto with the mutual-TLS configuration it writes (127.0.0.1:8883, client certificates and a
per-device ACL), the fleet manager over HTTPS (https://127.0.0.1:8000, ingest over TLS as
``fleet.ingest``), then, as the fleet's first admin, loads the sample unit tree (fictitious codes, names
marked [THỬ]) with targets and received dossiers, creates an enrollment token for its commune 99001
through the API and starts one virtual kiosk that enrolls with it. The kiosk scans through the
SANE ``test`` backend (its own SANE_CONFIG_DIR: no system file is touched) and imports a few
sample pages the project renders itself. The demo waits until the kiosk is enrolled, online and
its pages are at the fleet, then files one dossier through the kiosk screen (a typed receipt code,
a feeder batch, finish) and waits until the fleet has signed its PDF and the reference receiver
has acknowledged it, then prints the URL and the admin's first-login name and password
(on the terminal only). Everything lives under ``var/demo/``; a second run reuses it (the kiosk
is already enrolled), ``--fresh`` starts over. Ctrl-C or SIGTERM stops it all.

    python -m scripts.demo [--fresh] [--scan-every 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import Any

from fleet.auth.cli import INITIAL_ADMIN
from fleet.delivery.contract import MANIFEST_FILE
from fleet.progress import periods
from fleet.progress.units import sample_csv
from provisioning.identity import DeviceIdentity

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "demo"
PKI = VAR / "pki"
PY = sys.executable
DEVICE_ID = "kiosk-demo-01"
UNIT = "99001"  # a commune of the sample unit tree (fleet/progress/sample_units.csv: marked, fictitious codes)
KIOSK_PORT = 8766
TARGETS = {"province": 0.5, "district": 0.4, "commune": 0.35}  # the minimum rates the decree sets per tier
SAMPLE_RECEIVED = {"99001": 240, "99003": 180, "99004": 150}
"""Dossiers the sample communes received in a month (sample figures, as the one-stop system would
send them)."""
HTTP_PORT = 8000
MQTT_PORT = 8883
HANDOFF_PORT = 8090
FLEET_URL = f"https://127.0.0.1:{HTTP_PORT}"
SAMPLE_DPI = 200
SAMPLE_TYPES = ("dossier_receipt", "application_form", "birth_certificate", "id_card", "receipt")
KIOSK_TIMEOUT_S = 300.0
INGEST_ID = "fleet.ingest"  # the fleet's MQTT identities (certificate CNs under var/demo/pki/ingest)
OPS_ID = "fleet.ops"


class DemoError(Exception):
    """Something the demo needs did not happen: one line for the user, the logs say more."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


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
        path = inbox / f"sample-{i:02d}-{doctype}.jpg"
        image = render(doctype, seed=i, dpi=SAMPLE_DPI)
        # The file says its resolution, as a scanner's would: the pipeline checks >= 200 dpi.
        Image.fromarray(image[:, :, ::-1]).save(path, quality=92, dpi=(SAMPLE_DPI, SAMPLE_DPI))
    return len(SAMPLE_TYPES)


def _mosquitto_can_reach(path: Path) -> bool:
    """Whether the ``mosquitto`` user (which mosquitto drops to when started as root) can enter
    every directory down to ``path``: a checkout under /root (0700) would hide its key."""
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return True  # no such user: mosquitto stays root (or runs as whoever started it)
    groups = {user.pw_gid} | {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _provision() -> Path:
    """``python -m provisioning init`` (idempotent: the CA key is created once, 0600, never
    replaced); returns the broker's mosquitto.conf. Its paths are absolute: as root, the broker
    files are handed to the ``mosquitto`` user, which must be able to walk down to them."""
    PKI.mkdir(parents=True, exist_ok=True)
    # Two fleet identities: the ingest's and the operations publisher's (commands, settings); the
    # broker makes a certificate's CN the client id, so they cannot share one. A PKI from an earlier
    # demo without fleet.ops gets it here: init issues the identities that are missing.
    args = [PY, "-m", "provisioning", "init", str(PKI), "--bind", "127.0.0.1", "--tls-port", str(MQTT_PORT),
            "--host", "localhost", "--host", "127.0.0.1", "--ingest", INGEST_ID, "--ingest", OPS_ID]
    if os.geteuid() == 0:
        for directory in (VAR, PKI):  # ours: let the broker's user pass through (ca/ stays 0700)
            directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
        if not _mosquitto_can_reach(PKI):
            print(f"demo: the 'mosquitto' user cannot enter {ROOT}; the demo broker runs as root")
            args += ["--run-as", "root"]
    with (VAR / "provisioning.log").open("ab") as log:
        done = subprocess.run(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise DemoError(f"python -m provisioning init failed; see {VAR / 'provisioning.log'}")
    return PKI / "broker" / "mosquitto.conf"


def _signing_keys() -> Path:
    """The DEMO organisation certificate the fleet signs documents with (made once, with
    ``sohoa-fleet signing demo-cert``: its own demo CA, a PKCS#12 file, the passphrase in a 0600
    file). A province uses its HSM instead (README: signing)."""
    folder = VAR / "signing"
    if not (folder / "organisation.p12").exists():
        with (VAR / "signing.log").open("ab") as log:
            done = subprocess.run([PY, "-m", "fleet", "signing", "demo-cert", "--out", str(folder)], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise DemoError(f"sohoa-fleet signing demo-cert failed; see {VAR / 'signing.log'}")
    return folder


def _write_configs(scan_every: float) -> dict[str, Path]:
    paths = {name: VAR / name for name in ("fleet", "device", "sane", "inbox")}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    paths["identity"] = paths["device"] / "identity"
    paths["token"] = VAR / "secrets" / "enrollment.token"
    paths["admin_password"] = paths["fleet"] / "initial-admin-password"
    paths["signing"] = _signing_keys()
    (paths["sane"] / "dll.conf").write_text("test\n")
    (paths["sane"] / "test.conf").write_text(
        'number_of_devices 1\nmode Color\nresolution 200\ntest-picture "Color pattern"\n'
    )
    (VAR / "fleet.yaml").write_text(
        "# The demo's fleet manager: SQLite and the file store under var/demo/fleet, HTTPS with a\n"
        "# certificate from the demo CA, ingest and operations over mutual TLS, enrollment on.\n"
        f"database:\n  url: sqlite:///{paths['fleet']}/fleet.db\n"
        f"storage:\n  dir: {paths['fleet']}/files\n"
        f"broker:\n  host: 127.0.0.1\n  port: {MQTT_PORT}\n  client_id: {INGEST_ID}\n"
        f"  ca_file: {PKI}/ca/ca.crt\n  cert_file: {PKI}/ingest/{INGEST_ID}.crt\n"
        f"  key_file: {PKI}/ingest/{INGEST_ID}.key\n"
        f"  ops_cert_file: {PKI}/ingest/{OPS_ID}.crt\n  ops_key_file: {PKI}/ingest/{OPS_ID}.key\n"
        "ingest:\n  heartbeat_timeout_s: 45\n"
        f"http:\n  host: 127.0.0.1\n  port: {HTTP_PORT}\n"
        f"pki:\n  ca_dir: {PKI}/ca\n  crl_file: {PKI}/broker/crl.pem\n  broker_pid_file: {VAR}/mosquitto.pid\n"
        f"enrollment:\n  broker_url: mqtts://127.0.0.1:{MQTT_PORT}\n  public_url: {FLEET_URL}\n"
        f"auth:\n  cookie_secure: true\n  initial_admin_file: {paths['admin_password']}\n"
        "# Each closed document signed PAdES B-B with the DEMO organisation certificate (a province: its HSM).\n"
        f"signing:\n  enabled: true\n  interval_s: 10\n  source:\n    type: pkcs12\n"
        f"    file: {paths['signing']}/organisation.p12\n    passphrase_file: {paths['signing']}/p12-passphrase\n"
        "# Each signed document delivered to the reference receiver of the hand-off contract (docs/handoff.md).\n"
        f"delivery:\n  interval_s: 5\n  targets:\n    - type: http\n      name: motcua-demo\n"
        f"      url: http://127.0.0.1:{HANDOFF_PORT}\n"
    )
    (VAR / "device.yaml").write_text(
        "# The demo's virtual kiosk: the SANE test backend's feeder and a folder of sample pages.\n"
        "# It enrolls on its first start with the token the demo puts in secrets/, then talks\n"
        "# mutual TLS to the broker and signs its uploads.\n"
        f"device_id: {DEVICE_ID}\nunit: '{UNIT}'\n"
        f"fleet_url: {FLEET_URL}\n"
        f"broker:\n  host: 127.0.0.1\n  port: {MQTT_PORT}\n"
        f"state_dir: {paths['device']}\n"
        "min_free_bytes: 104857600\n"
        "scanner:\n  type: sane\n  device: auto\n  source: adf\n  dpi: 200\n  max_pages: 3\n"
        f"folder:\n  path: {paths['inbox']}\n  interval_s: 2\n"
        "telemetry:\n  interval_s: 10\n"
        f"triggers:\n  scan_at_start: true\n  scan_every_s: {scan_every}\n"
        "usb_watch:\n  enabled: false\n"
        f"kiosk:\n  enabled: true\n  port: {KIOSK_PORT}\n"
        f"identity:\n  dir: {paths['identity']}\n"
        f"enrollment:\n  fleet_url: {FLEET_URL}\n  unit_code: '{UNIT}'\n  token_file: {paths['token']}\n"
        f"  ca_file: {PKI}/ca/ca.crt\n  retry_min_s: 1\n  retry_max_s: 10\n"
    )
    return paths


class Fleet:
    """The demo's HTTPS client of the fleet API, trusting only the demo CA."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(PKI / "ca" / "ca.crt"))
        self.token: str | None = None

    def call(self, method: str, path: str, body: dict[str, Any] | list[Any] | str | None = None,
             timeout: float = 10.0) -> Any:
        """``body``: JSON, or a ``str`` sent as CSV (the import endpoints)."""
        headers = {"Accept": "application/json"}
        if isinstance(body, str):
            headers["Content-Type"] = "text/csv; charset=utf-8"
        elif body is not None:
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(FLEET_URL + path, method=method, headers=headers,  # noqa: S310 - loopback
                                         data=data)
        with urllib.request.urlopen(request, context=self.context, timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")

    def healthy(self) -> bool:
        self.call("GET", "/healthz", timeout=2)
        return True

    def login(self, name: str, password: str) -> bool:
        try:
            self.token = str(self.call("POST", "/api/v1/auth/login", {"name": name, "password": password})["token"])
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 429):
                return False
            raise
        return True


class Demo:
    """The demo's processes, started in order and stopped in reverse (kiosk, fleet, broker)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def on_signal(self, _sig: int = 0, _frame: FrameType | None = None) -> None:
        self.stopping = True

    def start(self, name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (VAR / f"{name}.log").open("ab") as log:
            # Its own process group: Ctrl-C reaches only the demo, which stops the parts in order.
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=0)
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        """Raise when a part has stopped on its own."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise DemoError(f"{name} stopped (exit {proc.returncode}); see {VAR / (name + '.log')}")

    def wait(self, what: str, ready: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll ``ready`` until it holds (True), the user stops the demo (False) or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.stopping:
            self.check()
            with suppress(OSError, ValueError, KeyError):
                if ready():
                    return True
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not happen within {timeout:.0f} s (logs in {VAR})")
            time.sleep(0.3)
        return False

    def stop_all(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    print(f"demo: {name} did not stop within 20 s; killed", file=sys.stderr)
                    proc.kill()
                    proc.wait()
        (VAR / "mosquitto.pid").unlink(missing_ok=True)


def _write_token(path: Path, token: str) -> None:
    """The enrollment token into the kiosk's secrets directory (0700), file 0600 from the first
    byte; the agent deletes it once enrolled."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")


def _first_admin(fleet: Fleet, password_file: Path) -> str | None:
    """Log in as the first admin with the password ``serve`` wrote; None when that file is gone
    or no longer holds the password (an admin changed it)."""
    try:
        password = password_file.read_text().strip()
    except FileNotFoundError:
        return None
    return password if fleet.login(INITIAL_ADMIN, password) else None


def _load_sample_progress(fleet: Fleet, today: dt.date) -> None:
    """The sample unit tree, the decree's targets per tier and last month's and this month's
    received dossiers of its communes, so ``/progress`` has something to show (sample data: the
    unit names say so, the codes are fictitious). Re-running replaces the same figures."""
    units = fleet.call("POST", "/api/v1/units/import", sample_csv())
    this_month = today.strftime("%Y-%m")
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    for tier, rate in TARGETS.items():
        fleet.call("PUT", "/api/v1/progress/targets", {"tier": tier, "period_from": last_month, "rate": rate})
    received = [{"unit_code": code, "period": period, "received": count * days // 30}
                for code, count in SAMPLE_RECEIVED.items()
                for period, days in ((last_month, 30), (this_month, today.day))]
    fleet.call("POST", "/api/v1/progress/received", received)
    print(f"demo: sample unit tree loaded ({units['inserted']} new units, codes 99…, names marked [THỬ]), "
          f"targets {', '.join(f'{t} {r:.0%}' for t, r in TARGETS.items())}, received dossiers for "
          f"{last_month} and {this_month}")


def _kiosk_online(fleet: Fleet, since: dt.datetime) -> bool:
    """The kiosk is online in its unit and the fleet heard from it during this run (a second run
    finds last run's row)."""
    rows: list[dict[str, Any]] = fleet.call("GET", "/api/v1/devices")
    row = next((row for row in rows if row.get("id") == DEVICE_ID), None)
    return (row is not None and bool(row["online"]) and row.get("unit") == UNIT
            and dt.datetime.fromisoformat(row["last_seen"]) >= since)


def _pages_held(fleet: Fleet, since: dt.datetime) -> int:
    """Pages captured during this run whose files reached the fleet."""
    query = urllib.parse.urlencode({"device_id": DEVICE_ID, "since": since.isoformat(), "limit": 1000})
    rows: list[dict[str, Any]] = fleet.call("GET", f"/api/v1/pages?{query}")
    return sum(1 for row in rows if row.get("file_available"))


class Kiosk:
    """The demo's hands on the kiosk screen (its loopback JSON API, as the screen's buttons use it)."""

    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{KIOSK_PORT}"

    def call(self, action: str | None = None, body: dict[str, Any] | None = None, timeout: float = 30.0
             ) -> dict[str, Any]:
        """POST ``/api/<action>``, or GET ``/api/state`` without one; the screen's state back."""
        data = None if action is None else json.dumps(body or {}).encode()
        request = urllib.request.Request(f"{self.url}/api/{action or 'state'}", data=data,  # noqa: S310 - loopback
                                         method="GET" if action is None else "POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _demo_dossier_code() -> str:
    """A fictitious receipt number in the national shape (agency 000.00.99.H99 does not exist),
    new on each run."""
    now = dt.datetime.now(dt.UTC)
    return f"000.00.99.H99-{periods.today(now):%y%m%d}-{now.hour * 360 + now.minute * 6 + now.second // 10:04d}"


def _file_a_dossier(demo: Demo, started: float) -> Path | None:
    """Walk one dossier through the kiosk as a citizen would: type the receipt's code, feed the
    scanner, finish. The kiosk sends its pages and PDF, the fleet signs the PDF with the demo
    organisation certificate and delivers it to the reference receiver, which files it and
    acknowledges it in its manifest. Returns the receiver's folder for the dossier (None: the
    user stopped the demo)."""
    kiosk = Kiosk()
    if not demo.wait("the kiosk screen", lambda: kiosk.call()["state"] in ("idle", "closed"), timeout=60):
        return None
    code = _demo_dossier_code()
    kiosk.call("open", {"code": code})
    asked = [0.0]
    pages: list[int] = []

    def scanned() -> bool:
        """The dossier's pages are in; else (the scanner was busy with a scan the kiosk's own
        trigger started, so the feeder batch did not run) ask for it again, every few seconds."""
        state = kiosk.call()
        if state["state"] == "review" and state["pages"]:
            pages.append(len(state["pages"]))
            return True
        if state["state"] == "open" and not state["pages"] and time.monotonic() - asked[0] > 5:
            asked[0] = time.monotonic()
            kiosk.call("scan")
        return False

    if not demo.wait("the dossier's pages", scanned, timeout=180):
        return None
    try:  # finishing makes the PDFs (with their text layer when Tesseract is there): give it time
        kiosk.call("finish", timeout=KIOSK_TIMEOUT_S)
    except OSError as exc:
        raise DemoError(f"the kiosk did not close dossier {code}: {exc} (see {VAR / 'device.log'})") from None
    print(f"demo: dossier {code} closed on the kiosk with {pages[-1]} page(s) "
          f"({time.monotonic() - started:.0f} s)")
    folder = VAR / "handoff" / code
    manifest = folder / MANIFEST_FILE
    if not demo.wait(f"dossier {code} signed and acknowledged by the reference receiver", manifest.exists,
                     timeout=KIOSK_TIMEOUT_S):
        return None
    filed = sorted(p.name for p in folder.glob("*.pdf"))
    print(f"demo: dossier {code} signed at the fleet and acknowledged by the reference receiver "
          f"({', '.join(filed)}; {time.monotonic() - started:.0f} s)")
    return folder


def _run(demo: Demo, scan_every: float, started: float) -> None:
    run_since = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for port, who in ((MQTT_PORT, "the MQTT broker"), (HTTP_PORT, "the fleet manager"),
                      (HANDOFF_PORT, "the hand-off receiver")):
        if not _port_free(port):
            raise DemoError(f"port {port} on 127.0.0.1 is taken; stop what uses it ({who} needs it)")
    VAR.mkdir(parents=True, exist_ok=True)
    paths = _write_configs(scan_every)
    samples = _render_samples(paths["inbox"])
    broker_conf = _provision()
    print(f"demo: certificate authority in {PKI / 'ca'} (key 0600), broker configuration {broker_conf}")

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = demo.start("mosquitto", [mosquitto, "-c", str(broker_conf)])
    (VAR / "mosquitto.pid").write_text(f"{broker.pid}\n")  # the fleet SIGHUPs it after a revocation
    if not demo.wait("mosquitto listening on 8883", lambda: _tcp_open(MQTT_PORT)):
        return
    demo.start("handoff-receiver", [PY, "-m", "fleet.handoff_receiver", "--dir", str(VAR / "handoff"),
                                    "--port", str(HANDOFF_PORT)])
    if not demo.wait(f"the hand-off receiver on {HANDOFF_PORT}", lambda: _tcp_open(HANDOFF_PORT)):
        return
    demo.start("fleet", [PY, "-m", "fleet", "serve", "--config", str(VAR / "fleet.yaml")])
    fleet = Fleet()
    if not demo.wait(f"the fleet manager at {FLEET_URL}", fleet.healthy, timeout=90):
        return

    password = _first_admin(fleet, paths["admin_password"])
    if password is not None:
        _load_sample_progress(fleet, periods.today(dt.datetime.now(dt.UTC)))
    identity = DeviceIdentity(paths["identity"], DEVICE_ID)
    enrolled_before = identity.is_enrolled()
    if not enrolled_before:
        if password is None:
            raise DemoError(f"cannot sign in as {INITIAL_ADMIN!r} to create the kiosk's enrollment token "
                            f"({paths['admin_password']} is gone or outdated); run `make demo` with --fresh "
                            f"(python -m scripts.demo --fresh)")
        issued = fleet.call("POST", "/api/v1/enrollment-tokens",
                            {"unit_code": UNIT, "ttl_hours": 1, "max_devices": 1, "require_approval": False})
        _write_token(paths["token"], str(issued["token"]))
        print(f"demo: enrollment token {issued['token_id']} for unit {UNIT} created as {INITIAL_ADMIN!r}")

    demo.start("device", [PY, "-m", "device", "run", "--config", str(VAR / "device.yaml")],
               {"SANE_CONFIG_DIR": str(paths["sane"])})
    if enrolled_before:
        print(f"demo: {DEVICE_ID} enrolled on an earlier run (certificate in {paths['identity']})")
    elif not demo.wait("the kiosk's enrollment", identity.is_enrolled, timeout=KIOSK_TIMEOUT_S):
        return
    else:
        print(f"demo: {DEVICE_ID} enrolled ({time.monotonic() - started:.0f} s)")

    if password is None:  # enrolled on an earlier run, and the admin has changed the password since
        print("demo: not checking the kiosk through the API (the first admin's password was changed)")
    else:
        if not demo.wait(f"{DEVICE_ID} online at the fleet", lambda: _kiosk_online(fleet, run_since),
                         timeout=KIOSK_TIMEOUT_S):
            return
        print(f"demo: {DEVICE_ID} online at the fleet, unit {UNIT} ({time.monotonic() - started:.0f} s)")
        if not demo.wait("the first pages at the fleet", lambda: _pages_held(fleet, run_since) > 0,
                         timeout=KIOSK_TIMEOUT_S):
            return
        print(f"demo: pages arriving at the fleet ({_pages_held(fleet, run_since)} so far, first after "
              f"{time.monotonic() - started:.0f} s)")
    filed = _file_a_dossier(demo, started)
    if filed is None:
        return
    pdfs = sorted(filed.glob("*.pdf"))

    if password is not None:
        sign_in = f"name {INITIAL_ADMIN}   password {password}   (change it after signing in)"
    else:
        sign_in = f"as {INITIAL_ADMIN} with the password you set (the first one was changed)"
    ca = PKI / "ca" / "ca.crt"
    print(
        "\nSohoa demo is running.\n"
        f"  Fleet manager:  {FLEET_URL}/        (devices and the latest pages)\n"
        f"  Sign in:        {sign_in}\n"
        f"  HTTPS:          certificate from the demo CA {ca}: import it in the browser or accept the warning;\n"
        f"                  curl --cacert {ca} {FLEET_URL}/healthz\n"
        f"  API docs:       {FLEET_URL}/docs\n"
        f"  MQTT broker:    mqtts://127.0.0.1:{MQTT_PORT} (client certificates from the demo CA, per-device ACL)\n"
        f"  Progress:       {FLEET_URL}/progress   (sample unit tree, targets and received dossiers)\n"
        f"  Kiosk screen:   http://127.0.0.1:{KIOSK_PORT}/   (what a citizen sees at the kiosk)\n"
        f"  Signing:        each closed document signed PAdES B-B at the fleet with the DEMO certificate in\n"
        f"                  {paths['signing']} (its demo CA: demo-signing-ca.crt; `pdfsig FILE` checks one)\n"
        f"  Delivery:       signed documents to the reference receiver http://127.0.0.1:{HANDOFF_PORT} "
        f"(filed in {VAR / 'handoff'});\n"
        f"                  {FLEET_URL}/deliveries shows the outbox\n"
        f"  Filed dossier:  {filed.name}, closed on the kiosk by the demo: {filed}\n"
        f"                  (manifest.json acknowledged; pdfsig {pdfs[0] if pdfs else filed / '*.pdf'})\n"
        f"  Virtual kiosk:  {DEVICE_ID}, unit {UNIT}, enrolled; scans the SANE test backend every {scan_every:.0f} s"
        f"{f' and imported {samples} sample pages' if samples else ''}\n"
        f"  Logs and data:  {VAR}\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    while not demo.stopping:
        demo.check()
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="forget the previous demo (CA, data, enrollment) first")
    parser.add_argument("--scan-every", type=float, default=60.0, help="seconds between scanner batches")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.fresh and VAR.exists():
        shutil.rmtree(VAR)
    demo = Demo()
    signal.signal(signal.SIGINT, demo.on_signal)
    signal.signal(signal.SIGTERM, demo.on_signal)
    code = 0
    try:
        _run(demo, args.scan_every, started)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        demo.stop_all()
        print("demo: stopped.")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
