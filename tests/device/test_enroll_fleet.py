"""The device's enrollment client against the real fleet (``fleet/enroll`` routes, the app from
its factory over real HTTPS, SQLite): the wire contract both sides code against holds."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from device.config import EnrollmentConfig, IdentityConfig
from device.enroll import Enroller, IdentityKeeper, IdentityStatus
from provisioning.identity import DeviceIdentity
from tests.fleet.enroll.conftest import UNIT, HttpsFleet
from tests.fleet.enroll.conftest import serve_fleet as serve_fleet
from tests.fleet.enroll.conftest import sqlite_url as sqlite_url

DEVICE = "kiosk-0001"


def test_enroll_renew_and_revocation_against_the_real_fleet(
    serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path
) -> None:
    """An admin issues a token (answered once, with the CA pin); the device trusts the fleet by
    that pin, enrolls, renews with a signed request, and after the admin revokes it a renewal
    is answered 401 'revoked': the device's status says so and it does not try again. Bad input
    first: the same token a second time for another device (403 used)."""
    fleet = serve_fleet(sqlite_url)
    admin = fleet.admin()
    try:
        r = admin.post("/api/v1/enrollment-tokens", json={"unit_code": UNIT, "ttl_hours": 1})
        assert r.status_code == 201, r.text
        issued = r.json()
        token_file = tmp_path / "token"
        token_file.write_text(issued["token"])
        config = EnrollmentConfig(fleet_url=fleet.url, token_file=token_file, ca_pin=issued["ca_pin"],
                                  retry_min_s=0.1, retry_max_s=0.5)
        ident = DeviceIdentity(tmp_path / "identity", DEVICE)
        status = IdentityStatus()
        keeper = IdentityKeeper(ident, IdentityConfig(dir=ident.directory), config, unit=UNIT, agent_version="t",
                                status=status, stop=threading.Event())
        assert keeper.ensure_enrolled() and status.state == "enrolled"
        assert ident.is_enrolled() and not token_file.exists()
        assert ident.addresses()["fleet_url"] == fleet.url

        token_file.write_text(issued["token"])
        other = Enroller(DeviceIdentity(tmp_path / "other", "kiosk-0002"), config, unit_code=UNIT)
        try:
            other.enroll(threading.Event())
        except PermissionError as exc:
            assert getattr(exc, "reason", None) == "used" and other.attempts == 1
        else:
            raise AssertionError("a spent token enrolled a second device")

        serial = ident.certificate().serial_number
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=340)
        assert keeper.check_renewal(now=later)
        assert ident.certificate().serial_number != serial and keeper.renewals == 1

        assert admin.post(f"/api/v1/devices/{DEVICE}/revoke").status_code == 200
        assert not keeper.check_renewal(now=later)
        assert status.as_dict() == {"state": "revoked", "reason": "revoked"}
        assert not keeper.check_renewal(now=later)  # not asked again
    finally:
        admin.close()
