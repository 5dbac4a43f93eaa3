"""Enrollment as one service the fleet API calls, over a small storage interface it implements.

The wire models (:class:`EnrollRequest`, :class:`EnrollAnswer`, :class:`RenewRequest`) are what the
device sends and gets back over HTTPS; :class:`EnrollmentService` holds the rules:

- a first request checks the CSR *before* spending the token (a typo must not burn it), then
  consumes the token atomically (``EnrollmentStore.consume_token``) and records the enrollment:
  pending if the token requires approval, else accepted and signed at once;
- the device polls by sending the *same* request again (same id, same key, same token): that is
  answered from the record without spending the token again, even after the token expired;
- a device id already enrolled (pending or accepted) cannot be claimed by another key; a
  rejected id can enroll again with a new token;
- :meth:`EnrollmentService.renew` needs the device's current, unrevoked certificate (no token);
- :meth:`EnrollmentService.revoke` marks every certificate of a device revoked; the fleet then
  rewrites the CRL (:meth:`EnrollmentService.crl_pem`) and SIGHUPs the broker.

:class:`MemoryStore` implements the interface in memory (tests and the demo); the fleet's
SQLAlchemy implementation keeps the same semantics, with ``consume_token`` as a conditional UPDATE.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from provisioning.ca import CertificateAuthority, IssuedCertificate, RevokedCertificate, public_key_fingerprint
from provisioning.errors import CertificateRejected, InvalidTransition, TokenRejected
from provisioning.tokens import UNIT_CODE_PATTERN, Enrollment, EnrollmentState, EnrollmentToken, parse_token

log = logging.getLogger(__name__)

DEVICE_ID_FIELD = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$", description="The device id (certificate CN).")


class EnrollRequest(BaseModel):
    """``POST /api/v1/enroll`` body, sent by a device on first boot (no client certificate yet)."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = DEVICE_ID_FIELD
    unit_code: str = Field(pattern=UNIT_CODE_PATTERN, description="The unit the kiosk is installed in.")
    token: SecretStr = Field(description="The enrollment token text (et1....); never logged or echoed.")
    csr_pem: str = Field(max_length=8192, description="PEM CSR, subject CN = device_id.")
    agent_version: str | None = Field(None, max_length=64, description="The agent's version, for the admin's view.")

    def wire_json(self) -> str:
        """The body to send. ``model_dump_json`` masks the token (it is a SecretStr); this reveals
        it for the one place it must go: the HTTPS request body."""
        data = self.model_dump(mode="json")
        data["token"] = self.token.get_secret_value()
        return json.dumps(data)


class RenewRequest(BaseModel):
    """``POST /api/v1/devices/{id}/certificate`` body, authenticated by the current certificate."""

    model_config = ConfigDict(extra="forbid")

    csr_pem: str = Field(max_length=8192, description="PEM CSR for the same device id (new key allowed).")


class EnrollAnswer(BaseModel):
    """What the device gets back: the certificate when accepted, a retry hint when pending."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = DEVICE_ID_FIELD
    state: EnrollmentState = Field(description="pending, accepted or rejected.")
    certificate_pem: str | None = Field(None, description="The device's client certificate (accepted).")
    ca_pem: str | None = Field(None, description="The fleet CA certificate (accepted).")
    broker_url: str | None = Field(None, description="mqtts://host:port of the broker (accepted).")
    fleet_url: str | None = Field(None, description="https://... of the fleet API (accepted).")
    retry_after_s: int | None = Field(None, description="When to poll again (pending).")
    reason: str | None = Field(None, description="Why it was rejected (rejected).")


class EnrollmentStore(Protocol):
    """What the service needs persisted. Every method is one transaction in the fleet's database."""

    def token(self, token_id: str) -> EnrollmentToken | None: ...

    def consume_token(self, token_id: str) -> bool:
        """Atomically count one more device on the token if it has room; False if it had none."""
        ...

    def enrollment(self, device_id: str) -> Enrollment | None: ...

    def save_enrollment(self, enrollment: Enrollment, csr_pem: str) -> None:
        """Insert or replace the device's enrollment (and the CSR to sign when it is accepted)."""
        ...

    def enrollment_csr(self, device_id: str) -> str | None: ...

    def add_certificate(self, issued: IssuedCertificate) -> None: ...

    def latest_certificate(self, device_id: str) -> IssuedCertificate | None:
        """The newest certificate issued to the device, revoked or not (so a revoked device is
        told "revoked", not "unknown")."""
        ...

    def revoke_device(self, device_id: str, when: dt.datetime) -> list[RevokedCertificate]:
        """Mark every unrevoked certificate of the device revoked; return what was revoked."""
        ...

    def revoked(self) -> Sequence[RevokedCertificate]:
        """Every revoked certificate that has not expired yet (what the CRL must list)."""
        ...

    def revoked_serials(self) -> Container[int]: ...


