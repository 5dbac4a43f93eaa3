"""The device's side of enrollment and renewal: getting and keeping its certificate.

First boot (``sohoa-device enroll`` or the agent's start when ``identity.dir`` holds no
certificate yet): the key is made on the device (:class:`~provisioning.identity.DeviceIdentity`,
0600, never sent), a CSR and the one-time token go to ``POST /api/v1/enroll`` over HTTPS that
trusts only the fleet CA (the image's ``ca_file``, or the CA fetched once and checked against the
``ca_pin`` printed with the token). Answers:

- 200: the certificate, CA and broker address are checked and stored; the token file is deleted;
- 202: an admin must approve: wait ``Retry-After`` and send the *same* request again (same key,
  same token: a poll does not spend the token);
- 403/409/422 (and other 4xx): :class:`EnrollmentRefused`, one clear line in Vietnamese and
  English, no retry (a new token is needed);
- network errors, 408/429/5xx: retry with backoff, forever, until stopped.

Then :class:`IdentityKeeper` looks at the certificate daily and renews it before it expires
(``POST /api/v1/devices/{id}/certificate`` signed with the current key, a new key in the CSR);
the agent reconnects MQTT with the new certificate and confirms it
(``POST /api/v1/devices/{id}/certificate/confirm`` signed with the new key), after which the fleet
revokes the certificate it replaced. A fleet answering 401 ``revoked`` or
``expired`` ends it: :class:`IdentityStatus` says "revoked" and nobody retries.

Nothing here logs the token or the key; the token text lives only in the request body.

>>> keeper = IdentityKeeper(ident, cfg.identity, cfg.enrollment, unit=cfg.unit, agent_version="0.1",
...                         status=IdentityStatus(), stop=threading.Event())    # doctest: +SKIP
>>> threading.Thread(target=keeper.run).start()                                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr, ValidationError

from device.config import EnrollmentConfig, IdentityConfig
from device.errors import SohoaError
from device.http_auth import DeviceAuth
from provisioning.enrollment import EnrollAnswer, EnrollRequest, RenewRequest
from provisioning.errors import CertificateRejected, KeyFileError
from provisioning.identity import DeviceIdentity, ca_pin, check_ca_pin

log = logging.getLogger(__name__)

REVOKED_REASONS = frozenset({"revoked", "expired", "unknown_ca"})
"""Why the fleet or the broker refuses this certificate for good: stop, show it, do not retry."""

MESSAGES: dict[str, tuple[str, str]] = {
    "unknown": ("Mã đăng ký không tồn tại", "the enrollment token does not exist"),
    "invalid": ("Mã đăng ký không đúng", "the enrollment token is wrong"),
    "malformed": ("Mã đăng ký không hợp lệ", "the enrollment token is malformed"),
    "expired": ("Mã đăng ký đã hết hạn", "the enrollment token has expired"),
    "used": ("Mã đăng ký đã được sử dụng", "the enrollment token has already been used"),
    "revoked": ("Mã đăng ký hoặc thiết bị đã bị thu hồi", "the token or this device was revoked"),
    "wrong_unit": ("Mã đăng ký dành cho đơn vị khác", "the enrollment token is for another unit"),
    "rejected": ("Quản trị viên đã từ chối đăng ký thiết bị", "the administrator rejected this device"),
    "device_id_taken": ("Mã thiết bị đã được đăng ký bởi thiết bị khác",
                        "this device id is already enrolled by another device"),
    "no_token": ("Chưa có mã đăng ký thiết bị", "no enrollment token was found"),
    "ca_pin_mismatch": ("Chứng chỉ máy chủ không khớp mã đã cấp", "the fleet's CA does not match the pin given"),
    "ca_changed": ("Chứng chỉ máy chủ đã thay đổi", "the fleet's CA changed"),
    "wrong_subject": ("Chứng chỉ trả về không dành cho thiết bị này", "the certificate returned is not this device's"),
    "key_mismatch": ("Chứng chỉ trả về không khớp khóa của thiết bị", "the certificate returned is not for this key"),
}
_CSR = ("Yêu cầu chứng chỉ không hợp lệ", "the certificate request was refused")
_OTHER = ("Máy chủ từ chối đăng ký thiết bị", "the fleet refused the enrollment")

IdentityState = Literal["unenrolled", "enrolling", "pending", "enrolled", "refused", "revoked"]


class EnrollmentRefused(SohoaError, PermissionError):
    """The fleet refused the enrollment for good (bad/used/expired token, rejected, id taken, bad
    CSR). ``reason`` is the fleet's stable code; ``str()`` is one line in Vietnamese and English."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        vi, en = MESSAGES.get(reason, _CSR if reason.startswith("csr_") else _OTHER)
        super().__init__(f"{vi} / {en} ({reason})")
        self.reason = reason
        self.status = status


