"""The fleet CA: key files, what it signs and what it refuses, renewal, revocation and CRL."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.ca import (
    FLEET_INGEST,
    CertificateAuthority,
    RevokedCertificate,
    is_service_name,
    load_crl_serials,
    public_key_fingerprint,
)
from provisioning.errors import CertificateRejected, CSRRejected, KeyFileError
from provisioning.identity import DeviceIdentity

NOW = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _csr(cn: str, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    signed = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", now=NOW)


def test_ca_key_is_private_and_outside_any_database(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a second create over an existing CA; a key file made readable by others."""
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert _mode(tmp_path / "ca") == 0o700
    assert b"PRIVATE KEY" not in (tmp_path / "ca" / "ca.crt").read_bytes()
    assert "PRIVATE" not in repr(ca)
    with pytest.raises(KeyFileError, match="ca_exists"):
        CertificateAuthority.create(tmp_path / "ca")
    again = CertificateAuthority.open(tmp_path / "ca")
    assert again.certificate == ca.certificate
    (tmp_path / "ca" / "ca.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="key_permissions"):
        CertificateAuthority.load(tmp_path / "ca")


def test_ca_key_with_passphrase(tmp_path: Path) -> None:
    """Bad input: loading an encrypted CA key with the wrong passphrase."""
    CertificateAuthority.create(tmp_path / "ca", passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "ca" / "ca.key").read_bytes()
    CertificateAuthority.load(tmp_path / "ca", passphrase=b"correct horse")
    with pytest.raises(KeyFileError, match="key_unreadable") as err:
        CertificateAuthority.load(tmp_path / "ca", passphrase=b"wrong")
    assert "wrong" not in str(err.value)


def test_sign_device_certificate(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.sign_device(_csr("kiosk-0001", key), "kiosk-0001", now=NOW)
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kiosk-0001"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "device"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca.certificate)
    assert issued.public_key_sha256 == public_key_fingerprint(key.public_key())
    assert issued.not_after - issued.not_before == dt.timedelta(days=365)
    peer = ca.verify_client(issued.pem, now=NOW)
    assert (peer.name, peer.kind, peer.serial) == ("kiosk-0001", "device", issued.serial)


def test_csr_refusals(ca: CertificateAuthority) -> None:
    """Bad input: a CSR whose CN is another device, a CSR with two CNs, an invalid device id,
    an Ed25519 key (not accepted for devices), garbage, and a CSR whose signature was tampered."""
    with pytest.raises(CSRRejected, match="csr_cn_mismatch"):
        ca.sign_device(_csr("kiosk-0002"), "kiosk-0001")
    two = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "kiosk-0001"), x509.NameAttribute(NameOID.COMMON_NAME, "kiosk-0002"),
    ])).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRRejected, match="csr_cn_mismatch"):
        ca.sign_device(two, "kiosk-0001")
    for bad_id in ("Kiosk-1", "fleet.ingest", "a", "kiosk/1", "kiosk-1-"):
        with pytest.raises(CSRRejected, match="bad_device_id"):
            ca.sign_device(_csr(bad_id), bad_id)
    with pytest.raises(CSRRejected, match="csr_key_type"):
        ca.sign_device(_csr("kiosk-0001", ed25519.Ed25519PrivateKey.generate()), "kiosk-0001")
    with pytest.raises(CSRRejected, match="csr_malformed"):
        ca.sign_device(b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n",
                       "kiosk-0001")
    der = bytearray(x509.load_pem_x509_csr(_csr("kiosk-0001")).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit in the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRRejected, match="csr_signature"):
        ca.sign_device(tampered, "kiosk-0001")


