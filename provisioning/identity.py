"""The device's side of its identity: a private key made on the device, the CSR, and what the
fleet sends back.

The key is generated here (ECDSA P-256), written mode 0600 and never sent anywhere: only the CSR
(public key + device id, signed with the key) leaves the device. :meth:`DeviceIdentity.store`
checks that the returned certificate is for this device, matches the key and was issued by the
returned CA before keeping any of it.

Files in the identity directory (0700)::

    device.key      the private key (0600)
    device.key.new  the next key while a renewal with rotation is in flight (0600)
    device.crt      the client certificate (CN = device id)
    ca.crt          the fleet CA (trust anchor for the broker and the API)
    enrollment.json broker and fleet addresses from the enrollment answer

>>> ident = DeviceIdentity(Path("/var/lib/sohoa/identity"), "kiosk-0001")   # doctest: +SKIP
>>> csr = ident.csr()            # creates the key on first call            # doctest: +SKIP
>>> ident.store(answer.certificate_pem, answer.ca_pem, broker_url=answer.broker_url)  # doctest: +SKIP
>>> client.tls_set(*ident.tls_files())   # paho: ca_certs, certfile, keyfile  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocol.topics import is_valid_device_id
from provisioning.ca import certificate_name, public_key_fingerprint
from provisioning.errors import CertificateRejected, KeyFileError
from provisioning.files import read_private_key, write_atomic, write_private_key, write_public

log = logging.getLogger(__name__)

RENEWAL_WINDOW = dt.timedelta(days=30)

TlsVerdict = Literal["ok", "revoked", "unknown_ca", "expired", "bad_certificate", "unreachable", "tls_error"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths for paho's ``tls_set(ca_certs, certfile, keyfile)`` and httpx's ``verify=``/``cert=``."""

    ca_certs: Path
    certfile: Path
    keyfile: Path

    def __iter__(self) -> Iterator[str]:
        """Lets callers splat: ``client.tls_set(*ident.tls_files())``."""
        return iter((str(self.ca_certs), str(self.certfile), str(self.keyfile)))


class DeviceIdentity:
    """A device's key, certificate and CA on disk.

    >>> ident = DeviceIdentity(Path("/var/lib/sohoa/identity"), "kiosk-0001")  # doctest: +SKIP
    >>> ident.is_enrolled()                                                    # doctest: +SKIP
    False
    """

    KEY = "device.key"
    NEXT_KEY = "device.key.new"
    CERT = "device.crt"
    CA = "ca.crt"
    ENROLLMENT = "enrollment.json"

    def __init__(self, directory: Path, device_id: str) -> None:
        if not is_valid_device_id(device_id):
            raise ValueError(f"not a valid device id: {device_id!r}")
        self.directory = directory
        self.device_id = device_id

    def __repr__(self) -> str:
        return f"DeviceIdentity({self.device_id!r}, {str(self.directory)!r})"

    @property
    def key_path(self) -> Path:
        return self.directory / self.KEY

    @property
    def cert_path(self) -> Path:
        return self.directory / self.CERT

    @property
    def ca_path(self) -> Path:
        return self.directory / self.CA

    # --- key and CSR ----------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)

    def _key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        if not path.exists():
            self._ensure_dir()
            write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
            log.info("generated a new device key at %s", path)
        key = read_private_key(path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError("key_type", f"{path} is not an ECDSA key")
        return key

    def csr(self, *, rotate: bool = False) -> bytes:
        """A PEM CSR with subject ``CN=<device id>``, signed with the device key (created on first
        use). ``rotate=True`` (renewal) makes and uses a fresh key, kept as ``device.key.new``
        until :meth:`store` receives the certificate for it."""
        key = self._key(self.directory / (self.NEXT_KEY if rotate else self.KEY))
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.device_id)]))
               .sign(key, hashes.SHA256()))
        return csr.public_bytes(serialization.Encoding.PEM)

    # --- what comes back ------------------------------------------------------------------

    def store(self, certificate_pem: bytes, ca_pem: bytes, *, broker_url: str | None = None,
              fleet_url: str | None = None) -> x509.Certificate:
        """Keep the certificate (and CA, addresses) after checking it: issued by ``ca_pem``, CN =
        this device id, a device certificate, for our current or pending key. Nothing is written
        when a check fails (:class:`CertificateRejected`)."""
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
            ca = x509.load_pem_x509_certificate(ca_pem)
        except ValueError:
            raise CertificateRejected("malformed", "the enrollment answer has no valid PEM certificate") from None
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateRejected("unknown_ca", "the certificate was not issued by the CA sent with it") from None
        if self.ca_path.exists() and self.ca_path.read_bytes().strip() != ca_pem.strip():
            # A renewal must not swap the trust anchor under us: that would be a takeover.
            raise CertificateRejected("ca_changed", "the CA differs from the one this device enrolled with")
        name, kind = certificate_name(cert)
        if kind != "device" or name != self.device_id:
            raise CertificateRejected("wrong_subject", "the certificate is not this device's")
        fingerprint = public_key_fingerprint(cert)
        next_key = self.directory / self.NEXT_KEY
        if next_key.exists() and public_key_fingerprint(self._key(next_key).public_key()) == fingerprint:
            next_key.replace(self.key_path)  # rotation done: the new key becomes the key
        elif not self.key_path.exists() or public_key_fingerprint(self._key(self.key_path).public_key()) != fingerprint:
            raise CertificateRejected("key_mismatch", "the certificate is not for this device's key")
        self._ensure_dir()
        write_public(self.ca_path, ca_pem)
        write_public(self.cert_path, certificate_pem)
        if broker_url is not None or fleet_url is not None:
            write_atomic(self.directory / self.ENROLLMENT,
                         json.dumps({"broker_url": broker_url, "fleet_url": fleet_url}).encode(), 0o644)
        log.info("stored certificate serial %x for %s, valid until %s", cert.serial_number, self.device_id,
                 cert.not_valid_after_utc.date())
        return cert

    def is_enrolled(self) -> bool:
        return self.key_path.exists() and self.cert_path.exists() and self.ca_path.exists()

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def addresses(self) -> dict[str, str | None]:
        """``broker_url`` and ``fleet_url`` from the enrollment answer ({} before enrollment)."""
        path = self.directory / self.ENROLLMENT
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        return {k: data.get(k) for k in ("broker_url", "fleet_url")}

    def needs_renewal(self, *, now: dt.datetime | None = None, window: dt.timedelta = RENEWAL_WINDOW) -> bool:
        """True within ``window`` of expiry (or past it: then only a new token can help)."""
        moment = now or dt.datetime.now(dt.UTC)
        return moment >= self.certificate().not_valid_after_utc - window

    def sign_request(self, method: str, path: str, body_sha256: str | None = None) -> dict[str, str]:
        """Headers authenticating one API request with this device's key
        (see :mod:`provisioning.requestauth`)."""
        from provisioning.requestauth import EMPTY_SHA256, sign_request

        return sign_request(self._key(self.key_path), self.device_id, method, path, body_sha256 or EMPTY_SHA256)

    def tls_files(self) -> TlsFiles:
        return TlsFiles(self.ca_path, self.cert_path, self.key_path)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: trusts only the fleet CA, presents this device's certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx

    @classmethod
    def load(cls, directory: Path) -> Self:
        """The identity already enrolled in ``directory`` (device id from its certificate)."""
        cert = x509.load_pem_x509_certificate((directory / cls.CERT).read_bytes())
        name, _ = certificate_name(cert)
        return cls(directory, name)


