"""Signing one PDF with the organisation's key: PAdES baseline B-B, or B-T when a time-stamp
authority is configured, through pyHanko, as an incremental update (the device's bytes stay
the signed file's first bytes: page images, text layer and PDF/A metadata are untouched).

The signed revision also carries the fleet's name for the document: a device names its
documents offline, and the fleet may renumber one (two devices gave the same number) or give a
walk-in its code; the title and the dossier properties of the metadata then say what the file
is called, not what the device first called it (:class:`FleetName`).

The key is on a PKCS#11 token (an HSM) or in a PKCS#12 file; it never leaves either, and the
device never holds it. A :class:`Signer` opens the token (or reads the files) on first use and
keeps it open; it is safe to share between threads (one signature at a time).

>>> Signer(SigningConfig()).level
'B-B'
>>> Signer(SigningConfig()).sign(b"%PDF-1.7 ...", None)
Traceback (most recent call last):
...
fleet.signing.signer.SigningNotConfigured: signing has no key source configured (signing.source)
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import hashes

from fleet.errors import FleetError
from fleet.signing.config import KeyRef, Pkcs11Source, Pkcs12Source, SigningConfig

if TYPE_CHECKING:
    from pyhanko.sign.signers import Signer as HankoSigner

log = logging.getLogger(__name__)

FIELD_NAME = "SohoaSignature"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
DOSSIER_NS = "https://sohoa.example/ns/dossier/1.0/"
"""The device's XMP schema for dossier properties (device/dossier/pdf_writer.py)."""


class SigningError(FleetError):
    """A document could not be signed."""


class SigningNotConfigured(SigningError, LookupError):
    """The config has no key source."""


class SecretMissing(SigningError, LookupError):
    """The PIN or passphrase is not where the config says (variable unset, file unreadable)."""


class TokenMissing(SigningError, LookupError):
    """The PKCS#11 module cannot be loaded, or no token has the configured label."""


class WrongPin(SigningError, PermissionError):
    """The token refused the PIN (or the PKCS#12 file its passphrase)."""


class KeyMissing(SigningError, LookupError):
    """No key or certificate with the configured label on the token, or no readable PKCS#12 file."""


class NoKeyForUnit(SigningError, LookupError):
    """Keys are per unit and this document's unit has none configured."""


class NotAPdf(SigningError, ValueError):
    """The document is not a PDF pyHanko can read."""


class TokenFailed(SigningError, ConnectionError):
    """The key source failed in the middle of a signature (an HSM gone away, a session closed);
    the token is opened afresh for the next one."""


class TimestampFailed(SigningError, ConnectionError):
    """The time-stamp authority did not answer with a time stamp (PAdES B-T cannot be made)."""


@dataclass(frozen=True)
class Signed:
    """A signed document: its bytes, its PAdES level and who signed it."""

    data: bytes
    level: Literal["B-B", "B-T"]
    certificate_pem: str
    subject: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class FleetName:
    """What the fleet calls a document, written over the device's names in the signed revision's
    metadata (Info and XMP title; the XMP ``sohoa:dossierCode`` and ``sohoa:sequence``).

    >>> FleetName.of("H10-1", "result", 2, "decision").title
    'H10-1-KQ2 decision'
    """

    dossier_code: str
    sequence: int | None
    title: str

    @classmethod
    def of(cls, dossier_code: str, kind: str, sequence: int | None, doctype: str | None) -> FleetName:
        suffix = "" if sequence is None else f"-KQ{sequence}" if kind == "result" else f".{sequence}"
        return cls(dossier_code, sequence, f"{dossier_code}{suffix} {doctype or ''}".rstrip())


def _write_fleet_name(writer: Any, name: FleetName) -> None:
    """Put ``name`` in the revision being signed: the title through pyHanko's document metadata
    (it updates Info and XMP together, as PDF/A wants); the dossier properties by replacing the
    XMP stream with one whose ``sohoa:`` values are the fleet's (pyHanko then adds its own
    modification date and producer to it). A file without XMP gets the title only."""
    from lxml import etree
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.metadata import xmp_xml

    writer.document_meta.title = name.title
    if "/Metadata" not in writer.root:
        return
    old = writer.root["/Metadata"]
    if not isinstance(old, xmp_xml.MetadataStream):
        return
    try:
        tree = etree.fromstring(old.data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        raise NotAPdf("the document's XMP metadata is not XML") from None
    values = {"dossierCode": name.dossier_code, "sequence": None if name.sequence is None else str(name.sequence)}
    for local, value in values.items():
        for element in tree.iter(f"{{{DOSSIER_NS}}}{local}"):
            if value is not None:
                element.text = value
    fresh = xmp_xml.MetadataStream(stream_data=etree.tostring(tree, encoding="utf-8"))
    fresh["/Type"], fresh["/Subtype"] = generic.pdf_name("/Metadata"), generic.pdf_name("/XML")
    writer.root["/Metadata"] = writer.add_object(fresh)
    writer.update_root()


def _secret(env: str | None, file: Path | None, what: str) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"the {what} variable {env} is not set")
        return value
    assert file is not None  # the config validates that exactly one is given
    try:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretMissing(f"cannot read the {what} file {file}: {exc.strerror or type(exc).__name__}") from None