class CertificateRevoked(SohoaError, PermissionError):
    """The fleet or the broker refuses this device's certificate (``revoked``, ``expired``,
    ``unknown_ca``): only an admin's new token can help."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Thiết bị đã bị thu hồi chứng chỉ, vui lòng liên hệ quản trị viên / "
                         f"this device's certificate is refused ({reason}): ask the administrator")
        self.reason = reason


class RenewalFailed(SohoaError, ConnectionError):
    """A renewal attempt did not get a certificate (network, server error); tried again later."""


class Stopped(SohoaError, InterruptedError):
    """Enrollment was interrupted by a stop request."""


class IdentityStatus:
    """Where this device's identity stands, for ``GET /status``, the kiosk and the light.

    >>> status = IdentityStatus()
    >>> status.set("revoked", "revoked"); status.problem()
    'revoked'
    """

    def __init__(self, state: IdentityState = "unenrolled") -> None:
        self._lock = threading.Lock()
        self.state: IdentityState = state
        self.reason: str | None = None
        self.changed = threading.Event()

    def set(self, state: IdentityState, reason: str | None = None) -> None:
        with self._lock:
            if self.state == "revoked" and state != "revoked":
                return  # revoked is final for this run: a later success elsewhere must not hide it
            self.state, self.reason = state, reason
        self.changed.set()

    def problem(self) -> Literal["revoked", "refused"] | None:
        """What a person must act on: "revoked" or "refused" (shown on the screen and the light)."""
        with self._lock:
            state = self.state
        if state == "revoked" or state == "refused":
            return state
        return None

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self.state, "reason": self.reason}


def _reason(response: httpx.Response) -> str:
    """The fleet's stable reason code from an error answer (never echoes anything else)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"http_{response.status_code}"
    if isinstance(body, dict):
        if body.get("state") == "rejected":
            return "rejected"  # the admin's free-text reason stays on the fleet's page
        for key in ("detail", "reason"):
            value = body.get(key)
            if isinstance(value, str) and 0 < len(value) <= 64:
                return value
    return "invalid_request" if response.status_code == 422 else f"http_{response.status_code}"


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        try:
            body = response.json()
            value = body.get("retry_after_s") if isinstance(body, dict) else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
    try:
        return min(3600.0, max(1.0, float(value))) if value is not None else default
    except (TypeError, ValueError):
        return default


