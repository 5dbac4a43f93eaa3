"""A DEMO organisation certificate for signing: its own demo CA (clearly named as one, never
trusted by anyone) and, for the province or for each unit given, a key and certificate in a
PKCS#12 file, so ``make demo`` and the tests sign exactly as a province would with its HSM.

A real province does not use this: its organisation certificate comes from the government's
certification authority and its key lives on a PKCS#11 token (see the README).

>>> import tempfile
>>> made = make_demo_keys(Path(tempfile.mkdtemp()), units=["99001"])
>>> sorted(p.name for p in made.p12_files.values()), made.ca_cert.name
(['unit-99001.p12'], 'demo-signing-ca.crt')
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEMO_MARK = "DEMO - NOT FOR PRODUCTION"
CA_FILE = "demo-signing-ca.crt"
PASSPHRASE_FILE = "p12-passphrase"  # noqa: S105 - a file name, not a secret
VALID_DAYS = 3 * 365
KEY_BITS = 2048
"""RSA, as organisation certificates are issued here; an ECDSA key would also work, but pyHanko then
declares the signed file PDF 2.0 (ISO/TS 32002), which takes it out of PDF/A-2."""


@dataclass(frozen=True)
class DemoKeys:
    """What :func:`make_demo_keys` wrote: the CA's certificate (PEM), one PKCS#12 file per unit
    (key ``None``: the province's) and the file holding their passphrase (mode 0600)."""

    ca_cert: Path
    p12_files: dict[str | None, Path]
    passphrase_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Sohoa {DEMO_MARK}"),
        x509.NameAttribute(NameOID.COMMON_NAME, common),
    ])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def issue(ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate, common: str,
          now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A document-signing key and certificate (non-repudiation) under the demo CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common)).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def make_ca(now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The demo CA: a self-signed root whose name says it is a demo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = _name(f"Sohoa signing CA ({DEMO_MARK})")
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=VALID_DAYS + 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_demo_keys(out: Path, units: list[str] | None = None, *, passphrase: str | None = None) -> DemoKeys:
    """Write the demo CA and a PKCS#12 file for the province (``units`` empty) or for each unit
    into ``out``. The passphrase (random unless given) goes to ``out/p12-passphrase`` (0600);
    the CA's key is not kept: nothing more is ever issued under it."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = make_ca(now)
    word = passphrase or secrets.token_urlsafe(18)
    ca_path = out / CA_FILE
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    secret = out / PASSPHRASE_FILE
    _write_private(secret, word.encode() + b"\n")
    files: dict[str | None, Path] = {}
    wanted: list[str | None] = list(units) if units else [None]
    for unit in wanted:
        common = f"[THU] Don vi {unit} ({DEMO_MARK})" if unit else f"[THU] So Thong tin va Truyen thong ({DEMO_MARK})"
        key, cert = issue(ca_key, ca_cert, common, now)
        blob = pkcs12.serialize_key_and_certificates(
            b"sohoa-demo", key, cert, [ca_cert], serialization.BestAvailableEncryption(word.encode()))
        path = out / (f"unit-{unit}.p12" if unit else "organisation.p12")
        _write_private(path, blob)
        files[unit] = path
    return DemoKeys(ca_path, files, secret)
