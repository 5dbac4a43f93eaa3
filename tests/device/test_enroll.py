"""First-boot enrollment of a device over real HTTPS (the stand-in fleet of
``tests/provisioning/standin.py``, built from the real provisioning pieces): the key stays on the
device, pending enrollments are polled with the same request, refusals stop at once with one
clear line, network errors are retried, and signed requests pass the fleet's verifier only for
the body they were signed for."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from device.cli import main
from device.config import EnrollmentConfig, IdentityConfig
from device.enroll import Enroller, EnrollmentRefused, IdentityKeeper, IdentityStatus, Stopped
from device.http_auth import DeviceAuth
from provisioning.ca import CertificateAuthority
from provisioning.identity import DeviceIdentity, ca_pin
from provisioning.tokens import issue_token
from tests.device.agent_harness import enrolled_agent, wait_until
from tests.provisioning.standin import Fleet, standin_fleet
from tests.services import free_port

UNIT = "00001"
DEVICE = "kiosk-0001"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with standin_fleet(tmp_path / "fleet", poll_s=1) as running:
        yield running


def _token(fleet: Fleet, *, unit: str = UNIT, approval: bool = False, max_devices: int = 1) -> str:
    text, token = issue_token(unit, ttl=dt.timedelta(hours=1), require_approval=approval, max_devices=max_devices)
    fleet.store.tokens[token.token_id] = token
    return text.get_secret_value()


def _config(tmp_path: Path, fleet: Fleet, token: str | None, **extra: object) -> EnrollmentConfig:
    assert fleet.ca.cert_path is not None
    section = enrolled_agent(tmp_path, fleet.url, fleet.ca.cert_path, token)["enrollment"]
    return EnrollmentConfig.model_validate({**section, "retry_min_s": 0.1, "retry_max_s": 0.5, **extra})


def test_first_boot_with_the_cli_keeps_the_key_on_the_device(
    tmp_path: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sohoa-device enroll --config` on a fresh device: key 0600 in a 0700 directory, certificate
    for this device, token file gone. Fault looked for: the private key or the token leaking into
    the request body (only the CSR may go), the logs or the output."""
    caplog.set_level(logging.DEBUG)
    token = _token(fleet)
    assert fleet.ca.cert_path is not None
    config = {"device_id": DEVICE, "unit": UNIT, "state_dir": str(tmp_path / "state"),
              **enrolled_agent(tmp_path, fleet.url, fleet.ca.cert_path, token)}
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(config))

    assert main(["enroll", "--config", str(path)]) == 0

    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    assert ident.is_enrolled()
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ident.directory.stat().st_mode) == 0o700
    assert ident.certificate().subject.rfc4514_string().startswith(f"CN={DEVICE},")
    assert not (tmp_path / "secrets" / "enrollment.token").exists()
    key_pem = ident.key_path.read_bytes()
    key_body = b"".join(key_pem.splitlines()[1:-1])  # the base64 without the PEM armour
    assert len(fleet.enroll_bodies) == 1
    body = fleet.enroll_bodies[0]
    assert b"PRIVATE KEY" not in body and key_body[:40] not in body and b"CERTIFICATE REQUEST" in body
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert token not in text and "PRIVATE KEY" not in text and key_body[:40].decode() not in text
    assert "enrolled" in out.out
    # Run again: already enrolled, nothing is sent (the token is spent and gone anyway).
    assert main(["enroll", "--config", str(path)]) == 0
    assert len(fleet.enroll_bodies) == 1


def test_pending_then_accepted_polls_with_the_same_request(tmp_path: Path, fleet: Fleet) -> None:
    """A token that needs approval: the device gets 202 and asks again after Retry-After (1 s
    here) with the same key and token, which the fleet answers from its record without spending
    the token again; once the admin accepts, the next poll stores the certificate."""
    token = _token(fleet, approval=True)
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    status = IdentityStatus()
    enroller = Enroller(ident, _config(tmp_path, fleet, token), unit_code=UNIT, on_state=status.set)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            enroller.enroll(stop)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: fleet.answers.count(202) >= 2, 15, "two pending answers")
        assert status.state == "pending" and not ident.is_enrolled()
        fleet.service.decide(DEVICE, accept=True, by="admin-1")
        thread.join(15)
    finally:
        stop.set()
        thread.join(5)
    assert not errors, errors
    assert ident.is_enrolled()
    assert fleet.answers[-1] == 200 and set(fleet.answers[:-1]) == {202}
    assert len(set(fleet.enroll_bodies)) == 1  # every poll was the very same request
    assert next(iter(fleet.store.tokens.values())).used == 1


