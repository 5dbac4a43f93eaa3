"""Signing fixtures: demo organisation keys (their own demo CA) as PKCS#12 files, the same keys
imported into a real PKCS#11 token (SoftHSM2, its own config and token folder for the session,
imported with ``softhsm2-util`` and OpenSC's ``pkcs11-tool`` as a province would load its HSM),
and dossier PDFs built by the device's own builder (PDF/A on and off), made once a session."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import DossierInfo, PdfPage, write_pdf
from device.inference import synthetic
from fleet.signing.config import SigningConfig
from fleet.signing.demo import DemoKeys, make_demo_keys

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "sohoa-test"
PIN = "246810"
SO_PIN = "135799"
UNITS = ("99001", "99002")
PASSPHRASE = "demo passphrase"

@dataclass(frozen=True)
class Keys:
    province: DemoKeys
    units: DemoKeys


@dataclass(frozen=True)
class Docs:
    pdfa: bytes
    plain: bytes


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("signing-keys")
    return Keys(make_demo_keys(base / "province", passphrase=PASSPHRASE),
                make_demo_keys(base / "units", list(UNITS), passphrase=PASSPHRASE))


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{cmd[0]} failed: {done.stderr or done.stdout}"


def _import(p12: Path, label: str, key_id: str, work: Path) -> None:
    """A key and its certificate into the token, with the tools a province's admin uses."""
    key, cert, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), PASSPHRASE.encode())
    assert key is not None and cert is not None
    pem, der = work / f"{label}.key.pem", work / f"{label}.crt.der"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    der.write_bytes(cert.public_bytes(Encoding.DER))
    _run("softhsm2-util", "--import", str(pem), "--token", TOKEN, "--label", label, "--id", key_id, "--pin", PIN)
    _run("pkcs11-tool", "--module", str(SOFTHSM_MODULE), "--token-label", TOKEN, "--login", "--pin", PIN,
         "--write-object", str(der), "--type", "cert", "--label", label, "--id", key_id)
    pem.unlink()


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Path]:
    """A SoftHSM2 token ``sohoa-test`` holding the province key (``province``) and one key per unit
    (``unit-99001``, ``unit-99002``); its PIN in a 0600 file, whose path is yielded."""
    if not SOFTHSM_MODULE.exists() or shutil.which("softhsm2-util") is None or shutil.which("pkcs11-tool") is None:
        pytest.skip("SoftHSM2 and OpenSC are not installed (scripts/bootstrap.sh all installs them)")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        _run("softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN)
        _import(keys.province.p12_files[None], "province", "01", base)
        for n, unit in enumerate(UNITS, start=2):
            _import(keys.units.p12_files[unit], f"unit-{unit}", f"{n:02d}", base)
        pin_file = base / "pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o600)
        yield pin_file
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before


def pkcs11_config(pin_file: Path, **changes: object) -> SigningConfig:
    data: dict[str, object] = {
        "enabled": True,
        "source": {"type": "pkcs11", "module": str(SOFTHSM_MODULE), "token_label": TOKEN, "pin_file": str(pin_file)},
        "key": {"key_label": "province"},
    }
    data.update(changes)
    return SigningConfig.model_validate(data)


def pkcs12_config(keys: Keys, **changes: object) -> SigningConfig:
    data: dict[str, object] = {
        "enabled": True,
        "source": {"type": "pkcs12", "file": str(keys.province.p12_files[None]),
                   "passphrase_file": str(keys.province.passphrase_file)},
    }
    data.update(changes)
    return SigningConfig.model_validate(data)


INFO = DossierInfo(dossier_code="000.00.00.H99-260110-0001", sequence=1, document_type="birth_certificate",
                   unit="99001", device="kiosk-1", captured_at=dt.datetime(2026, 1, 10, 8, tzinfo=dt.UTC))


@pytest.fixture(scope="session")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    """Two one-page dossier PDFs from the device's builder, with a text layer when Tesseract has
    Vietnamese: one with PDF/A on, one with it off."""
    base = tmp_path_factory.mktemp("signing-docs")
    page = PdfPage(synthetic.text_page(seed=4, dpi=200, size_mm=(148.0, 105.0), font_pt=12, fill=0.3), 200, "d" * 64)
    write_pdf([page], base / "a.pdf", INFO, PdfConfig(ocr="auto", pdfa=True))
    write_pdf([page], base / "b.pdf", INFO, PdfConfig(ocr="off", pdfa=False))
    return Docs((base / "a.pdf").read_bytes(), (base / "b.pdf").read_bytes())


def validate(data: bytes, ca: Path, extra_roots: list[Path] | None = None) -> Any:
    """pyHanko's validator on the one signature of ``data``, trusting only the demo CA ``ca``
    (and ``extra_roots``: a time-stamp authority's CA)."""
    from asn1crypto import pem, x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    roots = [x509.Certificate.load(pem.unarmor(path.read_bytes())[2]) for path in [ca, *(extra_roots or [])]]
    context = ValidationContext(trust_roots=roots)
    (signature,) = PdfFileReader(io.BytesIO(data)).embedded_signatures
    return validate_pdf_signature(signature, context)


def pdfsig(data: bytes, work: Path) -> str:
    """What poppler's ``pdfsig`` says about the signatures of ``data``."""
    path = work / f"pdfsig-{hashlib.sha256(data).hexdigest()[:12]}.pdf"
    path.write_bytes(data)
    done = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr
