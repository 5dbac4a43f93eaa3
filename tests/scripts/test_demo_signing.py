"""``make demo`` signs at the fleet: its fleet config has a ``signing`` section whose PKCS#12
file and passphrase file ``sohoa-fleet signing demo-cert`` wrote (once: a second run keeps the
same key), and a document signed with it validates against the demo's signing CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import PdfPage, write_pdf
from device.inference import synthetic
from fleet.config import load as load_fleet_config
from fleet.delivery.config import HttpTarget
from fleet.signing.signer import Signer
from scripts import demo
from tests.fleet.signing.conftest import INFO, validate


def test_the_demo_fleet_signs_with_its_demo_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "VAR", tmp_path / "demo")
    monkeypatch.setattr(demo, "PKI", tmp_path / "demo" / "pki")
    paths = demo._write_configs(60.0)
    p12 = paths["signing"] / "organisation.p12"
    first = p12.read_bytes()
    assert p12.stat().st_mode & 0o077 == 0
    demo._write_configs(60.0)  # a second run keeps the key
    assert p12.read_bytes() == first

    config = load_fleet_config(demo.VAR / "fleet.yaml")
    assert config.signing.enabled and config.signing.level == "B-B"
    # ... and delivers what it signed to the reference receiver the demo starts.
    (target,) = config.delivery.targets
    assert isinstance(target, HttpTarget) and target.url == f"http://127.0.0.1:{demo.HANDOFF_PORT}"
    page = PdfPage(synthetic.text_page(seed=8, dpi=100), 200, "e" * 64)
    write_pdf([page], tmp_path / "d.pdf", INFO, PdfConfig(ocr="off"))
    with Signer(config.signing) as signer:
        signed = signer.sign((tmp_path / "d.pdf").read_bytes(), "99001")
    assert "DEMO" in signed.subject
    status = validate(signed.data, paths["signing"] / "demo-signing-ca.crt")
    assert status.intact and status.valid and status.trusted