class Enroller:
    """One device's first-boot enrollment; :meth:`enroll` returns once the certificate is stored.

    >>> Enroller(ident, cfg.enrollment, unit_code="000.00.00.H01").enroll(threading.Event())  # doctest: +SKIP
    """

    def __init__(self, identity: DeviceIdentity, config: EnrollmentConfig, *, unit_code: str,
                 agent_version: str | None = None,
                 on_state: Callable[[IdentityState, str | None], None] | None = None) -> None:
        self.identity = identity
        self.config = config
        self.unit_code = config.unit_code or unit_code
        self.agent_version = agent_version
        self._on_state = on_state or (lambda _state, _reason: None)
        self.attempts = 0
        """Requests sent (tests check that a refusal is not retried)."""

    def _token(self) -> SecretStr:
        try:
            text = self.config.token_file.read_text().strip()
        except OSError:
            text = ""
        if not text:
            raise EnrollmentRefused("no_token")
        return SecretStr(text)

    def _trust(self, stop: threading.Event) -> tuple[ssl.SSLContext, bytes]:
        """The TLS context for the enrollment (trusts only the fleet CA) and that CA's PEM."""
        if self.config.ca_file is not None:
            pem = self.config.ca_file.read_bytes()
            return ssl.create_default_context(cadata=pem.decode()), pem
        assert self.config.ca_pin is not None
        delay = self.config.retry_min_s
        while True:
            try:
                # Unverified on purpose: the pin below is what makes the answer trustworthy.
                with httpx.Client(verify=False, timeout=self.config.timeout_s) as http:  # noqa: S501
                    response = http.get(f"{self.config.fleet_url}/api/v1/pki/ca.crt")
                if response.status_code == 200:
                    pem = response.content
                    try:
                        check_ca_pin(pem, self.config.ca_pin)
                    except CertificateRejected as exc:
                        raise EnrollmentRefused(exc.reason) from None
                    return ssl.create_default_context(cadata=pem.decode()), pem
                why = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            log.warning("cannot fetch the fleet CA (%s); retrying in %.0f s", why, delay)
            if stop.wait(delay):
                raise Stopped("stopped while fetching the fleet CA")
            delay = min(self.config.retry_max_s, delay * 2)

    def enroll(self, stop: threading.Event) -> EnrollAnswer:
        """Enroll (or finish a pending enrollment); see the module docstring for the answers.
        Raises :class:`EnrollmentRefused` or :class:`Stopped`."""
        ident = self.identity
        token = self._token()
        context, trusted_ca = self._trust(stop)
        request = EnrollRequest(device_id=ident.device_id, unit_code=self.unit_code, token=token,
                                csr_pem=ident.csr().decode(), agent_version=self.agent_version)
        body = request.wire_json().encode()  # the same bytes on every poll: same key, same token
        url = f"{self.config.fleet_url}/api/v1/enroll"
        delay = self.config.retry_min_s
        self._on_state("enrolling", None)
        log.info("enrolling %s with %s for unit %s", ident.device_id, self.config.fleet_url, self.unit_code)
        with httpx.Client(verify=context, timeout=self.config.timeout_s) as http:
            while True:
                wait: float
                self.attempts += 1
                try:
                    response = http.post(url, content=body, headers={"Content-Type": "application/json"})
                except httpx.HTTPError as exc:
                    log.warning("enrollment: fleet unreachable (%s); retrying in %.0f s", type(exc).__name__, delay)
                    wait, delay = delay, min(self.config.retry_max_s, delay * 2)
                else:
                    status = response.status_code
                    if status == 200:
                        return self._accepted(response, trusted_ca)
                    if status == 202:
                        wait = _retry_after(response, 30.0)
                        self._on_state("pending", None)
                        log.info("enrollment pending an administrator's approval; asking again in %.0f s", wait)
                        delay = self.config.retry_min_s
                    elif status in (408, 429) or status >= 500:
                        wait = max(delay, _retry_after(response, delay))
                        log.warning("enrollment: fleet answered %s; retrying in %.0f s", status, wait)
                        delay = min(self.config.retry_max_s, delay * 2)
                    else:
                        raise EnrollmentRefused(_reason(response), status)
                if stop.wait(wait):
                    raise Stopped("stopped while enrolling")

    def _accepted(self, response: httpx.Response, trusted_ca: bytes) -> EnrollAnswer:
        try:
            answer = EnrollAnswer.model_validate(response.json())
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError):
            raise EnrollmentRefused("malformed_answer", 200) from None
        if answer.state != "accepted" or not answer.certificate_pem or not answer.ca_pem:
            raise EnrollmentRefused(answer.reason or "rejected", 200)
        try:
            if ca_pin(answer.ca_pem.encode()) != ca_pin(trusted_ca):
                raise CertificateRejected("ca_changed", "the answer's CA is not the one the request trusted")
            self.identity.store(answer.certificate_pem.encode(), answer.ca_pem.encode(),
                                broker_url=answer.broker_url, fleet_url=answer.fleet_url)
        except (CertificateRejected, ValueError) as exc:
            raise EnrollmentRefused(getattr(exc, "reason", "malformed_answer"), 200) from None
        self.config.token_file.unlink(missing_ok=True)  # spent: nothing secret stays behind
        log.info("enrolled %s: certificate stored, enrollment token deleted", self.identity.device_id)
        return answer


def fleet_client(identity: DeviceIdentity, timeout: float = 30.0) -> httpx.Client:
    """An HTTPS client that trusts only the fleet CA, presents the device certificate and signs
    every request with the device key."""
    return httpx.Client(verify=identity.ssl_context(), auth=DeviceAuth(identity), timeout=timeout)


def fleet_base(identity: DeviceIdentity, fallback: str | None) -> str | None:
    """The fleet URL an enrolled device talks to: the one its enrollment answer named, else the config's."""
    url = identity.addresses().get("fleet_url") if identity.is_enrolled() else None
    return (url or fallback or "").rstrip("/") or None


