"""The device's identity files, enrollment tokens, the approval model, and that no secret ever
reaches a log line or an error message."""

from __future__ import annotations

import datetime as dt
import logging
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from provisioning.ca import CertificateAuthority, public_key_fingerprint
from provisioning.errors import CertificateRejected, InvalidTransition, KeyFileError, ProvisioningError, TokenRejected
from provisioning.identity import DeviceIdentity
from provisioning.tokens import Enrollment, EnrollmentToken, hash_secret, issue_token, parse_token

NOW = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def test_device_key_stays_private(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a key file someone made world-readable must be refused, not used."""
    ident = DeviceIdentity(tmp_path / "id", "kiosk-0001")
    csr = x509.load_pem_x509_csr(ident.csr())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kiosk-0001"
    assert b"PRIVATE" not in ident.csr()
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "id").stat().st_mode) == 0o700
    key_before = ident.key_path.read_bytes()
    ident.csr()
    assert ident.key_path.read_bytes() == key_before  # the key is made once, not per CSR
    assert not ident.is_enrolled()
    ident.store(ca.sign_device(ident.csr(), "kiosk-0001").pem, ca.certificate_pem, broker_url="mqtts://b:8883",
                fleet_url="https://f")
    assert ident.is_enrolled()
    assert ident.addresses() == {"broker_url": "mqtts://b:8883", "fleet_url": "https://f"}
    assert DeviceIdentity.load(tmp_path / "id").device_id == "kiosk-0001"
    ident.key_path.chmod(0o640)
    with pytest.raises(KeyFileError, match="key_permissions"):
        ident.csr()
    with pytest.raises(ValueError, match="device id"):
        DeviceIdentity(tmp_path / "x", "../etc")


def test_store_checks_what_comes_back(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input from a fleet (or someone posing as one): another device's certificate, a
    certificate for another key, one not issued by the CA sent with it, and a swapped CA at renewal.
    None of them is written."""
    ident = DeviceIdentity(tmp_path / "id", "kiosk-0001")
    other = DeviceIdentity(tmp_path / "other", "kiosk-0002")
    with pytest.raises(CertificateRejected, match="wrong_subject"):
        ident.store(ca.sign_device(other.csr(), "kiosk-0002").pem, ca.certificate_pem)
    other_key = DeviceIdentity(tmp_path / "other-key", "kiosk-0001")
    with pytest.raises(CertificateRejected, match="key_mismatch"):
        ident.store(ca.sign_device(other_key.csr(), "kiosk-0001").pem, ca.certificate_pem)
    rogue = CertificateAuthority.create(tmp_path / "rogue")
    with pytest.raises(CertificateRejected, match="unknown_ca"):
        ident.store(ca.sign_device(ident.csr(), "kiosk-0001").pem, rogue.certificate_pem)
    assert not ident.cert_path.exists() and not ident.ca_path.exists()
    ident.store(ca.sign_device(ident.csr(), "kiosk-0001").pem, ca.certificate_pem)
    with pytest.raises(CertificateRejected, match="ca_changed"):
        ident.store(rogue.sign_device(ident.csr(), "kiosk-0001").pem, rogue.certificate_pem)
    assert ident.ca_path.read_bytes() == ca.certificate_pem


def _token(**kw: object) -> tuple[SecretStr, EnrollmentToken]:
    args: dict[str, object] = {"ttl": dt.timedelta(hours=8), "now": NOW, **kw}
    return issue_token("00001", **args)  # type: ignore[arg-type]


def test_token_is_hashed_at_rest() -> None:
    """Bad input: nothing; checks the stored record and its repr/JSON never hold the secret."""
    text, token = _token()
    plain = text.get_secret_value()
    token_id, secret = parse_token(text)
    assert plain == f"et1.{token_id}.{secret}" and token.token_id == token_id
    assert secret not in token.model_dump_json() and secret not in repr(token) and plain not in str(text)
    assert token.secret_hash == hash_secret(secret) != hash_secret(secret, b"pepper")
    peppered_text, peppered = _token(pepper=b"pepper")
    peppered.check(peppered_text, unit_code="00001", now=NOW, pepper=b"pepper")
    with pytest.raises(TokenRejected, match="invalid"):
        peppered.check(peppered_text, unit_code="00001", now=NOW)  # the pepper is part of the hash


def test_token_refusals() -> None:
    """Bad input: a reused one-time token, an expired one, one for another unit, a wrong secret,
    a token of another row, garbage, a withdrawn token, and a 2-device token used 3 times."""
    text, token = _token()
    token.check(text, unit_code="00001", now=NOW)
    used = token.consumed(NOW)
    with pytest.raises(TokenRejected, match="used") as err:
        used.check(text, unit_code="00001", now=NOW)
    assert err.value.reason == "used"
    with pytest.raises(TokenRejected, match="used"):
        used.consumed(NOW)
    with pytest.raises(TokenRejected, match="expired"):
        token.check(text, unit_code="00001", now=NOW + dt.timedelta(hours=8))
    with pytest.raises(TokenRejected, match="wrong_unit"):
        token.check(text, unit_code="00002", now=NOW)
    token_id, _ = parse_token(text)
    wrong_secret = f"et1.{token_id}.{'A' * 43}"
    with pytest.raises(TokenRejected, match="invalid"):
        token.check(wrong_secret, unit_code="00001", now=NOW)
    other_text, _ = _token()
    with pytest.raises(TokenRejected, match="unknown"):
        token.check(other_text, unit_code="00001", now=NOW)
    for garbage in ("", "et1.", "et2." + text.get_secret_value()[4:], text.get_secret_value() + "x", "' OR 1=1 --"):
        with pytest.raises(TokenRejected, match="malformed"):
            token.check(garbage, unit_code="00001", now=NOW)
    with pytest.raises(TokenRejected, match="revoked"):
        token.revoked(NOW).check(text, unit_code="00001", now=NOW)
    # An expired token with a wrong secret says "invalid": its state is only told to its holder.
    with pytest.raises(TokenRejected, match="invalid"):
        token.check(wrong_secret, unit_code="00001", now=NOW + dt.timedelta(days=1))

    multi_text, multi = _token(max_devices=2)
    for _ in range(2):
        multi.check(multi_text, unit_code="00001", now=NOW)
        multi = multi.consumed(NOW)
    with pytest.raises(TokenRejected, match="used"):
        multi.check(multi_text, unit_code="00001", now=NOW)

    with pytest.raises(ValueError, match="future"):
        issue_token("00001", ttl=dt.timedelta(0), now=NOW)
    with pytest.raises(ValueError, match="unit codes"):
        issue_token("../x", ttl=dt.timedelta(hours=1))


def test_approval_states() -> None:
    """Bad input: accepting an already rejected enrollment, rejecting an accepted one, a bad
    device id, and a different key claiming a pending device id."""
    _, approval_token = _token(require_approval=True)
    pending = Enrollment.start(approval_token, device_id="kiosk-0001", public_key_sha256="ab" * 32, now=NOW)
    assert pending.state == "pending" and pending.decided_at is None
    assert pending.is_same_request("kiosk-0001", "ab" * 32)
    assert not pending.is_same_request("kiosk-0001", "cd" * 32)
    accepted = pending.accept(by="admin-1", now=NOW)
    assert (accepted.state, accepted.decided_by) == ("accepted", "admin-1")
    rejected = pending.reject(by="admin-1", reason="unknown kiosk", now=NOW)
    assert rejected.state == "rejected"
    with pytest.raises(InvalidTransition):
        rejected.accept(by="admin-2")
    with pytest.raises(InvalidTransition):
        accepted.reject(by="admin-2")
    _, auto_token = _token()
    auto = Enrollment.start(auto_token, device_id="kiosk-0002", public_key_sha256="ab" * 32, now=NOW)
    assert (auto.state, auto.decided_by, auto.unit_code) == ("accepted", "token", "00001")
    with pytest.raises(ValidationError):
        Enrollment.start(auto_token, device_id="Kiosk 2", public_key_sha256="ab" * 32)


def test_no_secret_in_logs_or_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input: every refusal path of a full enrollment (wrong token, wrong CN, loose key file,
    wrong CA passphrase). Neither the captured logs nor any error text may contain a private key,
    a token or a passphrase."""
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    passphrase = "s3cret-ca-passphrase"
    ca = CertificateAuthority.create(tmp_path / "ca", passphrase=passphrase.encode())
    text, token = _token(now=dt.datetime.now(dt.UTC))
    ident = DeviceIdentity(tmp_path / "id", "kiosk-0001")
    for attempt in (
        lambda: token.check(text, unit_code="99999"),
        lambda: token.check(text.get_secret_value()[:-1] + "Z", unit_code="00001"),
        lambda: ca.sign_device(ident.csr(), "kiosk-0002"),
        lambda: CertificateAuthority.load(tmp_path / "ca", passphrase=b"wrong-passphrase"),
    ):
        try:
            attempt()
        except ProvisioningError as exc:
            errors.append(f"{exc!r} {exc}")
    assert len(errors) == 4
    token.check(text, unit_code="00001")
    issued = ca.sign_device(ident.csr(), "kiosk-0001")
    ident.store(issued.pem, ca.certificate_pem)
    ident.key_path.chmod(0o644)
    try:
        ident.csr()
    except KeyFileError as exc:
        errors.append(str(exc))
    ident.key_path.chmod(0o600)
    assert caplog.records, "the flow logs what it does"

    secrets = [text.get_secret_value(), parse_token(text)[1], passphrase, "wrong-passphrase", "PRIVATE KEY",
               ident.key_path.read_text().splitlines()[1],
               (tmp_path / "ca" / "ca.key").read_text().splitlines()[1]]
    haystack = caplog.text + "\n".join(errors) + repr(token) + repr(ca) + repr(ident) + repr(text)
    for secret in secrets:
        assert secret not in haystack
    assert public_key_fingerprint(x509.load_pem_x509_certificate(issued.pem))  # public data may be logged


def test_enrollment_service_rules(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a CSR for another id (must not spend the token), a rejected device polling, a
    revoked device polling with its old request, renewing with a revoked certificate."""
    from provisioning.enrollment import EnrollmentService, EnrollRequest, MemoryStore, RenewRequest

    store = MemoryStore()
    service = EnrollmentService(ca, store, broker_url="mqtts://b", fleet_url="https://f")
    text, token = issue_token("00001", ttl=dt.timedelta(hours=1), require_approval=True)
    store.tokens[token.token_id] = token
    ident = DeviceIdentity(tmp_path / "k", "kiosk-0001")
    other = DeviceIdentity(tmp_path / "o", "kiosk-0002")
    with pytest.raises(ProvisioningError, match="csr_cn_mismatch"):
        service.enroll(EnrollRequest(device_id="kiosk-0001", unit_code="00001", token=text,
                                     csr_pem=other.csr().decode()))
    assert store.tokens[token.token_id].used == 0
    request = EnrollRequest(device_id="kiosk-0001", unit_code="00001", token=text, csr_pem=ident.csr().decode())
    assert service.enroll(request).state == "pending"
    service.decide("kiosk-0001", accept=False, by="admin-1", reason="not ours")
    answer = service.enroll(request)
    assert (answer.state, answer.reason, answer.certificate_pem) == ("rejected", "not ours", None)
    with pytest.raises(InvalidTransition):
        service.decide("kiosk-0001", accept=True, by="admin-2")

    text2, token2 = issue_token("00001", ttl=dt.timedelta(hours=1))  # a new token after a rejection
    store.tokens[token2.token_id] = token2
    request2 = request.model_copy(update={"token": text2})
    answer = service.enroll(request2)
    assert answer.state == "accepted" and answer.certificate_pem
    current = store.latest_certificate("kiosk-0001")
    assert current is not None
    service.revoke("kiosk-0001", by="admin-1")
    answer = service.enroll(request2)
    assert (answer.state, answer.reason, answer.certificate_pem) == ("rejected", "revoked", None)
    with pytest.raises(CertificateRejected, match="revoked"):
        service.renew("kiosk-0001", RenewRequest(csr_pem=ident.csr().decode()), current.pem)
    assert service.crl_pem().startswith(b"-----BEGIN X509 CRL-----")


def test_ca_pin(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: another CA presented under the pin (a man in the middle on first boot), garbage."""
    from provisioning.identity import ca_pin, check_ca_pin

    pin = ca_pin(ca.certificate_pem)
    assert pin.startswith("sha256:") and len(pin) == 7 + 64
    check_ca_pin(ca.certificate_pem, pin.upper().replace("SHA256:", "sha256:"))
    rogue = CertificateAuthority.create(tmp_path / "rogue")
    with pytest.raises(CertificateRejected, match="ca_pin_mismatch"):
        check_ca_pin(rogue.certificate_pem, pin)
    with pytest.raises(CertificateRejected, match="malformed"):
        check_ca_pin(b"nope", pin)
