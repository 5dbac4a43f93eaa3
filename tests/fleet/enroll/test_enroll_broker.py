"""The fleet on the real mutual-TLS mosquitto that ``python -m provisioning init`` configures:
the ingest connects with its fleet.ingest certificate, a device enrolled over HTTPS reaches it,
and a revocation through the API reaches the broker (CRL file rewritten, SIGHUP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet.config import IngestConfig
from fleet.enroll.config import EnrollmentConfig, PkiConfig
from fleet.models import Device, Event
from protocol.messages import Status, encode
from protocol.topics import Channel, topic
from provisioning.enrollment import EnrollAnswer
from provisioning.identity import DeviceIdentity, probe_tls
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