def renew(identity: DeviceIdentity, fleet_url: str, *, timeout: float = 30.0) -> EnrollAnswer:
    """Ask for a new certificate with a new key (signed with the current one) and store it.
    Raises :class:`CertificateRevoked` (401 revoked/expired: stop) or :class:`RenewalFailed`."""
    body = RenewRequest(csr_pem=identity.csr(rotate=True).decode()).model_dump_json().encode()
    url = f"{fleet_url}/api/v1/devices/{identity.device_id}/certificate"
    try:
        with fleet_client(identity, timeout) as http:
            response = http.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise RenewalFailed(f"fleet unreachable ({type(exc).__name__})") from None
    if response.status_code == 401 and _reason(response) in REVOKED_REASONS:
        raise CertificateRevoked(_reason(response))
    if response.status_code != 200:
        raise RenewalFailed(f"fleet answered {response.status_code} ({_reason(response)})")
    try:
        answer = EnrollAnswer.model_validate(response.json())
        if not answer.certificate_pem or not answer.ca_pem:
            raise RenewalFailed("the renewal answer has no certificate")
        identity.store(answer.certificate_pem.encode(), answer.ca_pem.encode(),
                       broker_url=answer.broker_url, fleet_url=answer.fleet_url)
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError, CertificateRejected) as exc:
        raise RenewalFailed(f"unusable renewal answer ({type(exc).__name__})") from None
    return answer