def test_refused_token_stops_with_one_clear_line(
    tmp_path: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input: a token for another unit (403 wrong_unit) through the CLI, a token already
    spent by another device (403 used), an admin's rejection (403 rejected). Each is one line
    in Vietnamese and English, sent once (no retry loop), and the token file is kept."""
    token = _token(fleet, unit="00002")
    assert fleet.ca.cert_path is not None
    config = {"device_id": DEVICE, "unit": UNIT, "state_dir": str(tmp_path / "state"),
              **enrolled_agent(tmp_path, fleet.url, fleet.ca.cert_path, token)}
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["enroll", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Mã đăng ký dành cho đơn vị khác" in err and "another unit" in err
    assert token not in err
    assert fleet.answers == [403] and (tmp_path / "secrets" / "enrollment.token").exists()

    spent = _token(fleet)
    other = DeviceIdentity(tmp_path / "other", "kiosk-0002")
    Enroller(other, _config(tmp_path / "o", fleet, spent), unit_code=UNIT).enroll(threading.Event())
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    enroller = Enroller(ident, _config(tmp_path / "s", fleet, spent), unit_code=UNIT)
    with pytest.raises(EnrollmentRefused) as refused:
        enroller.enroll(threading.Event())
    assert refused.value.reason == "used" and refused.value.status == 403 and enroller.attempts == 1
    assert "đã được sử dụng" in str(refused.value) and not ident.is_enrolled()

    rejected = _token(fleet, approval=True)
    enroller = Enroller(ident, _config(tmp_path / "r", fleet, rejected), unit_code=UNIT)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            enroller.enroll(threading.Event())
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: fleet.answers[-1] == 202, 10, "pending")
    fleet.service.decide(DEVICE, accept=False, by="admin-1", reason="not our kiosk")
    thread.join(10)
    assert not thread.is_alive() and fleet.answers[-1] == 403 and not ident.is_enrolled()
    assert len(outcome) == 1 and isinstance(outcome[0], EnrollmentRefused) and outcome[0].reason == "rejected"
    assert "từ chối" in str(outcome[0])


def test_ca_pin_trusts_only_the_pinned_fleet(tmp_path: Path, fleet: Fleet) -> None:
    """A kiosk without the CA in its image fetches it and checks the pin printed with the token.
    Bad input: the pin of another CA (a fleet impersonated): refused before the token is sent."""
    token = _token(fleet)
    rogue = CertificateAuthority.create(tmp_path / "rogue")
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    wrong = _config(tmp_path, fleet, token, ca_file=None, ca_pin=ca_pin(rogue.certificate_pem))
    with pytest.raises(EnrollmentRefused) as refused:
        Enroller(ident, wrong, unit_code=UNIT).enroll(threading.Event())
    assert refused.value.reason == "ca_pin_mismatch" and fleet.enroll_bodies == []

    right = _config(tmp_path, fleet, token, ca_file=None, ca_pin=ca_pin(fleet.ca.certificate_pem))
    Enroller(ident, right, unit_code=UNIT).enroll(threading.Event())
    assert ident.is_enrolled() and ident.ca_path.read_bytes() == fleet.ca.certificate_pem


def test_network_errors_are_retried_until_the_fleet_answers(tmp_path: Path) -> None:
    """Fault: nothing listens on the fleet's port at first (connection refused), so the device
    retries with backoff; once the fleet comes up on that port the enrollment succeeds. A stop
    request ends the wait at once."""
    port = free_port()
    ca = CertificateAuthority.create(tmp_path / "ca")
    text, token = issue_token(UNIT, ttl=dt.timedelta(hours=1))
    token_file = tmp_path / "token"
    token_file.write_text(text.get_secret_value())
    assert ca.cert_path is not None
    config = EnrollmentConfig(fleet_url=f"https://127.0.0.1:{port}", token_file=token_file, ca_file=ca.cert_path,
                              retry_min_s=0.1, retry_max_s=0.3)
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    enroller = Enroller(ident, config, unit_code=UNIT)
    done = threading.Event()

    def run() -> None:
        enroller.enroll(threading.Event())
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: enroller.attempts >= 3, 10, "three refused connections")
    assert not done.is_set()
    with standin_fleet(tmp_path / "fleet", ca, port=port) as fleet:
        fleet.store.tokens[token.token_id] = token
        assert done.wait(10)
    thread.join(5)
    assert ident.is_enrolled() and fleet.answers == [200] and not token_file.exists()

    stopped = Enroller(DeviceIdentity(tmp_path / "other", "kiosk-0002"),
                       config.model_copy(update={"retry_min_s": 30.0, "retry_max_s": 60.0}), unit_code=UNIT)
    token_file.write_text(text.get_secret_value())
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        stopped.enroll(stop)
    assert stopped.attempts == 1


def test_signed_upload_verified_and_a_changed_body_refused(tmp_path: Path, fleet: Fleet) -> None:
    """DeviceAuth signs each request; the fleet's verifier takes a page whose body is the file
    named by its sha256. Bad input: the same signed PUT carrying other bytes (400, nothing
    stored), a replay of a signed request (401 replayed), an unsigned request (401)."""
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    Enroller(ident, _config(tmp_path, fleet, _token(fleet)), unit_code=UNIT).enroll(threading.Event())
    page = b"%PDF-1.4 a page"
    sha = hashlib.sha256(page).hexdigest()
    with httpx.Client(verify=ident.ssl_context(), auth=DeviceAuth(ident), base_url=fleet.url) as http:
        assert http.head(f"/api/v1/files/{sha}").status_code == 404
        r = http.put(f"/api/v1/files/{sha}", content=b"%PDF-1.4 another page", auth=DeviceAuth(ident).for_body(sha))
        assert r.status_code == 400 and sha not in fleet.files
        r = http.put(f"/api/v1/files/{sha}", content=iter([page[:5], page[5:]]), auth=DeviceAuth(ident).for_body(sha))
        assert r.status_code == 201 and fleet.files[sha] == page and fleet.file_uploaders[sha] == DEVICE
        assert http.head(f"/api/v1/files/{sha}?x=1").status_code == 200  # the query is signed too
        sent = http.build_request("HEAD", f"/api/v1/files/{sha}")
        sent.headers.update(ident.sign_request("HEAD", f"/api/v1/files/{sha}"))
        with httpx.Client(verify=ident.ssl_context()) as plain:
            assert plain.send(sent).status_code == 200
            replay = plain.send(sent)
        assert replay.status_code == 401
        with pytest.raises(ValueError, match="sha256"):
            http.put(f"/api/v1/files/{sha}", content=iter([page]))  # a stream must name its hash
    r = httpx.put(f"{fleet.url}/api/v1/files/{sha}", content=page, verify=ident.ssl_context(),
                  headers={"X-Sohoa-Content-SHA256": sha})
    assert r.status_code == 401 and r.json()["detail"] == "unauthenticated"


def test_keeper_enrolls_then_checks_renewal_on_its_timer(tmp_path: Path, fleet: Fleet) -> None:
    """The keeper's own loop: it enrolls, reports ``on_enrolled`` once, then on its timer (1 s
    here) finds the certificate inside a renewal window wider than its life (400 days) and
    renews it with a signed request, calling ``on_renewed`` (the agent reconnects MQTT there).
    Fault looked for: a renewal that keeps the old key (the key must rotate)."""
    ident = DeviceIdentity(tmp_path / "identity", DEVICE)
    status = IdentityStatus()
    enrolled, renewed = threading.Event(), threading.Event()
    stop = threading.Event()
    keeper = IdentityKeeper(ident, IdentityConfig(dir=ident.directory, renewal_check_s=1, renew_before_days=400),
                            _config(tmp_path, fleet, _token(fleet)), unit=UNIT, agent_version="t", status=status,
                            stop=stop, on_enrolled=enrolled.set, on_renewed=renewed.set)
    thread = threading.Thread(target=keeper.run)
    thread.start()
    try:
        assert enrolled.wait(10) and status.state == "enrolled"
        first_key, first_serial = ident.key_path.read_bytes(), ident.certificate().serial_number
        assert renewed.wait(10), "no renewal on the timer"
        assert ident.certificate().serial_number != first_serial and ident.key_path.read_bytes() != first_key
        assert not (ident.directory / DeviceIdentity.NEXT_KEY).exists()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
