"""Enrollment, renewal, revocation and signed device requests over real HTTPS.

The API here is the stand-in of :mod:`tests.provisioning.standin`, built only from
``provisioning`` pieces; it shows the wiring the fleet uses: the server certificate from the CA,
EnrollmentService for /enroll, RequestVerifier for device calls, the CRL after a revocation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from provisioning.ca import load_crl_serials
from provisioning.enrollment import EnrollAnswer, EnrollRequest, RenewRequest
from provisioning.identity import DeviceIdentity
from provisioning.requestauth import CONTENT_SHA256
from provisioning.tokens import issue_token
from tests.provisioning.standin import Fleet, standin_fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with standin_fleet(tmp_path) as running:
        yield running


def _post_enroll(fleet: Fleet, ident: DeviceIdentity, token: str, unit: str) -> httpx.Response:
    request = EnrollRequest(device_id=ident.device_id, unit_code=unit, token=SecretStr(token),
                            csr_pem=ident.csr().decode())
    assert token not in request.model_dump_json() + repr(request)
    trust = ssl.create_default_context(cafile=str(fleet.ca.cert_path))  # the image ships the fleet CA
    with httpx.Client(verify=trust) as http:
        return http.post(f"{fleet.url}/api/v1/enroll", content=request.wire_json(),
                         headers={"Content-Type": "application/json"})


def test_enrollment_with_approval_over_https(fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input: a wrong-unit token, an expired token, a reused token, another key claiming a
    pending device id. Then the happy path: pending, admin accepts, the poll gets the certificate."""
    caplog.set_level(logging.DEBUG)
    text, token = issue_token("00001", ttl=dt.timedelta(hours=1), require_approval=True)
    expired_text, expired = issue_token("00001", expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
                                        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    fleet.store.tokens = {token.token_id: token, expired.token_id: expired.model_copy(
        update={"expires_at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)})}
    secret = text.get_secret_value()
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")

    r = _post_enroll(fleet, kiosk, secret, "00002")
    assert (r.status_code, r.json()["detail"]) == (403, "wrong_unit")
    r = _post_enroll(fleet, kiosk, expired_text.get_secret_value(), "00001")
    assert (r.status_code, r.json()["detail"]) == (403, "expired")

    r = _post_enroll(fleet, kiosk, secret, "00001")
    assert r.status_code == 202 and r.json()["state"] == "pending"
    assert _post_enroll(fleet, kiosk, secret, "00001").status_code == 202  # a poll does not spend the token
    thief = DeviceIdentity(tmp_path / "thief", "kiosk-0001")
    r = _post_enroll(fleet, thief, secret, "00001")
    assert (r.status_code, r.json()["detail"]) == (409, "device_id_taken")
    other = DeviceIdentity(tmp_path / "other", "kiosk-0002")
    r = _post_enroll(fleet, other, secret, "00001")
    assert (r.status_code, r.json()["detail"]) == (403, "used")

    fleet.service.decide("kiosk-0001", accept=True, by="admin-1")
    r = _post_enroll(fleet, kiosk, secret, "00001")
    assert r.status_code == 200
    answer = EnrollAnswer.model_validate(r.json())
    assert answer.certificate_pem and answer.ca_pem
    kiosk.store(answer.certificate_pem.encode(), answer.ca_pem.encode(), broker_url=answer.broker_url,
                fleet_url=answer.fleet_url)
    assert kiosk.is_enrolled()
    assert secret not in caplog.text and secret not in r.text


def test_signed_device_requests_renewal_and_revocation(fleet: Fleet, tmp_path: Path) -> None:
    """Bad input: no authorization (401), kiosk-a asking for kiosk-b's pages (403), a replayed
    request (401), a request whose path was changed after signing (401), and after revocation a
    correctly signed request (401 'revoked', which the agent shows instead of retrying)."""
    text_a, tok_a = issue_token("00001", ttl=dt.timedelta(hours=1), max_devices=2)
    fleet.store.tokens = {tok_a.token_id: tok_a}
    a = DeviceIdentity(tmp_path / "a", "kiosk-a")
    b = DeviceIdentity(tmp_path / "b", "kiosk-b")
    for ident in (a, b):
        r = _post_enroll(fleet, ident, text_a.get_secret_value(), "00001")
        answer = EnrollAnswer.model_validate(r.json())
        assert answer.certificate_pem and answer.ca_pem
        ident.store(answer.certificate_pem.encode(), answer.ca_pem.encode())

    with httpx.Client(verify=a.ssl_context(), base_url=fleet.url) as http:  # mutual-TLS capable context
        assert http.get("/api/v1/devices/kiosk-a/pages").status_code == 401
        headers = a.sign_request("GET", "/api/v1/devices/kiosk-a/pages")
        assert http.get("/api/v1/devices/kiosk-a/pages", headers=headers).json() == {"device": "kiosk-a"}
        r = http.get("/api/v1/devices/kiosk-a/pages", headers=headers)
        assert (r.status_code, r.json()["detail"]) == (401, "replayed")
        r = http.get("/api/v1/devices/kiosk-b/pages", headers=a.sign_request("GET", "/api/v1/devices/kiosk-b/pages"))
        assert r.status_code == 403
        r = http.get("/api/v1/devices/kiosk-b/pages", headers=a.sign_request("GET", "/api/v1/devices/kiosk-a/pages"))
        assert (r.status_code, r.json()["detail"]) == (401, "bad_signature")

        old_serial = a.certificate().serial_number
        body = RenewRequest(csr_pem=a.csr(rotate=True).decode()).model_dump_json().encode()
        path = "/api/v1/devices/kiosk-a/certificate"
        headers = a.sign_request("POST", path, hashlib.sha256(body).hexdigest())
        assert headers[CONTENT_SHA256] == hashlib.sha256(body).hexdigest()
        r = http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        renewed = EnrollAnswer.model_validate(r.json())
        assert renewed.certificate_pem and renewed.ca_pem
        a.store(renewed.certificate_pem.encode(), renewed.ca_pem.encode())
        assert a.certificate().serial_number != old_serial

        revoked = fleet.service.revoke("kiosk-a", by="admin-1")
        assert {r.serial for r in revoked} == {a.certificate().serial_number, old_serial}
        fleet.crl.write_bytes(fleet.service.crl_pem())
        assert a.certificate().serial_number in load_crl_serials(fleet.crl.read_bytes(), fleet.ca)
        r = http.get("/api/v1/devices/kiosk-a/pages", headers=a.sign_request("GET", "/api/v1/devices/kiosk-a/pages"))
        assert (r.status_code, r.json()["detail"]) == (401, "revoked")
        r = _post_enroll(fleet, a, text_a.get_secret_value(), "00001")  # a revoked device cannot re-enroll itself
        assert (r.status_code, r.json()["detail"]) == (409, "device_id_taken")
        headers = b.sign_request("GET", "/api/v1/devices/kiosk-b/pages")
        assert http.get("/api/v1/devices/kiosk-b/pages", headers=headers).status_code == 200