def confirm(identity: DeviceIdentity, fleet_url: str, *, timeout: float = 30.0) -> list[str]:
    """Tell the fleet, with a request signed by the new certificate, that the device uses it: the
    fleet then revokes the certificates it replaced. The hex serials revoked; raises
    :class:`RenewalFailed` (the next signed upload confirms it as well)."""
    url = f"{fleet_url}/api/v1/devices/{identity.device_id}/certificate/confirm"
    try:
        with fleet_client(identity, timeout) as http:
            response = http.post(url)
        if response.status_code != 200:
            raise RenewalFailed(f"fleet answered {response.status_code} ({_reason(response)})")
        revoked = response.json().get("revoked_serials", [])
    except httpx.HTTPError as exc:
        raise RenewalFailed(f"fleet unreachable ({type(exc).__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise RenewalFailed(f"unusable confirmation answer ({type(exc).__name__})") from None
    return [str(serial) for serial in revoked] if isinstance(revoked, list) else []


class IdentityKeeper:
    """Enroll if needed, then keep the certificate fresh; run in a thread until ``stop``.

    ``on_enrolled`` runs once the device holds a certificate (at once when it already did) and
    ``on_renewed`` after each renewal (the agent reconnects MQTT); ``on_revoked(reason)`` when the
    fleet refuses the certificate.
    """

    def __init__(self, identity: DeviceIdentity, config: IdentityConfig, enrollment: EnrollmentConfig | None, *,
                 unit: str, agent_version: str | None, status: IdentityStatus, stop: threading.Event,
                 fleet_url: str | None = None, on_enrolled: Callable[[], None] | None = None,
                 on_renewed: Callable[[], None] | None = None,
                 on_revoked: Callable[[str], None] | None = None) -> None:
        self.identity = identity
        self.config = config
        self.enrollment = enrollment
        self.unit = unit
        self.agent_version = agent_version
        self.status = status
        self.stop = stop
        self.fleet_url = fleet_url
        self._on_enrolled = on_enrolled or (lambda: None)
        self._on_renewed = on_renewed or (lambda: None)
        self._on_revoked = on_revoked or (lambda _reason: None)
        self.renewals = 0
        self._renewing = threading.Lock()  # the timer's renewal and a rotate_certificate command, one at a time

    def ensure_enrolled(self) -> bool:
        """True once the device holds a certificate; False when it cannot (refused, stopped, not
        configured to enroll) — the status says why."""
        if self.identity.is_enrolled():
            self.status.set("enrolled")
            return True
        if self.enrollment is None:
            log.error("no certificate in %s and no enrollment configured: run 'sohoa-device enroll'",
                      self.identity.directory)
            self.status.set("unenrolled", "not_configured")
            return False
        enroller = Enroller(self.identity, self.enrollment, unit_code=self.unit, agent_version=self.agent_version,
                            on_state=self.status.set)
        try:
            enroller.enroll(self.stop)
        except EnrollmentRefused as exc:
            log.error("enrollment refused: %s", exc)
            self.status.set("refused", exc.reason)
            return False
        except (Stopped, KeyFileError, OSError, ValueError) as exc:  # ValueError: a request the model refuses
            if not isinstance(exc, Stopped):
                log.error("enrollment failed: %s", exc)
                self.status.set("unenrolled", type(exc).__name__)
            return False
        self.status.set("enrolled")
        return True

    def check_renewal(self, now: dt.datetime | None = None) -> bool:
        """Renew when the certificate is within ``renew_before_days`` of expiry; True if renewed.
        Raises :class:`RenewalFailed`; a revoked certificate sets the status and returns False."""
        with self._renewing:
            if self.status.problem() is not None:
                return False
            if not self.identity.needs_renewal(now=now, window=dt.timedelta(days=self.config.renew_before_days)):
                return False
            return self._renew(now)

    def rotate(self, now: dt.datetime | None = None) -> int:
        """A new key and certificate now, whatever the expiry (the ``rotate_certificate`` command);
        returns the new certificate's serial. Raises :class:`CertificateRevoked` when the fleet
        refuses the current certificate (the status then says so) and :class:`RenewalFailed`
        otherwise (the current key and certificate stay in use). Once the new certificate is
        stored the device confirms it with a request signed by it, and the fleet revokes the
        previous one (until then the fleet still takes it: a renewal lost on its way back)."""
        with self._renewing:
            problem = self.status.problem()
            if problem is not None:
                raise CertificateRevoked(problem)
            if not self._renew(now):
                raise CertificateRevoked(self.status.problem() or "revoked")
            serial: int = self.identity.certificate().serial_number
            return serial

    def _renew(self, now: dt.datetime | None) -> bool:
        ident = self.identity
        if ident.certificate().not_valid_after_utc <= (now or dt.datetime.now(dt.UTC)):
            # An expired certificate cannot authenticate a renewal: only a new token helps.
            self._revoked("expired")
            return False
        base = fleet_base(ident, self.fleet_url)
        if base is None:
            raise RenewalFailed("no fleet URL to renew with")
        try:
            answer = renew(ident, base)
        except CertificateRevoked as exc:
            self._revoked(exc.reason)
            return False
        self.renewals += 1
        log.info("certificate renewed for %s", answer.device_id)
        self._on_renewed()
        try:
            retired = confirm(ident, base)
            log.info("renewal confirmed to the fleet; %d previous certificate(s) revoked", len(retired))
        except RenewalFailed as exc:
            log.warning("renewal not confirmed yet (%s): the next signed request confirms it", exc)
        return True

    def _revoked(self, reason: str) -> None:
        log.error("the fleet refuses this device's certificate (%s): not retrying; an administrator must "
                  "enroll it again", reason)
        self.status.set("revoked", reason)
        self._on_revoked(reason)

    def run(self) -> None:
        if not self.ensure_enrolled():
            return
        self._on_enrolled()
        delay = self.config.renewal_check_s
        while not self.stop.wait(delay):
            delay = self.config.renewal_check_s
            try:
                self.check_renewal()
            except RenewalFailed as exc:
                delay = min(self.config.renewal_check_s, 600.0)
                log.warning("certificate renewal postponed %.0f s: %s", delay, exc)
            except (OSError, ValueError) as exc:  # a damaged identity file: say so, keep the agent up
                log.error("certificate renewal check failed: %s", exc)
            if self.status.problem() == "revoked":
                return


def enroll_main(config_path: str) -> int:
    """``sohoa-device enroll --config FILE``: enroll now (waiting through approval), exit 0 once
    the certificate is stored, 1 with one line on stderr when refused."""
    import sys

    from device.config import load
    from protocol.configfile import ConfigError

    try:
        config = load(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            sys.stderr.write(line + "\n")
        return 1
    if config.identity is None or config.enrollment is None:
        sys.stderr.write("sohoa-device: the config needs 'identity' and 'enrollment' sections to enroll\n")
        return 2
    ident = DeviceIdentity(config.identity.dir, config.device_id)
    if ident.is_enrolled():
        sys.stdout.write(f"{config.device_id}: already enrolled ({Path(config.identity.dir)})\n")
        return 0
    from device import __version__

    enroller = Enroller(ident, config.enrollment, unit_code=config.unit, agent_version=__version__)
    enroller.enroll(threading.Event())  # EnrollmentRefused: the CLI prints its one line
    sys.stdout.write(f"{config.device_id}: enrolled, certificate in {config.identity.dir}\n")
    return 0