def _pem(der: bytes) -> str:
    from asn1crypto import pem

    return str(pem.armor("CERTIFICATE", der).decode("ascii"))


def _keep_pdfa_metadata(writer: Any) -> None:
    """pyHanko rewrites the XMP metadata of the signed revision (its modification date and
    producer) and the Info dictionary beside it. PDF/A wants the two to agree: the Info's
    producer becomes pyHanko's own, as the XMP's does; and our dossier schema keeps its
    declared prefix (the one its PDF/A extension schema names) instead of ``ns0``."""
    from lxml import etree
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.metadata.model import VENDOR

    etree.register_namespace("sohoa", DOSSIER_NS)
    if "/Info" not in writer.trailer:
        return
    info = writer.trailer["/Info"].get_object()
    if "/Producer" in info:
        info["/Producer"] = generic.TextStringObject(VENDOR)


class Signer:
    """Signs PDFs with the configured key(s).

    >>> from fleet.signing.config import SigningConfig
    >>> config = SigningConfig.model_validate({"enabled": True, "source": {"type": "pkcs12",
    ...     "file": "/etc/sohoa/org.p12", "passphrase_env": "SOHOA_ORG_P12_PASSPHRASE"}})
    >>> with Signer(config) as signer:
    ...     signer.key_for("99001") == signer.key_for(None)
    True
    """

    def __init__(self, config: SigningConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._session: Any = None
        self._refused: WrongPin | None = None
        self._signers: dict[KeyRef, HankoSigner] = {}

    @property
    def level(self) -> Literal["B-B", "B-T"]:
        return self.config.level

    def key_for(self, unit_code: str | None) -> KeyRef:
        """The key that signs a document of ``unit_code``; raises :class:`NoKeyForUnit`."""
        if self.config.scope == "province":
            return self.config.key or KeyRef()
        if unit_code is None or unit_code not in self.config.units:
            raise NoKeyForUnit(f"no signing key is configured for unit {unit_code or '(none)'}")
        return self.config.units[unit_code]

    def sign(self, pdf: bytes, unit_code: str | None, name: FleetName | None = None) -> Signed:
        """Sign ``pdf`` for ``unit_code`` (ignored with scope province), with the fleet's
        ``name`` for it in the metadata when given. Raises a :class:`SigningError` subclass
        naming what is wrong."""
        if self.config.source is None:
            raise SigningNotConfigured("signing has no key source configured (signing.source)")
        if not pdf.startswith(b"%PDF-"):
            raise NotAPdf("the document is not a PDF (it does not start with %PDF-)")
        ref = self.key_for(unit_code)
        with self._lock:
            hanko = self._signer(ref)
            data = self._sign(pdf, hanko, name)
        cert = hanko.signing_cert
        assert cert is not None  # both kinds of signer load it before they are returned
        return Signed(data, self.level, _pem(cert.dump()), str(cert.subject.human_friendly))

    def _sign(self, pdf: bytes, hanko: HankoSigner, name: FleetName | None) -> bytes:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.pdf_utils.misc import PdfError
        from pyhanko.sign import signers, timestamps
        from pyhanko.sign.fields import SigSeedSubFilter
        from pyhanko.sign.general import SigningError as HankoSigningError

        meta = signers.PdfSignatureMetadata(
            field_name=FIELD_NAME, subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256",
            reason=self.config.reason, location=self.config.location)
        stamper = (timestamps.HTTPTimeStamper(self.config.tsa_url, timeout=int(self.config.tsa_timeout_s))
                   if self.config.tsa_url else None)
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        except (PdfError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise NotAPdf(f"the document is not a readable PDF ({type(exc).__name__})") from None
        _keep_pdfa_metadata(writer)
        out = io.BytesIO()
        try:
            if name is not None:
                _write_fleet_name(writer, name)
            signers.PdfSigner(meta, signer=hanko, timestamper=stamper).sign_pdf(writer, output=out)
        except timestamps.TimestampRequestError as exc:
            raise TimestampFailed(f"the time-stamp authority failed: {exc}") from None
        except NotAPdf:
            raise  # said already what is wrong with it
        except HankoSigningError as exc:  # before PdfError: pyHanko's signing errors are PdfErrors too
            self._forget()
            raise TokenFailed(f"the signature could not be made: {exc}") from None
        except (PdfError, ValueError, KeyError, IndexError, TypeError) as exc:
            # A damaged file shows itself while pyHanko reads what it rewrites (its XMP
            # metadata, an object it updates): XmpXmlProcessingError, UnicodeDecodeError, ...
            raise NotAPdf(f"the document is a damaged PDF that cannot be signed ({type(exc).__name__})") from None
        except Exception as exc:  # PKCS#11 errors come from python-pkcs11 under many names
            if type(exc).__module__.startswith("pkcs11"):
                self._forget()
                raise TokenFailed(f"the token failed to sign ({type(exc).__name__})") from None
            raise
        return out.getvalue()

    def _signer(self, ref: KeyRef) -> HankoSigner:
        found = self._signers.get(ref)
        if found is None:
            source = self.config.source
            found = self._pkcs11(source, ref) if isinstance(source, Pkcs11Source) else self._pkcs12(source, ref)
            self._signers[ref] = found
        return found

    def _pkcs12(self, source: Pkcs12Source | None, ref: KeyRef) -> HankoSigner:
        from asn1crypto import keys, x509
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
        from pyhanko.sign.signers import SimpleSigner
        from pyhanko_certvalidator.registry import SimpleCertificateStore

        assert source is not None
        path = ref.file or source.file
        assert path is not None  # the config validates that every key has a file
        passphrase = _secret(source.passphrase_env, source.passphrase_file, "passphrase")
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise KeyMissing(f"cannot read the PKCS#12 file {path}: {exc.strerror or type(exc).__name__}") from None
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(blob, passphrase.encode("utf-8"))
        except ValueError:
            raise WrongPin(f"the PKCS#12 file {path.name} cannot be opened: wrong passphrase, or not PKCS#12") from None
        if key is None or cert is None:
            raise KeyMissing(f"the PKCS#12 file {path.name} holds no key and certificate")
        der_key = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        others = [x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in chain]
        loaded = key

        class KeptKeySigner(SimpleSigner):
            """pyHanko's in-memory signer with the private key parsed once: SimpleSigner parses it
            for every signature (twice a document: the size estimate, then the signature), and
            OpenSSL's check of an RSA key was most of a PKCS#12 signature's time."""

            def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
                mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
                digest = _HASHES.get(digest_algorithm)
                if digest is not None and mechanism == "rsassa_pkcs1v15" and isinstance(loaded, rsa.RSAPrivateKey):
                    return loaded.sign(data, padding.PKCS1v15(), digest())
                if digest is not None and mechanism == "ecdsa" and isinstance(loaded, ec.EllipticCurvePrivateKey):
                    return loaded.sign(data, ec.ECDSA(digest()))
                return bytes(super().sign_raw(data, digest_algorithm))

        return KeptKeySigner(signing_cert=x509.Certificate.load(cert.public_bytes(Encoding.DER)),
                             signing_key=keys.PrivateKeyInfo.load(der_key),
                             cert_registry=SimpleCertificateStore.from_certs(others))  # type: ignore[no-untyped-call]

    def _pkcs11(self, source: Pkcs11Source, ref: KeyRef) -> HankoSigner:
        from pyhanko.sign.pkcs11 import PKCS11Signer

        if self._refused is not None:
            # An HSM locks its user PIN after a few wrong ones: never try a refused PIN again
            # (every pass would); a restart with the PIN corrected tries afresh.
            raise WrongPin(f"{self._refused} (not tried again until the fleet restarts)")
        if self._session is None:
            try:
                self._session = self._open(source)
            except WrongPin as exc:
                self._refused = exc
                raise
        try:
            signer = PKCS11Signer(self._session, key_label=ref.key_label, cert_label=ref.cert_label or ref.key_label,
                                  other_certs_to_pull=())
            # Fetch now, so a wrong label is this error and not a failure in the middle of signing.
            signer.signing_cert  # noqa: B018
        except Exception as exc:
            if type(exc).__module__.startswith(("pkcs11", "pyhanko")):
                raise KeyMissing(f"no key or certificate labelled {ref.key_label!r} on token "
                                 f"{source.token_label!r} ({type(exc).__name__})") from None
            raise
        return signer

    def _open(self, source: Pkcs11Source) -> Any:
        import pkcs11
        from pkcs11 import exceptions as p11

        pin = _secret(source.pin_env, source.pin_file, "pin")
        try:
            lib = pkcs11.lib(str(source.module))
        except (OSError, RuntimeError, p11.PKCS11Error) as exc:  # python-pkcs11 raises RuntimeError here
            raise TokenMissing(f"cannot load the PKCS#11 module {source.module} ({type(exc).__name__})") from None
        try:
            token = lib.get_token(token_label=source.token_label)
        except (p11.NoSuchToken, p11.MultipleTokensReturned):
            raise TokenMissing(f"no PKCS#11 token labelled {source.token_label!r} in {source.module}") from None
        try:
            return token.open(user_pin=pin)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise WrongPin(f"the token {source.token_label!r} refused the PIN") from None
        except p11.PinLocked:
            raise WrongPin(f"the token {source.token_label!r} is locked (too many wrong PINs)") from None
        except p11.PKCS11Error as exc:
            raise TokenMissing(f"cannot open the token {source.token_label!r} ({type(exc).__name__})") from None

    def _forget(self) -> None:
        """After a token failure: open it afresh on the next signature (a restarted HSM)."""
        self._signers.clear()
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # the session is dead already: nothing more to release
                log.debug("closing a failed PKCS#11 session failed too", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._forget()

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
