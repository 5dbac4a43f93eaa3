"""The fleet's own certificate authority (ECDSA P-256).

The CA signs three kinds of certificate, told apart by the subject's OU so the broker and the
API can never mistake one for another:

- ``device``: a kiosk's client certificate, subject CN = device id (``protocol.topics`` rules),
  signed from a CSR whose key was generated on the device; EKU clientAuth.
- ``service``: a fleet process's client certificate (the ingest, ``fleet.ingest``). Service names
  contain a dot, which a device id cannot, so no device can enroll under a service's name.
- ``server``: the broker's and the fleet API's TLS server certificates, with DNS/IP SANs.

The CA key lives in a directory of its own (``ca.key``, mode 0600, directory 0700), never in the
database: a dump of the database must not be enough to mint identities. Revocation state (which
serials are revoked) is the fleet's to persist; :meth:`CertificateAuthority.crl` turns it into a
signed CRL that mosquitto (``crlfile``) and the API read.

>>> ca = CertificateAuthority.open(Path("/var/lib/sohoa/ca"))          # doctest: +SKIP
>>> issued = ca.sign_device(csr_pem, "kiosk-0001")                     # doctest: +SKIP
>>> ca.write_crl(Path("/etc/mosquitto/sohoa/crl.pem"), revoked=[])     # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import signal
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.topics import is_valid_device_id
from provisioning.errors import CertificateRejected, CSRRejected, KeyFileError
from provisioning.files import PrivateKey, read_private_key, write_private_key, write_public

log = logging.getLogger(__name__)

CertificateKind = Literal["device", "service", "server"]
KINDS: tuple[CertificateKind, ...] = ("device", "service", "server")

ORGANIZATION = "Sohoa"
FLEET_INGEST = "fleet.ingest"
"""The ingest's MQTT identity (its certificate CN, hence its broker username)."""

CA_VALIDITY = dt.timedelta(days=3650)
DEVICE_VALIDITY = dt.timedelta(days=365)
SERVICE_VALIDITY = dt.timedelta(days=365)
SERVER_VALIDITY = dt.timedelta(days=397)  # the longest browsers accept for a server certificate
CRL_VALIDITY = dt.timedelta(days=7)
BACKDATE = dt.timedelta(minutes=5)  # tolerate a device clock a little behind the CA's

ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)


_SERVICE_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+$")


def is_service_name(name: str) -> bool:
    """Service identities look like ``fleet.ingest``: dot-separated lower-case labels. The dot
    keeps them disjoint from device ids (which cannot contain one), so no device can enroll
    under a service's name and inherit its broker rights."""
    return len(name) <= 64 and bool(_SERVICE_NAME.match(name))


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    """What the fleet persists about a certificate it issued (never the key: the CA never sees it
    for devices). ``pem`` is what goes back to the device."""

    name: str
    kind: CertificateKind
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    public_key_sha256: str
    pem: bytes


