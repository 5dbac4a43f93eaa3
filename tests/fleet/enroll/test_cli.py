"""``sohoa-fleet token|enrollment|device``: enrollment administration from the fleet's host,
against a real fleet over HTTPS (SQLite) whose PKI comes from ``python -m provisioning init``.
The commands run as subprocesses where their output or files matter to another program (an
SD-card image that a real ``sohoa-device enroll`` uses), otherwise through ``main(argv)``."""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleet.auth.models import AuditEntry
from fleet.cli import main
from fleet.enroll.cli import os_actor
from provisioning.ca import CertificateAuthority, load_crl_serials
from provisioning.identity import DeviceIdentity
from tests.devices import enroll_device
from tests.fleet.enroll.conftest import UNIT, HttpsFleet
from tests.services import free_port

TOKEN_TEXT = re.compile(r"\bet1\.[0-9a-f]{16}\.[A-Za-z0-9_-]+")

# A stand-in broker for the SIGHUP: a real process that waits for the real signal (the CRL
# reload itself is mosquitto's business, tested in test_enroll_broker.py).
HUP_WAITER = """
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
print("ready", flush=True)
print("HUP" if signal.sigtimedwait({signal.SIGHUP}, 60) else "no signal", flush=True)
"""


@dataclass
class Site:
    fleet: HttpsFleet
    config: Path  # the YAML the commands get with --config
    pki: Path
    broker: subprocess.Popen[str]  # the stand-in broker, its pid in pki.broker_pid_file
    db: Path

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleet", *argv, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=60)

    @functools.cached_property
    def http(self) -> httpx.Client:
        """An HTTPS client logged in as a province admin (closed with the fleet)."""
        return self.fleet.admin()

    def audit(self, action: str) -> list[AuditEntry]:
        return [e for e in self.fleet.audit() if e.action == action]


@pytest.fixture
def root_log_level() -> Iterator[None]:
    """main() quiets the root logger for these commands: put it back."""
    level = logging.getLogger().level
    try:
        yield
    finally:
        logging.getLogger().setLevel(level)


