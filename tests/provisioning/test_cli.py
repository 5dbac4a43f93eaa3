"""``python -m provisioning init``: a working mutual-TLS broker from one command."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioning.ca import CertificateAuthority
from provisioning.cli import main
from provisioning.identity import DeviceIdentity
from tests.provisioning.conftest import connect
from tests.services import ConfiguredMosquitto, free_port


def test_init_sets_up_a_working_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input: running init twice must not replace the CA key; a device id given as an ingest
    identity is refused. A device certificate signed by the CA it made connects, its forged publish
    is denied, and nothing printed is a key."""
    root, tls, plain = tmp_path / "pki", free_port(), free_port()
    args = ["init", str(root), "--tls-port", str(tls), "--bind", "127.0.0.1", "--plain-port", str(plain)]
    if os.geteuid() == 0:
        args += ["--run-as", "root"]  # pytest's tmp dirs are 0700 root: the mosquitto user could not enter
    assert main(args) == 0
    ca_key = (root / "ca" / "ca.key").read_bytes()
    assert main(args) == 0
    assert (root / "ca" / "ca.key").read_bytes() == ca_key
    out = capsys.readouterr().out
    assert "PRIVATE" not in out and "mosquitto.conf" in out
    for key in (root / "ca" / "ca.key", root / "broker" / "broker.key", root / "ingest" / "fleet.ingest.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    ca = CertificateAuthority.load(root / "ca")
    kiosk = DeviceIdentity(tmp_path / "kiosk", "kiosk-0001")
    kiosk.store(ca.sign_device(kiosk.csr(), "kiosk-0001").pem, ca.certificate_pem)
    broker = ConfiguredMosquitto(root / "broker" / "mosquitto.conf", tls, root / "broker" / "mosquitto.log")
    with broker:
        ingest = connect(tls, "fleet.ingest", root / "ca" / "ca.crt", root / "ingest" / "fleet.ingest.crt",
                         root / "ingest" / "fleet.ingest.key")
        assert ingest.subscribe("$share/ingest/sohoa/v1/+/#") == [1]
        files = kiosk.tls_files()
        device = connect(tls, "kiosk-0001", files.ca_certs, files.certfile, files.keyfile)
        assert device.publish("sohoa/v1/kiosk-0001/event", b"hello") == 0
        ingest.wait_message("sohoa/v1/kiosk-0001/event", b"hello")
        assert device.publish("sohoa/v1/kiosk-0002/event", b"forged") == 135
        for c in (device, ingest):
            c.close()
        broker.wait_log("Denied PUBLISH from kiosk-0001")

    assert main(["init", str(tmp_path / "bad"), "--ingest", "kiosk-0001"]) == 1
    assert "service name" in capsys.readouterr().err