@dataclass
class MemoryStore:
    """:class:`EnrollmentStore` in memory (tests, demo). Thread-safe like a database would be."""

    tokens: dict[str, EnrollmentToken] = field(default_factory=dict)
    enrollments: dict[str, tuple[Enrollment, str]] = field(default_factory=dict)
    certificates: list[IssuedCertificate] = field(default_factory=list)
    revocations: dict[int, RevokedCertificate] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self, token_id: str) -> EnrollmentToken | None:
        return self.tokens.get(token_id)

    def consume_token(self, token_id: str) -> bool:
        with self.lock:
            tok = self.tokens.get(token_id)
            if tok is None or tok.used >= tok.max_devices:
                return False
            self.tokens[token_id] = tok.consumed()
            return True

    def enrollment(self, device_id: str) -> Enrollment | None:
        found = self.enrollments.get(device_id)
        return found[0] if found else None

    def save_enrollment(self, enrollment: Enrollment, csr_pem: str) -> None:
        self.enrollments[enrollment.device_id] = (enrollment, csr_pem)

    def enrollment_csr(self, device_id: str) -> str | None:
        found = self.enrollments.get(device_id)
        return found[1] if found else None

    def add_certificate(self, issued: IssuedCertificate) -> None:
        self.certificates.append(issued)

    def latest_certificate(self, device_id: str) -> IssuedCertificate | None:
        mine = [c for c in self.certificates if c.name == device_id]
        return mine[-1] if mine else None

    def revoke_device(self, device_id: str, when: dt.datetime) -> list[RevokedCertificate]:
        with self.lock:
            new = [RevokedCertificate(c.serial, when) for c in self.certificates
                   if c.name == device_id and c.serial not in self.revocations]
            self.revocations.update({r.serial: r for r in new})
            return new

    def revoked(self) -> Sequence[RevokedCertificate]:
        return list(self.revocations.values())

    def revoked_serials(self) -> Container[int]:
        return frozenset(self.revocations)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