def ca_pin(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the CA's public key: what an admin prints next to an enrollment token so
    a kiosk without a pre-installed CA can trust the fleet on first boot (kubeadm's
    ``--discovery-token-ca-cert-hash``): fetch the CA over HTTPS without verification, check the
    pin with :func:`check_ca_pin`, then verify every later connection with that CA."""
    return "sha256:" + public_key_fingerprint(x509.load_pem_x509_certificate(ca_pem))


def check_ca_pin(ca_pem: bytes, pin: str) -> None:
    """:class:`CertificateRejected` ``ca_pin_mismatch`` unless ``ca_pem`` is the pinned CA."""
    try:
        actual = ca_pin(ca_pem)
    except ValueError:
        raise CertificateRejected("malformed", "not a PEM CA certificate") from None
    if not hmac.compare_digest(actual, pin.strip().lower()):
        raise CertificateRejected("ca_pin_mismatch", "the fleet's CA is not the one the installer was given")


def probe_tls(host: str, port: int, context: ssl.SSLContext, *, server_hostname: str | None = None,
              timeout: float = 5.0, settle: float = 2.0) -> TlsVerdict:
    """Connect, finish the TLS handshake and wait briefly, to learn *why* a server refuses us.

    paho only logs "connection lost" when the broker drops a revoked client; the TLS alert the
    broker sent says ``certificate revoked``. The agent calls this after a failed connect and
    stops retrying (and shows "revoked") on ``revoked``, and on ``expired`` when its certificate
    has; ``unknown_ca`` (also what a broker without our CA's CRL says) only slows its retries.
    ``ok`` means no refusal within ``settle`` seconds. Never logs or returns anything secret.
    """
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return "unreachable"
    try:
        with context.wrap_socket(raw, server_hostname=server_hostname or host) as tls:
            # In TLS 1.3 the server judges our certificate after the client thinks the handshake is
            # over: its verdict arrives as an alert on the first read. Sending anything first
            # could race the alert (a write to a socket the server closed resets it, and the
            # alert is lost), so only listen: a server that accepted us stays silent.
            tls.settimeout(settle)
            with contextlib.suppress(TimeoutError):
                tls.recv(64)
            return "ok"
    except ssl.SSLError as exc:
        reason = (exc.reason or str(exc)).upper()
        log.debug("TLS probe of %s:%s refused: %s", host, port, reason)
        if "REVOKED" in reason:
            return "revoked"
        if "UNKNOWN_CA" in reason:
            return "unknown_ca"
        if "EXPIRED" in reason:
            return "expired"
        if "BAD_CERTIFICATE" in reason or "CERTIFICATE_REQUIRED" in reason:
            return "bad_certificate"
        return "tls_error"
    except OSError:
        return "unreachable"
    finally:
        raw.close()
