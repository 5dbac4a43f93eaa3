"""Enrollment through the fleet's real API over real HTTPS: tokens, enrollment, approval,
renewal, revocation, the CRL, device request authentication and the audit log."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.auth.models import AuditEntry
from fleet.enroll.config import EnrollmentConfig, PkiConfig
from fleet.models import Device
from provisioning.ca import CertificateAuthority, load_crl_serials
from provisioning.enrollment import EnrollAnswer, RenewRequest
from provisioning.files import read_private_key
from provisioning.identity import DeviceIdentity, check_ca_pin
from provisioning.requestauth import sign_request
from tests.authn import browser_login
from tests.browser import chromium
from tests.fleet.enroll.conftest import OTHER_UNIT, UNIT, HttpsFleet, new_postgres_database


def _token(admin_http: object, unit: str = UNIT, **body: object) -> str:
    r = admin_http.post("/api/v1/enrollment-tokens", json={"unit_code": unit, **body})  # type: ignore[attr-defined]
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _actions(fleet: HttpsFleet) -> list[tuple[str, str, str | None]]:
    return [(a.action, a.outcome, a.detail) for a in fleet.audit()]


def _refusals(fleet: HttpsFleet, action: str) -> list[AuditEntry]:
    return [a for a in fleet.audit() if a.action == action and a.outcome == "refused"]


def _assert_no_secret(fleet: HttpsFleet, caplog: pytest.LogCaptureFixture, secrets: list[str],
                      keys: list[DeviceIdentity]) -> None:
    """No token outside its one creation answer; no private key anywhere."""
    private = [k.key_path.read_text() for k in keys if k.key_path.exists()]
    rows = " ".join(f"{a.actor} {a.action} {a.target} {a.detail}" for a in fleet.audit())
    for secret in secrets:
        shown = [r for r in fleet.responses if secret in r.text]
        assert len(shown) == 1 and shown[0].request.url.path == "/api/v1/enrollment-tokens", secret[:12]
        assert secret not in caplog.text and secret not in rows
        assert secret.split(".")[2] not in caplog.text + rows  # nor the secret half alone
    for pem in private:
        body = pem.split("-----")[2].strip().splitlines()[0]
        assert all(body not in r.text for r in fleet.responses)
        assert body not in caplog.text and body not in rows
    assert "PRIVATE KEY" not in caplog.text + rows + "".join(r.text for r in fleet.responses)


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_token_enroll_certificate_and_reuse(db: str, serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                            request: pytest.FixtureRequest, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Happy path, then bad input: the same one-device token presented by a second kiosk (403
    'used', audited with the client's address). The certificate's CN is the device id and it
    verifies against the CA the token's pin names; the token text is in one response only."""
    caplog.set_level(logging.DEBUG)
    url = sqlite_url if db == "sqlite" else new_postgres_database(request.getfixturevalue("postgres_url"))
    fleet = serve_fleet(url)
    admin = fleet.admin()
    r = admin.post("/api/v1/enrollment-tokens", json={"unit_code": UNIT, "ttl_hours": 2})
    assert r.status_code == 201, r.text
    issued = r.json()
    token = issued["token"]
    assert issued["max_devices"] == 1 and issued["state"] == "active" and "secret_hash" not in issued
    listed = admin.get("/api/v1/enrollment-tokens").json()
    assert [t["token_id"] for t in listed] == [issued["token_id"]] and "token" not in listed[0]

    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")
    r = fleet.enroll(kiosk, token)
    assert r.status_code == 200, r.text
    answer = EnrollAnswer.model_validate(r.json())
    assert answer.state == "accepted" and answer.certificate_pem and answer.ca_pem
    assert answer.broker_url == "mqtts://127.0.0.1:8883" and answer.fleet_url == fleet.url
    check_ca_pin(answer.ca_pem.encode(), issued["ca_pin"])  # what a device without the CA file checks
    cert = x509.load_pem_x509_certificate(answer.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kiosk-0001"
    peer = fleet.ca.verify_client(answer.certificate_pem.encode())
    assert (peer.name, peer.kind) == ("kiosk-0001", "device")
    kiosk.store(answer.certificate_pem.encode(), answer.ca_pem.encode(), broker_url=answer.broker_url,
                fleet_url=answer.fleet_url)
    with fleet.client() as http:
        assert http.get("/api/v1/pki/ca.crt").content == answer.ca_pem.encode()

    second = DeviceIdentity(tmp_path / "second", "kiosk-0002")
    r = fleet.enroll(second, token)
    assert (r.status_code, r.json()) == (403, {"detail": "used"})

    actions = _actions(fleet)
    assert ("token.created", "ok") in [(a, o) for a, o, _ in actions]
    assert ("enrollment.requested", "accepted") in [(a, o) for a, o, _ in actions]
    issued_rows = [a for a in fleet.audit() if a.action == "certificate.issued"]
    assert [a.target for a in issued_rows] == ["kiosk-0001"]
    assert f"serial={cert.serial_number:x}" in (issued_rows[0].detail or "")
    refused = _refusals(fleet, "enrollment.refused")
    assert len(refused) == 1 and refused[0].target == "kiosk-0002" and refused[0].client_ip == "127.0.0.1"
    assert refused[0].detail == f"reason=used token={issued['token_id']}"
    _assert_no_secret(fleet, caplog, [token], [kiosk, second])
    admin.close()


def test_expired_wrong_unit_and_malformed_tokens(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input: a token presented after its expiry, a token of unit 00002 by a kiosk installed
    in 00001, a token with a wrong secret, junk instead of a token, a body missing its CSR (the
    422 must not echo the token), and a unit admin creating a token for another unit. Each is
    refused with its reason and audited; a good token still works afterwards."""
    caplog.set_level(logging.DEBUG)
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")

    expiring = _token(admin, ttl_hours=1)
    fleet.clock.offset = dt.timedelta(hours=2)
    r = fleet.enroll(kiosk, expiring)
    assert (r.status_code, r.json()["detail"]) == (403, "expired")
    fleet.clock.offset = dt.timedelta(0)

    other_unit = _token(admin, unit=OTHER_UNIT)
    r = fleet.enroll(kiosk, other_unit, unit=UNIT)
    assert (r.status_code, r.json()["detail"]) == (403, "wrong_unit")
    tampered = other_unit[:-4] + ("AAAA" if not other_unit.endswith("AAAA") else "BBBB")
    r = fleet.enroll(kiosk, tampered, unit=OTHER_UNIT)
    assert (r.status_code, r.json()["detail"]) == (403, "invalid")
    r = fleet.enroll(kiosk, "not-a-token")
    assert (r.status_code, r.json()["detail"]) == (403, "malformed")
    with fleet.client() as http:
        r = http.post("/api/v1/enroll", json={"device_id": "kiosk-0001", "unit_code": UNIT, "token": other_unit})
    assert r.status_code == 422 and other_unit not in r.text
    assert r.json()["detail"][0]["loc"] == ["csr_pem"]

    unit_admin = fleet.admin(role="unit_admin", unit_code=UNIT, name="unit-admin")
    r = unit_admin.post("/api/v1/enrollment-tokens", json={"unit_code": OTHER_UNIT})
    assert r.status_code == 404
    own = _token(unit_admin, unit=UNIT)
    assert [t["unit_code"] for t in unit_admin.get("/api/v1/enrollment-tokens").json()] == [UNIT, UNIT]

    reasons = [a.detail.split()[0] for a in _refusals(fleet, "enrollment.refused") if a.detail]
    assert reasons == ["reason=expired", "reason=wrong_unit", "reason=invalid", "reason=malformed",
                       "reason=invalid_request"]
    assert all(a.client_ip == "127.0.0.1" for a in _refusals(fleet, "enrollment.refused"))
    r = fleet.enroll(kiosk, own)
    assert r.status_code == 200, r.text
    _assert_no_secret(fleet, caplog, [expiring, other_unit, own], [kiosk])
    admin.close()
    unit_admin.close()


def test_withdrawn_token_and_rate_limit(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                        tmp_path: Path) -> None:
    """Bad input: a token the admin withdrew (DELETE), then more enrollment attempts from one
    address than the limit allows (429 with Retry-After, audited as rate_limited)."""
    fleet = serve_fleet(sqlite_url, enrollment=EnrollmentConfig(rate_per_minute=3))
    admin = fleet.admin()
    r = admin.post("/api/v1/enrollment-tokens", json={"unit_code": UNIT})
    token, token_id = r.json()["token"], r.json()["token_id"]
    r = admin.delete(f"/api/v1/enrollment-tokens/{token_id}")
    assert r.status_code == 200 and r.json()["state"] == "revoked" and "token" not in r.json()
    assert admin.delete("/api/v1/enrollment-tokens/0123456789abcdef").status_code == 404
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")
    assert fleet.enroll(kiosk, token).json()["detail"] == "revoked"
    assert fleet.enroll(kiosk, token).status_code == 403
    r = fleet.enroll(kiosk, token)
    assert r.status_code == 403
    r = fleet.enroll(kiosk, token)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert [a.detail for a in _refusals(fleet, "enrollment.refused")][-1] == "reason=rate_limited"
    assert any(a.action == "token.revoked" and a.target == f"token {token_id}" for a in fleet.audit())
    admin.close()


def test_approval_pending_accept_reject(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                        tmp_path: Path) -> None:
    """Bad input: a unit admin of another unit deciding (404), accepting twice (409), a poll
    after rejection (403 'rejected'). Pending answers 202 with Retry-After and does not spend
    the token again; an accepted poll gets the certificate."""
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    token = _token(admin, max_devices=2, require_approval=True)
    a = DeviceIdentity(tmp_path / "a", "kiosk-a")
    b = DeviceIdentity(tmp_path / "b", "kiosk-b")
    for ident in (a, b):
        r = fleet.enroll(ident, token)
        assert r.status_code == 202 and r.json()["state"] == "pending" and r.headers["Retry-After"] == "30"
    assert fleet.enroll(a, token).status_code == 202  # a poll
    pending = admin.get("/api/v1/enrollments", params={"state": "pending"}).json()
    assert sorted(e["device_id"] for e in pending) == ["kiosk-a", "kiosk-b"]
    assert pending[0]["public_key_sha256"] and "csr_pem" not in pending[0]

    stranger = fleet.admin(role="unit_admin", unit_code=OTHER_UNIT, name="stranger")
    assert stranger.post("/api/v1/enrollments/kiosk-a/accept").status_code == 404
    assert stranger.get("/api/v1/enrollments").json() == []
    viewer = fleet.admin(role="viewer", name="viewer")
    assert viewer.post("/api/v1/enrollments/kiosk-a/accept").status_code == 403

    r = admin.post("/api/v1/enrollments/kiosk-a/accept")
    assert r.status_code == 200 and r.json()["state"] == "accepted" and r.json()["decided_by"] == "admin"
    r = fleet.enroll(a, token)
    assert r.status_code == 200 and EnrollAnswer.model_validate(r.json()).certificate_pem
    r = admin.post("/api/v1/enrollments/kiosk-a/accept")
    assert (r.status_code, r.json()["detail"]) == (409, "already_decided")

    r = admin.post("/api/v1/enrollments/kiosk-b/reject", json={"reason": "not our kiosk"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    r = fleet.enroll(b, token)
    assert r.status_code == 403 and r.json()["state"] == "rejected" and r.json()["certificate_pem"] is None
    assert admin.get("/api/v1/enrollments", params={"state": "pending"}).json() == []

    actions = [(x.action, x.target) for x in fleet.audit()]
    for expected in [("enrollment.requested", "kiosk-a"), ("enrollment.accepted", "kiosk-a"),
                     ("certificate.issued", "kiosk-a"), ("enrollment.rejected", "kiosk-b")]:
        assert expected in actions
    assert [x.detail for x in _refusals(fleet, "enrollment.refused") if x.target == "kiosk-a"] == [
        "reason=already_decided"]
    for http in (admin, stranger, viewer):
        http.close()


def _enrolled(fleet: HttpsFleet, token: str, path: Path, device_id: str) -> DeviceIdentity:
    ident = DeviceIdentity(path / device_id, device_id)
    answer = EnrollAnswer.model_validate(fleet.enroll(ident, token).json())
    assert answer.certificate_pem and answer.ca_pem
    ident.store(answer.certificate_pem.encode(), answer.ca_pem.encode())
    return ident


def _renew(fleet: HttpsFleet, ident: DeviceIdentity, device_id: str, *,
           rotate: bool = True) -> tuple[int, dict[str, object]]:
    body = RenewRequest(csr_pem=ident.csr(rotate=rotate).decode()).model_dump_json().encode()
    path = f"/api/v1/devices/{device_id}/certificate"
    headers = ident.sign_request("POST", path, hashlib.sha256(body).hexdigest())
    with fleet.client(verify=ident.ssl_context()) as http:
        r = http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
    return r.status_code, r.json()


def test_renewal_impersonation_and_revocation(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                              tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input: an unsigned renewal (401), kiosk-a's signed request for kiosk-b's certificate
    (403, audited), a body swapped after signing (401 bad_signature), a replayed request (401),
    and after revocation kiosk-a's correctly signed renewal (401 'revoked'). The CRL served at
    /api/v1/pki/crl.pem and the broker's file list its serials; kiosk-a shows 'revoked'."""
    caplog.set_level(logging.DEBUG)
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    token = _token(admin, max_devices=2)
    a = _enrolled(fleet, token, tmp_path, "kiosk-a")
    b = _enrolled(fleet, token, tmp_path, "kiosk-b")
    first_serial = a.certificate().serial_number

    with fleet.client() as http:
        r = http.post("/api/v1/devices/kiosk-a/certificate", json={"csr_pem": "x"})
        assert (r.status_code, r.json()["detail"]) == (401, "unauthenticated")
        path = "/api/v1/devices/kiosk-a/certificate"
        body = RenewRequest(csr_pem=a.csr().decode()).model_dump_json().encode()
        headers = a.sign_request("POST", path, hashlib.sha256(body).hexdigest())
        swapped = body.replace(b"}", b" }")
        r = http.post(path, content=swapped, headers={**headers, "Content-Type": "application/json"})
        assert (r.status_code, r.json()["detail"]) == (401, "bad_signature")
        r = http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        assert (r.status_code, r.json()["detail"]) == (401, "replayed")  # its nonce was used above

    status, answer = _renew(fleet, a, "kiosk-a")
    assert status == 200, answer
    renewed = EnrollAnswer.model_validate(answer)
    assert renewed.certificate_pem and renewed.ca_pem
    a.store(renewed.certificate_pem.encode(), renewed.ca_pem.encode())
    assert a.certificate().serial_number != first_serial
    assert fleet.ca.verify_client(renewed.certificate_pem.encode()).name == "kiosk-a"

    status, answer = _renew(fleet, a, "kiosk-b", rotate=False)  # kiosk-a asking for kiosk-b's certificate
    assert (status, answer["detail"]) == (403, "not_this_device")
    key_a = read_private_key(a.key_path)  # kiosk-a claiming to be kiosk-b: its key is not kiosk-b's
    assert isinstance(key_a, ec.EllipticCurvePrivateKey)
    path = "/api/v1/devices/kiosk-b/certificate"
    body = RenewRequest(csr_pem=b.csr().decode()).model_dump_json().encode()
    forged = sign_request(key_a, "kiosk-b", "POST", path, hashlib.sha256(body).hexdigest())
    with fleet.client() as http:
        r = http.post(path, content=body, headers={**forged, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["detail"]) == (401, "bad_signature")
    assert [x.target for x in _refusals(fleet, "device.refused") if x.detail == "reason=not_this_device"] == [
        "kiosk-b"]

    r = admin.post("/api/v1/devices/kiosk-a/revoke")
    assert r.status_code == 200, r.text
    out = r.json()
    # The first certificate was revoked already: kiosk-a's request signed by its renewed one
    # (for kiosk-b's certificate, above) confirmed the renewal.
    assert out["revoked_serials"] == [f"{a.certificate().serial_number:x}"]
    assert out["crl_published"] is True and out["broker_reloaded"] is False
    with fleet.client() as http:
        crl_pem = http.get("/api/v1/pki/crl.pem").content
    served = load_crl_serials(crl_pem, fleet.ca)
    assert {first_serial, a.certificate().serial_number} <= served
    assert b.certificate().serial_number not in served
    assert fleet.config.pki.crl_file is not None
    assert load_crl_serials(fleet.config.pki.crl_file.read_bytes(), fleet.ca) == served

    status, answer = _renew(fleet, a, "kiosk-a", rotate=False)
    assert (status, answer["detail"]) == (401, "revoked")
    device = admin.get("/api/v1/devices/kiosk-a").json()
    assert device["status"] == "revoked" and device["online"] is False and device["unit"] == UNIT
    assert admin.get("/api/v1/devices/kiosk-b").json()["status"] == "enrolled"  # never spoke, never revoked
    status, _ = _renew(fleet, b, "kiosk-b")
    assert status == 200  # the other kiosk is unaffected

    actions = [(x.action, x.target, x.outcome) for x in fleet.audit()]
    for expected in [("certificate.renewed", "kiosk-a", "ok"), ("certificate.superseded", "kiosk-a", "ok"),
                     ("certificate.revoked", "kiosk-a", "ok"),
                     ("crl.published", None, "ok")]:
        assert expected in actions
    assert [x.detail for x in _refusals(fleet, "device.refused") if x.target == "kiosk-a"][-1] == "reason=revoked"
    listed = admin.get("/api/v1/audit", params={"action": "crl.published"}).json()  # readable through the API
    # by the CRL timer, the admin's revocation and the device's confirmed renewal
    assert listed and {e["actor_kind"] for e in listed} == {"user", "system", "device"}
    _assert_no_secret(fleet, caplog, [token], [a, b])
    admin.close()


def test_revoke_scope(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path) -> None:
    """Bad input: a unit admin of another unit revoking a device (404, nothing revoked), a
    viewer revoking (403), revoking an unknown device (404)."""
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    a = _enrolled(fleet, _token(admin), tmp_path, "kiosk-a")
    stranger = fleet.admin(role="unit_admin", unit_code=OTHER_UNIT, name="stranger")
    viewer = fleet.admin(role="viewer", name="viewer")
    assert stranger.post("/api/v1/devices/kiosk-a/revoke").status_code == 404
    assert viewer.post("/api/v1/devices/kiosk-a/revoke").status_code == 403
    assert admin.post("/api/v1/devices/kiosk-zzz/revoke").status_code == 404
    with fleet.client() as http:
        assert a.certificate().serial_number not in load_crl_serials(http.get("/api/v1/pki/crl.pem").content,
                                                                     fleet.ca)
    owner = fleet.admin(role="unit_admin", unit_code=UNIT, name="owner")
    assert owner.post("/api/v1/devices/kiosk-a/revoke").status_code == 200
    for http in (admin, stranger, viewer, owner):
        http.close()


def test_crl_rewritten_on_a_timer(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path) -> None:
    """Fault tried: a CRL file that lapsed while the fleet was down (next update in the past).
    The fleet rewrites it at start, then on its timer (here every ~0.7 s), each time valid 7 days."""
    pki = tmp_path / "pki"
    ca = CertificateAuthority.create(pki / "ca")
    crl_file = pki / "broker" / "crl.pem"
    ca.write_crl(crl_file, [], now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    lapsed = x509.load_pem_x509_crl(crl_file.read_bytes()).next_update_utc
    assert lapsed is not None and lapsed < dt.datetime.now(dt.UTC)
    fleet = serve_fleet(sqlite_url, pki=PkiConfig(ca_dir=pki / "ca", crl_file=crl_file, crl_refresh_h=0.0002))
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=6)
    deadline = time.monotonic() + 15
    while True:
        whys = [a.detail.rsplit("why=", 1)[1] for a in fleet.audit() if a.action == "crl.published" and a.detail]
        if whys.count("timer") >= 2:
            break
        assert time.monotonic() < deadline, f"the timer did not rewrite the CRL: {whys}"
        time.sleep(0.1)
    assert whys[0] == "start"
    with fleet.client() as http:
        served = x509.load_pem_x509_crl(http.get("/api/v1/pki/crl.pem").content)
    assert served.next_update_utc is not None and served.last_update_utc >= crl.last_update_utc


def test_web_page_shows_revoked(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path) -> None:
    """Bad state shown: a revoked kiosk must read 'Revoked' on the web page (over HTTPS), not
    online/offline; the other kiosk in the list still reads its connection state."""
    from playwright.sync_api import expect

    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin(name="web-admin")
    token = _token(admin, max_devices=2)
    _enrolled(fleet, token, tmp_path, "kiosk-a")
    assert admin.post("/api/v1/devices/kiosk-a/revoke").status_code == 200
    with fleet.state.sessions.begin() as session:  # a second kiosk the fleet has heard from
        now = dt.datetime.now(dt.UTC)
        session.add(Device(id="kiosk-b", unit_code=UNIT, first_seen=now, last_seen=now, status="online"))
    admin.close()
    with chromium() as browser:
        context = browser.new_context(ignore_https_errors=True)  # the fleet CA is not in Chromium's store
        page = context.new_page()
        browser_login(page, fleet.url, "web-admin", "pw-web-admin-0123456789")
        page.goto(f"{fleet.url}/")
        expect(page.locator('[data-device="kiosk-a"]')).to_contain_text("Revoked", timeout=10_000)
        expect(page.locator('[data-device="kiosk-b"]')).to_contain_text("Trực tuyến")
        expect(page.locator('[data-device="kiosk-b"]')).not_to_contain_text("Revoked")


def test_renewal_lost_on_the_way_back_keeps_the_device_in(serve_fleet: Callable[..., HttpsFleet], sqlite_url: str,
                                                           tmp_path: Path) -> None:
    """Fault tried: the fleet issues a renewal but the device never stores it (crash or dropped
    link before ``store``). The device still signs with its previous key: its requests and its next
    renewal are accepted (the previous certificate is still valid), and a key that was never the
    device's is still refused. Revocation then ends both certificates."""
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    a = _enrolled(fleet, _token(admin), tmp_path, "kiosk-a")
    first_serial = a.certificate().serial_number

    status, lost = _renew(fleet, a, "kiosk-a")  # issued by the fleet ...
    assert status == 200 and lost["certificate_pem"]
    assert a.certificate().serial_number == first_serial  # ... but never stored by the device

    status, answer = _renew(fleet, a, "kiosk-a")  # signed with the previous key: accepted
    assert status == 200, answer
    renewed = EnrollAnswer.model_validate(answer)
    assert renewed.certificate_pem and renewed.ca_pem
    a.store(renewed.certificate_pem.encode(), renewed.ca_pem.encode())
    assert a.certificate().serial_number != first_serial
    issued = [x.detail for x in fleet.audit() if x.action == "certificate.renewed"]
    assert (issued[-1] or "").endswith(f"previous={first_serial:x}")  # renewed from the certificate that signed

    stranger = DeviceIdentity(tmp_path / "stranger", "kiosk-a")  # a key the fleet never certified
    stranger.csr()
    body = RenewRequest(csr_pem=a.csr(rotate=False).decode()).model_dump_json().encode()
    path = "/api/v1/devices/kiosk-a/certificate"
    stranger_key = read_private_key(stranger.key_path)
    assert isinstance(stranger_key, ec.EllipticCurvePrivateKey)
    forged = sign_request(stranger_key, "kiosk-a", "POST", path, hashlib.sha256(body).hexdigest())
    with fleet.client() as http:
        r = http.post(path, content=body, headers={**forged, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["detail"]) == (401, "bad_signature")

    assert admin.post("/api/v1/devices/kiosk-a/revoke").status_code == 200
    status, answer = _renew(fleet, a, "kiosk-a", rotate=False)
    assert (status, answer["detail"]) == (401, "revoked")
    admin.close()
