"""The fleet on the real mutual-TLS mosquitto that ``python -m provisioning init`` configures:
the ingest connects with its fleet.ingest certificate, a device enrolled over HTTPS reaches it,
and a revocation through the API reaches the broker (CRL file rewritten, SIGHUP)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from device.enroll import confirm, renew
from fleet.config import IngestConfig
from fleet.enroll.config import EnrollmentConfig, PkiConfig
from fleet.models import Device, Event
from protocol.messages import Status, encode
from protocol.topics import Channel, topic
from provisioning.ca import load_crl_serials
from provisioning.enrollment import EnrollAnswer
from provisioning.identity import DeviceIdentity, probe_tls
from provisioning.requestauth import EMPTY_SHA256
from tests.fleet.enroll.conftest import UNIT, HttpsFleet, broker_tls
from tests.fleet.messages import fault
from tests.provisioning.conftest import connect
from tests.services import ConfiguredMosquitto, free_port, provisioned_mosquitto


@pytest.fixture
def initialized_broker(tmp_path: Path) -> Iterator[tuple[Path, ConfiguredMosquitto, Path]]:
    """(pki dir, running broker, its pid file) from `python -m provisioning init`."""
    with provisioned_mosquitto(tmp_path) as running:
        yield running


def test_ingest_over_tls_unit_from_enrollment_and_revocation_at_the_broker(
        serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path,
        initialized_broker: tuple[Path, ConfiguredMosquitto, Path]) -> None:
    """Bad input: the device's status claims unit 99999 (it enrolled in 00001: the unit stays);
    after the admin revokes it, its TLS handshake with the broker is refused as 'revoked'."""
    pki, broker, pid_file = initialized_broker
    port = free_port()
    fleet = serve_fleet(
        sqlite_url, port=port, broker=broker_tls(pki, broker.port), ingest=IngestConfig(enabled=True),
        pki=PkiConfig(ca_dir=pki / "ca", crl_file=pki / "broker" / "crl.pem", broker_pid_file=pid_file),
        enrollment=EnrollmentConfig(public_url=f"https://127.0.0.1:{port}",
                                    broker_url=f"mqtts://127.0.0.1:{broker.port}"))
    ingest = fleet.state.services.ingest
    assert ingest is not None and ingest.wait_connected(10), "the ingest did not connect over TLS"
    assert "fleet.ingest" in broker.log_text()

    admin = fleet.admin()
    token = admin.post("/api/v1/enrollment-tokens", json={"unit_code": UNIT}).json()["token"]
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")
    answer = EnrollAnswer.model_validate(fleet.enroll(kiosk, token).json())
    assert answer.certificate_pem and answer.ca_pem and answer.broker_url == f"mqtts://127.0.0.1:{broker.port}"
    kiosk.store(answer.certificate_pem.encode(), answer.ca_pem.encode(), broker_url=answer.broker_url)

    files = kiosk.tls_files()
    device = connect(broker.port, "kiosk-0001", files.ca_certs, files.certfile, files.keyfile)
    try:
        claim = Status(device_id="kiosk-0001", state="online", agent_version="0.1.0", unit="99999")
        assert device.publish(topic("kiosk-0001", Channel.STATUS), encode(claim)) == 0
        event = fault("kiosk-0001")
        assert device.publish(topic("kiosk-0001", Channel.EVENT), encode(event)) == 0
    finally:
        device.close()

    def arrived() -> bool:
        with fleet.state.sessions() as session:
            return session.scalars(select(Event.id).where(Event.id == event.id)).first() is not None

    assert ingest.wait_for(arrived, 15), "the device's event did not reach the fleet"
    with fleet.state.sessions() as session:
        row = session.get(Device, "kiosk-0001")
        assert row is not None and row.unit_code == UNIT and row.status == "online"

    reloads = broker.log_text().count("Reloading config")
    r = admin.post("/api/v1/devices/kiosk-0001/revoke")
    assert r.status_code == 200 and r.json()["broker_reloaded"] is True
    broker.wait_log("Reloading config", reloads + 1)
    assert probe_tls("127.0.0.1", broker.port, kiosk.ssl_context(), server_hostname="localhost") == "revoked"
    shown = admin.get("/api/v1/devices/kiosk-0001").json()
    assert (shown["status"], shown["unit"]) == ("revoked", UNIT)
    admin.close()


def test_a_confirmed_renewal_revokes_the_old_certificate_at_the_broker_and_the_api(
        serve_fleet: Callable[..., HttpsFleet], sqlite_url: str, tmp_path: Path,
        initialized_broker: tuple[Path, ConfiguredMosquitto, Path]) -> None:
    """Bad input: a copy of the device's key and certificate taken before a renewal (an SD card
    imaged then). While the device has not used its new certificate, the copy still works (a
    renewal lost on its way back must not lock the device out); once the device confirms with a
    request signed by the new one, the CRL lists the old serial, the broker is reloaded and refuses
    the copy ('revoked'), and the API refuses it (401); the device itself goes on."""
    pki, broker, pid_file = initialized_broker
    port = free_port()
    fleet = serve_fleet(
        sqlite_url, port=port,
        pki=PkiConfig(ca_dir=pki / "ca", crl_file=pki / "broker" / "crl.pem", broker_pid_file=pid_file),
        enrollment=EnrollmentConfig(public_url=f"https://127.0.0.1:{port}",
                                    broker_url=f"mqtts://127.0.0.1:{broker.port}"))
    admin = fleet.admin()
    token = admin.post("/api/v1/enrollment-tokens", json={"unit_code": UNIT}).json()["token"]
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")
    answer = EnrollAnswer.model_validate(fleet.enroll(kiosk, token).json())
    assert answer.certificate_pem and answer.ca_pem
    kiosk.store(answer.certificate_pem.encode(), answer.ca_pem.encode(), broker_url=answer.broker_url,
                fleet_url=fleet.url)
    old_serial = kiosk.certificate().serial_number
    shutil.copytree(kiosk.directory, tmp_path / "stolen")
    stolen = DeviceIdentity(tmp_path / "stolen", "kiosk-0001")

    renew(kiosk, fleet.url)
    assert kiosk.certificate().serial_number != old_serial
    # Issued, not yet used by the device: the old certificate still opens both doors.
    assert probe_tls("127.0.0.1", broker.port, stolen.ssl_context(), server_hostname="localhost") == "ok"
    assert old_serial not in load_crl_serials((pki / "broker" / "crl.pem").read_bytes(), fleet.ca)
    early = _signed_get(fleet, stolen)
    assert early.status_code == 200 and early.json()["revoked_serials"] == [], early.text

    reloads = broker.log_text().count("Reloading config")
    assert confirm(kiosk, fleet.url) == [f"{old_serial:x}"]
    broker.wait_log("Reloading config", reloads + 1)
    assert old_serial in load_crl_serials((pki / "broker" / "crl.pem").read_bytes(), fleet.ca)
    assert probe_tls("127.0.0.1", broker.port, stolen.ssl_context(), server_hostname="localhost") == "revoked"
    refused = _signed_get(fleet, stolen)
    # No usable certificate matches the old key any more (the device's newest is another key's).
    assert (refused.status_code, refused.json()["detail"]) == (401, "bad_signature")

    files = kiosk.tls_files()
    device = connect(broker.port, "kiosk-0001", files.ca_certs, files.certfile, files.keyfile)
    device.close()
    assert confirm(kiosk, fleet.url) == []  # confirmed once; nothing more to revoke
    actions = [(a.action, a.detail) for a in fleet.audit() if a.action == "certificate.superseded"]
    assert len(actions) == 1 and f"serials={old_serial:x}" in (actions[0][1] or "")
    admin.close()


def _signed_get(fleet: HttpsFleet, ident: DeviceIdentity) -> httpx.Response:
    """A device-signed request the fleet answers only for a signer it accepts."""
    path = "/api/v1/devices/kiosk-0001/certificate/confirm"
    headers = ident.sign_request("POST", path, EMPTY_SHA256)
    with fleet.client(verify=ident.ssl_context()) as http:
        return http.post(path, headers=headers)
