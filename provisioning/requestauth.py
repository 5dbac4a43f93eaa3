"""Device API calls authenticated by the device certificate's key: a signature per request.

Why not only mutual TLS at the HTTP server: uvicorn does not hand the client certificate to the
application, so the API could not tell *which* device is calling (and the enrollment endpoint must
accept devices that have no certificate yet). Instead every device request carries::

    Authorization: Sohoa-Device id=<device id>,ts=<unix seconds>,nonce=<random>,sig=<base64url>
    X-Sohoa-Content-SHA256: <hex sha256 of the body>

where ``sig`` is the device key's ECDSA-SHA256 signature over method, path (with query), body hash,
time and nonce. The fleet looks up the device's current certificate by ``id``, checks it with the
CA (not expired, not revoked), verifies the signature with its public key, refuses a time more than
``max_skew`` away and a nonce seen before. It is a token bound to the certificate: only the holder
of the key can make one, it is good for one request, and revoking the certificate ends it.

For ``PUT /api/v1/files/{sha256}`` the body hash is the file's sha256 the device already knows,
so signing costs nothing extra while streaming; the fleet checks it against the bytes it stored.

>>> headers = sign_request(key, "kiosk-0001", "PUT", "/api/v1/files/ab12...", body_sha256)  # doctest: +SKIP
>>> peer = verifier.verify(headers.get("Authorization"), "PUT", "/api/v1/files/ab12...",
...                        body_sha256, certificate_pem=cert_pem, revoked=serials)          # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_pem_x509_certificate

from protocol.topics import is_valid_device_id
from provisioning.ca import CertificateAuthority, PeerIdentity
from provisioning.errors import CertificateRejected

SCHEME = "Sohoa-Device"
AUTHORIZATION = "Authorization"
CONTENT_SHA256 = "X-Sohoa-Content-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = dt.timedelta(minutes=5)

_HEADER = re.compile(
    r"^Sohoa-Device id=(?P<id>[a-z0-9-]{3,64}),ts=(?P<ts>\d{1,12}),nonce=(?P<nonce>[A-Za-z0-9_-]{16,64}),"
    r"sig=(?P<sig>[A-Za-z0-9_-]{40,200})$")


def _message(device_id: str, method: str, path: str, body_sha256: str, ts: int, nonce: str) -> bytes:
    return "\n".join(("sohoa-request-v1", device_id, method.upper(), path, body_sha256.lower(), str(ts),
                      nonce)).encode()


def sign_request(key: ec.EllipticCurvePrivateKey, device_id: str, method: str, path: str,
                 body_sha256: str = EMPTY_SHA256, *, now: dt.datetime | None = None) -> dict[str, str]:
    """The two headers for one request. ``path`` is the URL path with its query string, exactly as
    sent (e.g. ``/api/v1/pages?device_id=kiosk-0001``)."""
    ts = int((now or dt.datetime.now(dt.UTC)).timestamp())
    nonce = secrets.token_urlsafe(16)
    sig = key.sign(_message(device_id, method, path, body_sha256, ts, nonce), ec.ECDSA(hashes.SHA256()))
    b64 = base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    return {AUTHORIZATION: f"{SCHEME} id={device_id},ts={ts},nonce={nonce},sig={b64}",
            CONTENT_SHA256: body_sha256.lower()}


@dataclass(frozen=True)
class SignedRequest:
    """A parsed ``Authorization: Sohoa-Device ...`` header (not verified yet)."""

    device_id: str
    ts: int
    nonce: str
    signature: bytes


def parse_authorization(header: str | None) -> SignedRequest:
    """Parse the header; :class:`CertificateRejected` ``unauthenticated`` (HTTP 401) when absent or odd.
    The fleet then loads the current certificate of ``device_id`` and calls :meth:`RequestVerifier.verify`."""
    m = _HEADER.match(header or "")
    if m is None or not is_valid_device_id(m["id"]):
        raise CertificateRejected("unauthenticated", "missing or malformed Sohoa-Device authorization")
    sig = base64.urlsafe_b64decode(m["sig"] + "=" * (-len(m["sig"]) % 4))
    return SignedRequest(m["id"], int(m["ts"]), m["nonce"], sig)


class NonceStore(Protocol):
    """Where the nonces of accepted requests are kept while they could be replayed."""

    def remember(self, device_id: str, nonce: str, ts: int, horizon: float) -> bool:
        """Record ``(device_id, nonce)``; False when it was recorded before (a replay). Nonces of
        requests older than ``horizon`` (seconds since the epoch) may be forgotten."""
        ...


class MemoryNonces:
    """Nonces in this process's memory (at most ``max_nonces``): enough for one API process. Several
    processes serving one fleet share a store in their database instead (the fleet's ``SqlNonces``).

    >>> nonces = MemoryNonces()
    >>> nonces.remember("kiosk-1", "n" * 16, 100, horizon=0), nonces.remember("kiosk-1", "n" * 16, 100, horizon=0)
    (True, False)
    """

    def __init__(self, max_nonces: int = 100_000) -> None:
        self._nonces: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max_nonces = max_nonces
        self._lock = threading.Lock()

    def remember(self, device_id: str, nonce: str, ts: int, horizon: float) -> bool:
        key = (device_id, nonce)
        with self._lock:
            if key in self._nonces:
                return False
            while self._nonces and (len(self._nonces) >= self._max_nonces
                                    or next(iter(self._nonces.values())) < horizon):
                self._nonces.popitem(last=False)
            self._nonces[key] = ts
        return True


class RequestVerifier:
    """Checks signed requests against the CA, the device's certificate, the clock and a nonce store
    (``nonces``; in this process's memory unless given one shared by every process of the fleet).
    """

    def __init__(self, ca: CertificateAuthority, *, max_skew: dt.timedelta = MAX_SKEW,
                 nonces: NonceStore | None = None) -> None:
        self.ca = ca
        self.max_skew = max_skew
        self.nonces: NonceStore = nonces if nonces is not None else MemoryNonces()

    def verify(self, header: str | SignedRequest | None, method: str, path: str, body_sha256: str, *,
               certificate_pem: bytes | None, revoked: Container[int] = frozenset(),
               now: dt.datetime | None = None) -> PeerIdentity:
        """The device the request comes from, or :class:`CertificateRejected` with ``reason``:
        ``unauthenticated`` / ``stale`` / ``replayed`` / ``bad_signature`` (401), ``revoked`` /
        ``expired`` (401: the device must stop and show it), ``unknown_ca``."""
        signed = header if isinstance(header, SignedRequest) else parse_authorization(header)
        if certificate_pem is None:
            raise CertificateRejected("unauthenticated", "no certificate on record for this device")
        moment = now or dt.datetime.now(dt.UTC)
        peer = self.ca.verify_client(certificate_pem, revoked=revoked, now=moment, kinds=("device",))
        if peer.name != signed.device_id:
            raise CertificateRejected("unauthenticated", "the certificate is not the claimed device's")
        if abs(moment.timestamp() - signed.ts) > self.max_skew.total_seconds():
            raise CertificateRejected("stale", "request time too far from the server's clock")
        public = load_pem_x509_certificate(certificate_pem).public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)  # the CA signs only ECDSA device keys
        try:
            public.verify(signed.signature, _message(signed.device_id, method, path, body_sha256, signed.ts,
                                                     signed.nonce), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise CertificateRejected("bad_signature", "the request signature does not verify") from None
        self._remember(signed, moment)
        return peer

    def _remember(self, signed: SignedRequest, now: dt.datetime) -> None:
        horizon = now.timestamp() - 2 * self.max_skew.total_seconds()
        if not self.nonces.remember(signed.device_id, signed.nonce, signed.ts, horizon):
            raise CertificateRejected("replayed", "this request was already seen")