@dataclass(frozen=True)
class RevokedCertificate:
    """One line of the CRL: the serial the fleet marked revoked, and when."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class PeerIdentity:
    """Who a verified client certificate speaks for."""

    name: str
    kind: CertificateKind
    serial: int
    not_after: dt.datetime


def public_key_fingerprint(key: ec.EllipticCurvePublicKey | x509.Certificate | x509.CertificateSigningRequest) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo: the same for a CSR and the certificate signed from it,
    so the fleet can tell a device re-asking with the same key from a different device."""
    public = key if isinstance(key, ec.EllipticCurvePublicKey) else key.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def certificate_name(cert: x509.Certificate) -> tuple[str, CertificateKind]:
    """The subject's CN and OU (the kind); :class:`CertificateRejected` when either is missing or odd."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise CertificateRejected("bad_subject", "certificate subject needs exactly one CN and one OU")
    cn, ou = cns[0].value, ous[0].value
    if not isinstance(cn, str) or ou not in KINDS:
        raise CertificateRejected("bad_subject", "certificate subject OU is not a Sohoa certificate kind")
    kind: CertificateKind = "device" if ou == "device" else "service" if ou == "service" else "server"
    return cn, kind


class CertificateAuthority:
    """The fleet's CA: a key (file, 0600) and a self-signed certificate.

    Use :meth:`create`, :meth:`load` or :meth:`open` (load, or create when the directory is empty).

    >>> ca = CertificateAuthority.open(Path("/var/lib/sohoa/ca"))        # doctest: +SKIP
    >>> ingest = ca.issue_service("fleet.ingest", Path("/etc/sohoa/ingest"))  # doctest: +SKIP
    """

    KEY_FILE = "ca.key"
    CERT_FILE = "ca.crt"

    def __init__(self, key: PrivateKey, certificate: x509.Certificate, directory: Path | None = None, *,
                 crl_url: str | None = None) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError("key_type", "the CA key must be ECDSA")
        if public_key_fingerprint(key.public_key()) != public_key_fingerprint(certificate):
            raise KeyFileError("key_mismatch", "the CA key does not match the CA certificate")
        self._key = key
        self.certificate = certificate
        self.directory = directory
        self.crl_url = crl_url
        """Where the fleet publishes the CRL over HTTP (e.g. ``http://fleet/api/v1/crl``). When set,
        client certificates carry it as their CRL distribution point and the CRL names it as its
        issuing distribution point: what EMQX needs for its CRL check (mosquitto reads a file)."""

    def __repr__(self) -> str:  # never show the key
        return f"CertificateAuthority({self.subject!r})"

    # --- creating and loading -------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, name: str = "Sohoa Fleet CA", validity: dt.timedelta = CA_VALIDITY,
               now: dt.datetime | None = None, passphrase: bytes | None = None, crl_url: str | None = None) -> Self:
        """A new CA in ``directory`` (made 0700). Refuses to overwrite an existing CA key."""
        key_path, cert_path = directory / cls.KEY_FILE, directory / cls.CERT_FILE
        if key_path.exists():
            raise KeyFileError("ca_exists", f"{key_path} exists; refusing to replace a CA key")
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        start = _now(now) - BACKDATE
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private_key(key_path, key, passphrase)
        write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        log.info("created CA %r in %s (valid until %s)", name, directory, cert.not_valid_after_utc.date())
        return cls(key, cert, directory, crl_url=crl_url)

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None, crl_url: str | None = None) -> Self:
        """Load ``ca.key`` (must be 0600) and ``ca.crt`` from ``directory``."""
        key = read_private_key(directory / cls.KEY_FILE, passphrase)
        try:
            cert = x509.load_pem_x509_certificate((directory / cls.CERT_FILE).read_bytes())
        except FileNotFoundError:
            raise KeyFileError("ca_cert_missing", f"no {cls.CERT_FILE} in {directory}") from None
        return cls(key, cert, directory, crl_url=crl_url)

    @classmethod
    def open(cls, directory: Path, *, passphrase: bytes | None = None, name: str = "Sohoa Fleet CA",
             crl_url: str | None = None) -> Self:
        """Load the CA in ``directory``, creating it on first use (what ``make demo`` wants)."""
        if (directory / cls.KEY_FILE).exists():
            return cls.load(directory, passphrase=passphrase, crl_url=crl_url)
        return cls.create(directory, passphrase=passphrase, name=name, crl_url=crl_url)

    # --- facts ----------------------------------------------------------------------------

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path | None:
        return None if self.directory is None else self.directory / self.CERT_FILE

    # --- issuing --------------------------------------------------------------------------

    def _issue(self, public_key: ec.EllipticCurvePublicKey, name: str, kind: CertificateKind,
               validity: dt.timedelta, now: dt.datetime | None,
               sans: Sequence[x509.GeneralName] = ()) -> IssuedCertificate:
        start = _now(now) - BACKDATE
        end = min(start + validity, self.certificate.not_valid_after_utc)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=kind == "server", encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if self.crl_url and kind != "server":
            point = x509.DistributionPoint([x509.UniformResourceIdentifier(self.crl_url)], None, None, None)
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        issued = IssuedCertificate(
            name=name, kind=kind, serial=cert.serial_number, not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
            public_key_sha256=public_key_fingerprint(cert), pem=cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued %s certificate for %s, serial %x, until %s", kind, name, issued.serial,
                 issued.not_after.date())
        return issued

    @staticmethod
    def check_csr(csr_pem: bytes, expected_cn: str) -> x509.CertificateSigningRequest:
        """Parse a CSR and check its signature, key type and that its subject is exactly
        ``CN=<expected_cn>`` (:class:`CSRRejected` with a reason otherwise)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise CSRRejected("csr_malformed", "not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CSRRejected("csr_signature", "the CSR's signature does not verify")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ACCEPTED_CURVES):
            raise CSRRejected("csr_key_type", "device keys must be ECDSA P-256 or P-384")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or cns[0].value != expected_cn:
            # Do not echo the CSR's CN back into logs at length: it is attacker-chosen text.
            raise CSRRejected("csr_cn_mismatch", "the CSR's subject CN is not the enrolling device id")
        return csr

    def sign_device(self, csr_pem: bytes, device_id: str, *, validity: dt.timedelta = DEVICE_VALIDITY,
                    now: dt.datetime | None = None) -> IssuedCertificate:
        """Sign a device's CSR into its client certificate (CN = ``device_id``, OU = device).

        Only the CSR's public key is used; its requested extensions are ignored: the CA decides
        what a device certificate says. Call only after the token (and approval) checks passed.
        """
        if not is_valid_device_id(device_id):
            raise CSRRejected("bad_device_id", "device ids are 3-64 lower-case letters, digits and dashes")
        csr = self.check_csr(csr_pem, device_id)
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)  # check_csr made sure
        return self._issue(public, device_id, "device", validity, now)

    def renew_device(self, csr_pem: bytes, current_pem: bytes, *, revoked: Container[int] = frozenset(),
                     validity: dt.timedelta = DEVICE_VALIDITY, now: dt.datetime | None = None) -> IssuedCertificate:
        """A new certificate for a device that proves it holds a valid, unrevoked one (no token).

        ``current_pem`` is the certificate the device authenticated with (its mTLS peer
        certificate, or the one its signed request is bound to); ``revoked`` the serials the fleet
        has revoked. The CSR may carry a new key (rotation) or the same one; its CN must be the same
        device id.
        """
        peer = self.verify_client(current_pem, revoked=revoked, now=now, kinds=("device",))
        return self.sign_device(csr_pem, peer.name, validity=validity, now=now)

    def issue_service(self, name: str, directory: Path, *, validity: dt.timedelta = SERVICE_VALIDITY,
                      now: dt.datetime | None = None) -> tuple[Path, Path]:
        """A client key + certificate for a fleet process (e.g. :data:`FLEET_INGEST`), written as
        ``<name>.key`` (0600) and ``<name>.crt`` in ``directory``. Returns (cert path, key path)."""
        if not is_service_name(name):
            raise CSRRejected("bad_service_name", "service names are dotted lower-case labels, e.g. fleet.ingest")
        return self._issue_with_key(name, "service", directory, validity, now, ())

    def issue_server(self, hosts: Sequence[str], directory: Path, *, name: str | None = None,
                     validity: dt.timedelta = SERVER_VALIDITY, now: dt.datetime | None = None) -> tuple[Path, Path]:
        """A TLS server key + certificate (the broker's, the API's) for ``hosts`` (DNS names and/or
        IP addresses, all put in the SAN). Written as ``<name>.key`` (0600) and ``<name>.crt``."""
        if not hosts:
            raise ValueError("a server certificate needs at least one host name or address")
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue_with_key(name or hosts[0], "server", directory, validity, now, sans)

    def _issue_with_key(self, name: str, kind: CertificateKind, directory: Path, validity: dt.timedelta,
                        now: dt.datetime | None, sans: Sequence[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        issued = self._issue(key.public_key(), name, kind, validity, now, sans)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        write_private_key(key_path, key)
        write_public(cert_path, issued.pem)
        return cert_path, key_path

    # --- verifying and revoking -----------------------------------------------------------

    def verify_client(self, cert_pem: bytes, *, revoked: Container[int] = frozenset(),
                      now: dt.datetime | None = None,
                      kinds: Sequence[CertificateKind] = ("device", "service")) -> PeerIdentity:
        """Check a client certificate the way the broker does (issued by this CA, in its validity
        period, not revoked) and say who it is. :class:`CertificateRejected` with a reason:
        ``malformed``, ``unknown_ca``, ``not_yet_valid``, ``expired``, ``revoked``, ``wrong_kind``."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise CertificateRejected("malformed", "not a PEM certificate") from None
        if cert.issuer != self.certificate.subject:
            raise CertificateRejected("unknown_ca", "certificate not issued by this fleet's CA")
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateRejected("unknown_ca", "certificate signature does not verify with this CA") from None
        moment = _now(now)
        if moment < cert.not_valid_before_utc:
            raise CertificateRejected("not_yet_valid", "certificate is not valid yet")
        if moment >= cert.not_valid_after_utc:
            raise CertificateRejected("expired", "certificate has expired")
        if cert.serial_number in revoked:
            raise CertificateRejected("revoked", "certificate has been revoked")
        name, kind = certificate_name(cert)
        if kind not in kinds:
            raise CertificateRejected("wrong_kind", f"a {kind} certificate is not accepted here")
        if kind == "device" and not is_valid_device_id(name):
            raise CertificateRejected("bad_subject", "device certificate CN is not a device id")
        return PeerIdentity(name=name, kind=kind, serial=cert.serial_number, not_after=cert.not_valid_after_utc)

    def crl(self, revoked: Iterable[RevokedCertificate], *, now: dt.datetime | None = None,
            validity: dt.timedelta = CRL_VALIDITY, number: int | None = None) -> bytes:
        """A signed CRL (PEM) listing ``revoked``.

        OpenSSL (hence mosquitto) refuses *every* client once the CRL's next-update has passed,
        so the fleet must rewrite it well within ``validity`` (e.g. daily) even when nothing changed.
        ``number`` must grow with each CRL; by default it is the current Unix time.
        """
        moment = _now(now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(moment - BACKDATE)
            .next_update(moment + validity)
            .add_extension(x509.CRLNumber(number if number is not None else int(moment.timestamp())), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if self.crl_url:
            builder = builder.add_extension(x509.IssuingDistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.crl_url)], relative_name=None,
                only_contains_user_certs=False, only_contains_ca_certs=False, only_some_reasons=None,
                indirect_crl=False, only_contains_attribute_certs=False), critical=True)
        count = 0
        for entry in revoked:
            item = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
            if entry.reason is not None:
                item = item.add_extension(x509.CRLReason(entry.reason), critical=False)
            builder = builder.add_revoked_certificate(item.build())
            count += 1
        crl = builder.sign(self._key, hashes.SHA256())
        log.info("signed CRL with %d revoked certificate(s), next update %s", count, crl.next_update_utc)
        return crl.public_bytes(serialization.Encoding.PEM)

    def write_crl(self, path: Path, revoked: Iterable[RevokedCertificate], *, now: dt.datetime | None = None,
                  validity: dt.timedelta = CRL_VALIDITY) -> Path:
        """Sign and atomically replace the CRL file at ``path`` (then SIGHUP mosquitto)."""
        write_public(path, self.crl(revoked, now=now, validity=validity))
        return path


def load_crl_serials(crl_pem: bytes, ca: CertificateAuthority) -> frozenset[int]:
    """The revoked serials of a CRL, after checking that ``ca`` signed it (for the API's own check
    when it reads the CRL file rather than the database)."""
    crl = x509.load_pem_x509_crl(crl_pem)
    public = ca.certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
        raise CertificateRejected("crl_signature", "the CRL is not signed by this CA")
    return frozenset(entry.serial_number for entry in crl)


def reload_broker(pid: int) -> None:
    """Ask mosquitto to re-read its configuration, ACL and CRL (SIGHUP)."""
    os.kill(pid, signal.SIGHUP)