class EnrollmentService:
    """The enrollment rules over a store and the CA.

    >>> service = EnrollmentService(ca, store, broker_url="mqtts://broker:8883",
    ...                             fleet_url="https://fleet")                     # doctest: +SKIP
    >>> answer = service.enroll(EnrollRequest.model_validate_json(body))          # doctest: +SKIP
    """

    POLL_SECONDS = 30

    def __init__(self, ca: CertificateAuthority, store: EnrollmentStore, *, broker_url: str, fleet_url: str,
                 pepper: bytes | None = None) -> None:
        self.ca = ca
        self.store = store
        self.broker_url = broker_url
        self.fleet_url = fleet_url
        self._pepper = pepper

    def _answer(self, enrollment: Enrollment) -> EnrollAnswer:
        if enrollment.state == "pending":
            return EnrollAnswer(device_id=enrollment.device_id, state="pending", retry_after_s=self.POLL_SECONDS)
        if enrollment.state == "rejected":
            return EnrollAnswer(device_id=enrollment.device_id, state="rejected", reason=enrollment.reason)
        cert = self.store.latest_certificate(enrollment.device_id)
        if cert is None or cert.serial in self.store.revoked_serials():
            # accepted, then revoked: the device must not get a certificate again
            return EnrollAnswer(device_id=enrollment.device_id, state="rejected", reason="revoked")
        return EnrollAnswer(device_id=enrollment.device_id, state="accepted", certificate_pem=cert.pem.decode(),
                            ca_pem=self.ca.certificate_pem.decode(), broker_url=self.broker_url,
                            fleet_url=self.fleet_url)

    def _sign(self, enrollment: Enrollment, now: dt.datetime) -> None:
        csr = self.store.enrollment_csr(enrollment.device_id)
        if csr is None:
            raise InvalidTransition("no_csr", "no CSR recorded for this enrollment")
        issued = self.ca.sign_device(csr.encode(), enrollment.device_id, now=now)
        self.store.add_certificate(issued)

    def enroll(self, request: EnrollRequest, *, now: dt.datetime | None = None) -> EnrollAnswer:
        """Handle a first-boot request or a poll. Raises :class:`TokenRejected` (HTTP 403),
        :class:`CSRRejected` (422) or :class:`InvalidTransition` ``device_id_taken`` (409)."""
        moment = _now(now)
        token_id, _ = parse_token(request.token)
        token = self.store.token(token_id)
        if token is None:
            raise TokenRejected("unknown", "no such token")
        csr = self.ca.check_csr(request.csr_pem.encode(), request.device_id)
        fingerprint = public_key_fingerprint(csr)
        existing = self.store.enrollment(request.device_id)
        if existing is not None:
            if existing.token_id == token_id and existing.is_same_request(request.device_id, fingerprint):
                token.verify_secret(request.token, pepper=self._pepper)
                return self._answer(existing)  # a poll: same device, key and token
            if existing.state != "rejected":
                raise InvalidTransition("device_id_taken", "this device id is enrolled with another key or token")
            # rejected before: a new token may start over
        token.check(request.token, unit_code=request.unit_code, now=moment, pepper=self._pepper)
        if not self.store.consume_token(token_id):
            raise TokenRejected("used", "the token has already been used")
        enrollment = Enrollment.start(token, device_id=request.device_id, public_key_sha256=fingerprint, now=moment)
        self.store.save_enrollment(enrollment, request.csr_pem)
        if enrollment.state == "accepted":
            self._sign(enrollment, moment)
        log.info("enrollment of %s in unit %s: %s", enrollment.device_id, enrollment.unit_code, enrollment.state)
        return self._answer(enrollment)

    def decide(self, device_id: str, *, accept: bool, by: str, reason: str | None = None,
               now: dt.datetime | None = None) -> Enrollment:
        """An admin accepts (the certificate is signed now; the device gets it on its next poll)
        or rejects a pending enrollment."""
        moment = _now(now)
        current = self.store.enrollment(device_id)
        if current is None:
            raise InvalidTransition("no_enrollment", "no enrollment for this device")
        decided = current.accept(by=by, now=moment) if accept else current.reject(by=by, reason=reason, now=moment)
        csr = self.store.enrollment_csr(device_id) or ""
        self.store.save_enrollment(decided, csr)
        if accept:
            self._sign(decided, moment)
        log.info("enrollment of %s %s by %s", device_id, decided.state, by)
        return decided

    def renew(self, device_id: str, request: RenewRequest, current_pem: bytes, *,
              now: dt.datetime | None = None) -> EnrollAnswer:
        """A new certificate for ``device_id`` (the authenticated caller) from its current one."""
        moment = _now(now)
        issued = self.ca.renew_device(request.csr_pem.encode(), current_pem, revoked=self.store.revoked_serials(),
                                      now=moment)
        if issued.name != device_id:
            raise CertificateRejected("wrong_subject", "a device can renew only its own certificate")
        self.store.add_certificate(issued)
        return EnrollAnswer(device_id=device_id, state="accepted", certificate_pem=issued.pem.decode(),
                            ca_pem=self.ca.certificate_pem.decode(), broker_url=self.broker_url,
                            fleet_url=self.fleet_url)

    def revoke(self, device_id: str, *, by: str, now: dt.datetime | None = None) -> list[RevokedCertificate]:
        """Revoke every certificate of the device. Then write :meth:`crl_pem` and SIGHUP the broker."""
        revoked = self.store.revoke_device(device_id, _now(now))
        log.info("revoked %d certificate(s) of %s by %s", len(revoked), device_id, by)
        return revoked

    def crl_pem(self, *, now: dt.datetime | None = None) -> bytes:
        return self.ca.crl(self.store.revoked(), now=now)