@pytest.fixture
def site(tmp_path: Path, serve_fleet: Callable[..., HttpsFleet], root_log_level: None) -> Iterator[Site]:
    pki = tmp_path / "pki"  # the layout serve_fleet's config names: pki/ca, pki/broker/crl.pem
    init = subprocess.run([sys.executable, "-m", "provisioning", "init", str(pki), "--bind", "127.0.0.1"],
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    db = tmp_path / "fleet.db"
    fleet = serve_fleet(f"sqlite:///{db}", port=free_port())
    broker = subprocess.Popen([sys.executable, "-c", HUP_WAITER], stdout=subprocess.PIPE, text=True)
    try:
        assert broker.stdout is not None and broker.stdout.readline().strip() == "ready"
        (tmp_path / "broker.pid").write_text(f"{broker.pid}\n")
        config = tmp_path / "fleet-cli.yaml"
        config.write_text(
            f"database:\n  url: sqlite:///{db}\ningest:\n  enabled: false\n"
            f"pki:\n  ca_dir: {pki / 'ca'}\n  crl_file: {pki / 'broker' / 'crl.pem'}\n"
            f"  broker_pid_file: {tmp_path / 'broker.pid'}\n"
            f"enrollment:\n  public_url: {fleet.url}\n  broker_url: mqtts://127.0.0.1:8883\n")
        made = Site(fleet, config, pki, broker, db)
        yield made
        if "http" in made.__dict__:
            made.http.close()
    finally:
        broker.kill()
        broker.wait()


def _issue(site: Site, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, str]:
    """(token text, token id) from ``token issue`` run in-process."""
    assert main(["token", "issue", "--unit", UNIT, *extra, "--config", str(site.config)]) == 0
    out = capsys.readouterr().out
    texts = TOKEN_TEXT.findall(out)
    assert len(texts) == 1, out  # printed once
    return texts[0], texts[0].split(".")[1]


def test_token_issue_out_prepares_an_image_that_enrolls(site: Site, tmp_path: Path) -> None:
    """The files written by ``token issue --out`` are what a real ``sohoa-device enroll`` needs.
    Bad input: a second issue into the same directory (refused, exit 2, the first token file
    untouched), no --unit and a malformed --ttl (usage, exit 2)."""
    card = tmp_path / "card"
    identity = tmp_path / "kiosk-identity"
    issued = site.cli("token", "issue", "--unit", UNIT, "--ttl", "7d", "--max-devices", "2", "--out", str(card),
                      "--device-token-file", str(card / "enrollment.token"), "--device-ca-file", str(card / "ca.crt"),
                      "--identity-dir", str(identity))
    assert issued.returncode == 0, issued.stderr
    token = (card / "enrollment.token").read_text().strip()
    assert TOKEN_TEXT.fullmatch(token)
    assert token not in issued.stdout + issued.stderr  # with --out: only the paths
    paths = [card / "enrollment.token", card / "ca.crt", card / "device-enrollment.yaml"]
    assert issued.stdout.splitlines()[1:] == [str(p) for p in paths]
    assert stat.S_IMODE(card.stat().st_mode) == 0o700
    assert stat.S_IMODE((card / "enrollment.token").stat().st_mode) == 0o600
    assert (card / "ca.crt").read_bytes() == (site.pki / "ca" / "ca.crt").read_bytes()

    again = site.cli("token", "issue", "--unit", UNIT, "--out", str(card))
    assert again.returncode == 2 and "enrollment.token exists" in again.stderr
    assert (card / "enrollment.token").read_text().strip() == token
    for bad in (["token", "issue"], ["token", "issue", "--unit", UNIT, "--ttl", "7x"]):
        usage = site.cli(*bad)
        assert usage.returncode == 2 and usage.stderr.strip(), usage

    device_yaml = tmp_path / "device.yaml"
    device_yaml.write_text(f"device_id: kiosk-img-1\nunit: '{UNIT}'\n" + (card / "device-enrollment.yaml").read_text())
    enrolled = subprocess.run([sys.executable, "-m", "device", "enroll", "--config", str(device_yaml)],
                              capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stderr
    ident = DeviceIdentity(identity, "kiosk-img-1")
    assert ident.is_enrolled() and not (card / "enrollment.token").exists()  # spent: deleted by the device
    listed = {e["device_id"]: e for e in site.http.get("/api/v1/enrollments").json()}
    assert listed["kiosk-img-1"]["state"] == "accepted" and listed["kiosk-img-1"]["unit_code"] == UNIT

    listing = site.cli("token", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (record,) = json.loads(listing.stdout)
    assert (record["used"], record["max_devices"], record["state"], record["created_by"]) == (1, 2, "active",
                                                                                              os_actor())
    assert "secret_hash" not in record and token.split(".")[2] not in listing.stdout


def test_token_shown_once_never_stored_and_revoked_token_refused(site: Site, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The token text is in stdout once and in no database row (audit included); after
    ``token revoke`` an enrollment with it is refused 403 'revoked'. Bad input: revoking an
    unknown token id (exit 2, audited), a malformed one (usage), a lifetime above the limit, and
    --out naming an existing directory other users can enter (refused, left as it was)."""
    text, token_id = _issue(site, capsys, "--ttl", "12h")
    secret = text.split(".")[2]
    dump = "\n".join(sqlite3.connect(site.db).iterdump())
    assert token_id in dump and secret not in dump and text not in dump
    for entry in site.fleet.audit():
        assert secret not in f"{entry.actor} {entry.target} {entry.detail}"
    (created,) = site.audit("token.created")
    assert (created.actor, created.actor_kind, created.target, created.unit_code) == (
        os_actor(), "system", f"token {token_id}", UNIT)

    assert main(["token", "list", "--config", str(site.config)]) == 0
    listed = capsys.readouterr().out
    assert token_id in listed and secret not in listed

    assert main(["token", "revoke", token_id, "--config", str(site.config)]) == 0
    assert "revoked" in capsys.readouterr().out
    answer = site.fleet.enroll(DeviceIdentity(tmp_path / "late", "kiosk-late"), text)
    assert (answer.status_code, answer.json()["detail"]) == (403, "revoked")
    (revoked,) = site.audit("token.revoked")
    assert (revoked.actor, revoked.outcome) == (os_actor(), "ok")

    assert main(["token", "revoke", "0123456789abcdef", "--config", str(site.config)]) == 2
    assert "no such token" in capsys.readouterr().err
    assert [e.outcome for e in site.audit("token.revoked")] == ["ok", "refused"]
    with pytest.raises(SystemExit) as usage:
        main(["token", "revoke", "not-a-token-id", "--config", str(site.config)])
    assert usage.value.code == 2
    assert main(["token", "issue", "--unit", UNIT, "--ttl", "31d", "--config", str(site.config)]) == 2
    out, err = capsys.readouterr()
    assert "at most 720 h" in err and not TOKEN_TEXT.search(out)
    assert len(site.audit("token.created")) == 2  # the refused one too, outcome refused
    assert site.audit("token.created")[-1].outcome == "refused"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert main(["token", "issue", "--unit", UNIT, "--out", str(shared), "--config", str(site.config)]) == 2
    assert "open to other users" in capsys.readouterr().err
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755 and not any(shared.iterdir())  # untouched, no token issued
    assert len(site.audit("token.created")) == 2


def test_enrollment_accept_and_reject(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two kiosks wait for approval: the accepted one gets its certificate on its next poll, the
    rejected one is refused. Bad input: deciding again (not pending) and an unknown device: exit 2,
    audited as refused."""
    text, _ = _issue(site, capsys, "--require-approval", "--max-devices", "2")
    kiosk_a = DeviceIdentity(tmp_path / "a", "kiosk-a")
    kiosk_b = DeviceIdentity(tmp_path / "b", "kiosk-b")
    assert site.fleet.enroll(kiosk_a, text).status_code == 202
    assert site.fleet.enroll(kiosk_b, text).status_code == 202

    assert main(["enrollment", "list", "--state", "pending", "--json", "--config", str(site.config)]) == 0
    pending = json.loads(capsys.readouterr().out)
    assert sorted(e["device_id"] for e in pending) == ["kiosk-a", "kiosk-b"]

    assert main(["enrollment", "accept", "kiosk-a", "--config", str(site.config)]) == 0
    assert main(["enrollment", "reject", "kiosk-b", "--reason", "wrong room", "--config", str(site.config)]) == 0
    capsys.readouterr()
    polled_a = site.fleet.enroll(kiosk_a, text)
    assert polled_a.status_code == 200 and polled_a.json()["certificate_pem"]
    polled_b = site.fleet.enroll(kiosk_b, text)
    assert polled_b.status_code == 403

    assert main(["enrollment", "accept", "kiosk-b", "--config", str(site.config)]) == 2
    assert main(["enrollment", "reject", "kiosk-zz", "--config", str(site.config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("sohoa-fleet: ") for line in err)
    assert main(["enrollment", "list", "--config", str(site.config)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"kiosk-a\s+00001\s+accepted", table) and "wrong room" in table

    actor = os_actor()
    assert [(e.actor, e.target) for e in site.audit("enrollment.accepted")] == [(actor, "kiosk-a")]
    assert [(e.actor, e.detail) for e in site.audit("certificate.issued")][-1][0] == actor
    (rejected,) = site.audit("enrollment.rejected")
    assert rejected.actor == actor and rejected.detail and "reason=wrong room" in rejected.detail
    refused = [(e.actor, e.target, e.outcome) for e in site.audit("enrollment.refused") if e.actor == actor]
    assert refused == [(actor, "kiosk-b", "refused"), (actor, "kiosk-zz", "refused")]


def test_device_revoke_rewrites_the_crl_and_reloads_the_broker(site: Site, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """After ``device revoke`` the CRL file and the API's CRL list the device's serial, the broker
    got SIGHUP, the API shows 'revoked' and refuses the device's signed upload. Bad input: an
    unknown device (exit 2); revoking twice (exit 0, nothing left to revoke)."""
    http = site.http
    kiosk = enroll_device(http, "kiosk-r", UNIT, tmp_path, clock=site.fleet.clock)
    assert kiosk.put_file(http, b"\x89PNG\r\n\x1a\nbefore").status_code == 201
    serial = kiosk.identity.certificate().serial_number
    ca = CertificateAuthority.load(site.pki / "ca")

    revoked = site.cli("device", "revoke", "kiosk-r")
    assert revoked.returncode == 0, revoked.stderr
    assert f"{serial:x}" in revoked.stdout and not revoked.stderr  # no warning: the broker was reloaded
    out, _ = site.broker.communicate(timeout=10)
    assert out.strip() == "HUP"
    assert serial in load_crl_serials((site.pki / "broker" / "crl.pem").read_bytes(), ca)
    assert serial in load_crl_serials(http.get("/api/v1/pki/crl.pem").content, ca)  # not the copy from before
    assert http.get("/api/v1/devices/kiosk-r").json()["status"] == "revoked"
    refused = kiosk.put_file(http, b"\x89PNG\r\n\x1a\nafter")
    assert (refused.status_code, refused.json()["detail"]) == (401, "revoked")
    (entry,) = site.audit("certificate.revoked")
    assert (entry.actor, entry.actor_kind, entry.target, entry.unit_code) == (os_actor(), "system", "kiosk-r", UNIT)
    assert site.audit("crl.published")[-1].actor == os_actor()

    assert main(["device", "revoke", "kiosk-nobody", "--config", str(site.config)]) == 2
    assert "not enrolled" in capsys.readouterr().err
    assert main(["device", "revoke", "kiosk-r", "--config", str(site.config)]) == 0  # broker gone: a warning
    out, err = capsys.readouterr()
    assert "already revoked" in out and "broker was not reloaded" in err


def test_without_a_ca_the_commands_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          root_log_level: None) -> None:
    """Bad input: a config without pki.ca_dir, and one naming a CA directory that is empty."""
    config = tmp_path / "fleet.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'fleet.db'}\n")
    assert main(["token", "list", "--config", str(config)]) == 2
    assert "pki.ca_dir" in capsys.readouterr().err
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'fleet.db'}\npki:\n  ca_dir: {tmp_path / 'none'}\n")
    assert main(["token", "issue", "--unit", UNIT, "--config", str(config)]) == 2
    assert "provisioning init" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # no CA made behind the admin's back