def test_service_and_server_certificates(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a device id as a service name (would grant a device the ingest's ACL)."""
    cert_path, key_path = ca.issue_service(FLEET_INGEST, tmp_path / "svc")
    assert _mode(key_path) == 0o600
    peer = ca.verify_client(cert_path.read_bytes())
    assert (peer.name, peer.kind) == ("fleet.ingest", "service")
    with pytest.raises(CertificateRejected, match="wrong_kind"):
        ca.verify_client(cert_path.read_bytes(), kinds=("device",))
    with pytest.raises(CSRRejected, match="bad_service_name"):
        ca.issue_service("kiosk-0001", tmp_path / "svc")
    assert is_service_name("fleet.ingest-2") and not is_service_name("kiosk-0001") and not is_service_name("a..b")

    cert_path, key_path = ca.issue_server(["broker.sohoa.lan", "127.0.0.1"], tmp_path / "srv", name="broker")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.sohoa.lan"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(CertificateRejected, match="wrong_kind"):
        ca.verify_client(cert_path.read_bytes())  # a server certificate is no client identity


def test_verify_client_refusals(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a certificate from another CA with the same CA name, an expired one, one not
    yet valid, a revoked one, garbage."""
    issued = ca.sign_device(_csr("kiosk-0001"), "kiosk-0001", now=NOW)
    rogue = CertificateAuthority.create(tmp_path / "rogue", name="Sohoa Fleet CA", now=NOW)
    forged = rogue.sign_device(_csr("kiosk-0001"), "kiosk-0001", now=NOW)
    with pytest.raises(CertificateRejected, match="unknown_ca"):
        ca.verify_client(forged.pem, now=NOW)
    with pytest.raises(CertificateRejected, match="expired"):
        ca.verify_client(issued.pem, now=NOW + dt.timedelta(days=366))
    with pytest.raises(CertificateRejected, match="not_yet_valid"):
        ca.verify_client(issued.pem, now=NOW - dt.timedelta(days=1))
    with pytest.raises(CertificateRejected, match="revoked"):
        ca.verify_client(issued.pem, now=NOW, revoked={issued.serial})
    with pytest.raises(CertificateRejected, match="malformed"):
        ca.verify_client(b"not a certificate", now=NOW)


def test_renewal_needs_a_valid_current_certificate(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: renewing with a revoked certificate, an expired one, another device's CSR, and a
    certificate from another CA. A valid one renews, with the same key or a rotated one."""
    ident = DeviceIdentity(tmp_path / "dev", "kiosk-0001")
    first = ca.sign_device(ident.csr(), "kiosk-0001", now=NOW)
    ident.store(first.pem, ca.certificate_pem)
    later = NOW + dt.timedelta(days=340)
    assert ident.needs_renewal(now=later) and not ident.needs_renewal(now=NOW)

    renewed = ca.renew_device(ident.csr(rotate=True), first.pem, now=later)
    assert renewed.serial != first.serial and renewed.public_key_sha256 != first.public_key_sha256
    ident.store(renewed.pem, ca.certificate_pem)
    assert ident.certificate().serial_number == renewed.serial
    assert public_key_fingerprint(ident.certificate()) == renewed.public_key_sha256
    assert not (tmp_path / "dev" / "device.key.new").exists()

    with pytest.raises(CertificateRejected, match="revoked"):
        ca.renew_device(ident.csr(), renewed.pem, revoked={renewed.serial}, now=later)
    with pytest.raises(CertificateRejected, match="expired"):
        ca.renew_device(ident.csr(), first.pem, now=NOW + dt.timedelta(days=400))
    with pytest.raises(CSRRejected, match="csr_cn_mismatch"):
        ca.renew_device(_csr("kiosk-0002"), renewed.pem, now=later)
    rogue = CertificateAuthority.create(tmp_path / "rogue", now=NOW)
    with pytest.raises(CertificateRejected, match="unknown_ca"):
        ca.renew_device(ident.csr(), rogue.sign_device(ident.csr(), "kiosk-0001", now=NOW).pem, now=later)


def test_crl_lists_revoked_serials(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Bad input: a CRL signed by another CA must not be taken for ours."""
    a = ca.sign_device(_csr("kiosk-0001"), "kiosk-0001", now=NOW)
    b = ca.sign_device(_csr("kiosk-0002"), "kiosk-0002", now=NOW)
    path = ca.write_crl(tmp_path / "crl.pem",
                        [RevokedCertificate(b.serial, NOW, x509.ReasonFlags.key_compromise)], now=NOW)
    crl = x509.load_pem_x509_crl(path.read_bytes())
    assert crl.next_update_utc == NOW + dt.timedelta(days=7)
    assert crl.get_revoked_certificate_by_serial_number(b.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(a.serial) is None
    assert load_crl_serials(path.read_bytes(), ca) == {b.serial}
    rogue = CertificateAuthority.create(tmp_path / "rogue", now=NOW)
    with pytest.raises(CertificateRejected, match="crl_signature"):
        load_crl_serials(rogue.crl([], now=NOW), ca)


def test_crl_distribution_point_for_emqx(tmp_path: Path) -> None:
    """Bad input: none; with a CRL URL, client certificates name it and the CRL carries the matching
    Issuing Distribution Point (EMQX enforces revocation only then), and OpenSSL still honours it."""
    import subprocess

    url = "http://fleet.sohoa.lan/api/v1/crl"
    ca = CertificateAuthority.create(tmp_path / "ca", crl_url=url)
    issued = ca.sign_device(_csr("kiosk-0001"), "kiosk-0001")
    cert = x509.load_pem_x509_certificate(issued.pem)
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in dps for n in dp.full_name or []] == [url]
    cert_path, _ = ca.issue_server(["localhost"], tmp_path / "srv", name="broker")
    server = x509.load_pem_x509_certificate(cert_path.read_bytes())
    with pytest.raises(x509.ExtensionNotFound):
        server.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    (tmp_path / "dev.crt").write_bytes(issued.pem)
    for revoked, expected in (([], 0), ([RevokedCertificate(issued.serial, dt.datetime.now(dt.UTC))], 2)):
        crl = ca.write_crl(tmp_path / "crl.pem", revoked)
        idp = x509.load_pem_x509_crl(crl.read_bytes()).extensions.get_extension_for_class(
            x509.IssuingDistributionPoint)
        assert idp.critical and [n.value for n in idp.value.full_name or []] == [url]
        out = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(ca.cert_path), "-CRLfile", str(crl),
                              str(tmp_path / "dev.crt")], capture_output=True, text=True)
        assert (out.returncode != 0) == bool(expected), out.stdout + out.stderr
        if expected:
            assert "revoked" in out.stdout + out.stderr
