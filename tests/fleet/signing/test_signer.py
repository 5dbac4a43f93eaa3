"""Signing a dossier PDF at the fleet: with the key on a real PKCS#11 token (SoftHSM2) and in a
PKCS#12 file, checked by pyHanko's validator and by poppler's ``pdfsig``; one byte changed in
the signed range fails both; the page image and the text layer are the device's, byte for
byte; PDF/A markers survive signing (and a PDF built without PDF/A gets none); a key per unit;
and every misconfiguration is its own clear error."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pikepdf
import pytest

from device.dossier.pdf_writer import tesseract_available
from fleet.signing.config import SigningConfig
from fleet.signing.signer import (
    FleetName,
    KeyMissing,
    NoKeyForUnit,
    NotAPdf,
    SecretMissing,
    Signer,
    TokenMissing,
    WrongPin,
)
from tests.fleet.signing.conftest import (
    PASSPHRASE,
    SOFTHSM_MODULE,
    TOKEN,
    UNITS,
    Docs,
    Keys,
    pdfsig,
    pkcs11_config,
    pkcs12_config,
    validate,
)


def _images(data: bytes) -> list[bytes]:
    """Every page's image XObjects, their stored (compressed) bytes."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [bytes(image.read_raw_bytes()) for page in pdf.pages for image in page.get_images().values()]


def _text(data: bytes, work: Path) -> str:
    path = work / "text.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True, timeout=60).stdout


def _xmp(data: bytes) -> tuple[str, pikepdf.Pdf]:
    pdf = pikepdf.open(io.BytesIO(data))
    return bytes(pdf.Root.Metadata.read_bytes()).decode("utf-8"), pdf


def _tampered(signed: bytes, original: bytes) -> bytes:
    """One byte changed inside the page image's stream, well inside the signed byte range."""
    at = original.index(b"\xff\xd8\xff") + 200  # the JPEG's data, in the device's own revision
    assert at < len(original)
    changed = bytearray(signed)
    changed[at] ^= 0x01
    return bytes(changed)


def test_pkcs11_signature_verifies_and_leaves_the_pages_alone(softhsm: Path, keys: Keys, docs: Docs,
                                                              tmp_path: Path) -> None:
    with Signer(pkcs11_config(softhsm)) as signer:
        signed = signer.sign(docs.pdfa, "99001")
    assert signed.level == "B-B"
    assert "So Thong tin va Truyen thong" in signed.subject and "DEMO" in signed.subject
    assert signed.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert signed.data.startswith(docs.pdfa), "signing must append a revision, never rewrite the device's"

    status = validate(signed.data, keys.province.ca_cert)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage.name == "ENTIRE_FILE"
    report = pdfsig(signed.data, tmp_path)
    assert "Signature Validation: Signature is Valid." in report, report
    assert "ETSI.CAdES.detached" in report and "Total document signed" in report

    # The page image and the text layer are the device's, byte for byte.
    assert _images(signed.data) == _images(docs.pdfa) and _images(docs.pdfa)
    assert _text(signed.data, tmp_path) == _text(docs.pdfa, tmp_path)
    if tesseract_available("vie"):
        assert _text(docs.pdfa, tmp_path).strip(), "the device's PDF has a text layer"

    # PDF/A markers survive, the Info dictionary still agrees with the XMP, the version stays 1.7.
    xmp, pdf = _xmp(signed.data)
    with pdf:
        assert re.search(r'pdfaid:part(="|>)2', xmp) and re.search(r'pdfaid:conformance(="|>)B', xmp), xmp
        assert "pdfaExtension:schemas" in xmp and 'sohoa:dossierCode="000.00.00.H99-260110-0001"' in xmp
        assert pdf.Root.OutputIntents[0].S == pikepdf.Name.GTS_PDFA1
        producer = re.search(r'pdf:Producer="([^"]+)"', xmp)
        assert producer is not None and str(pdf.docinfo.Producer) == producer.group(1)
        assert "/Version" not in pdf.Root and pdf.pdf_version == "1.7"

    # One byte changed in the signed range: both validators refuse it.
    tampered = _tampered(signed.data, docs.pdfa)
    assert not validate(tampered, keys.province.ca_cert).intact
    report = pdfsig(tampered, tmp_path)
    assert "Signature is Valid." not in report and re.search(r"Digest Mismatch|Signature is Invalid", report), report


def test_pkcs12_signature_on_a_pdf_without_pdfa(keys: Keys, docs: Docs, tmp_path: Path) -> None:
    with Signer(pkcs12_config(keys, location="Bắc Giang")) as signer:
        signed = signer.sign(docs.plain, None)
    status = validate(signed.data, keys.province.ca_cert)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert "Signature Validation: Signature is Valid." in pdfsig(signed.data, tmp_path)
    assert _images(signed.data) == _images(docs.plain)
    xmp, pdf = _xmp(signed.data)
    with pdf:
        assert "pdfaid" not in xmp and "pdfaExtension" not in xmp and "/OutputIntents" not in pdf.Root
    tampered = _tampered(signed.data, docs.plain)
    assert not validate(tampered, keys.province.ca_cert).intact
    assert "Signature is Valid." not in pdfsig(tampered, tmp_path)


def test_a_key_per_unit(softhsm: Path, keys: Keys, docs: Docs) -> None:
    """Scope unit: each unit's documents carry that unit's certificate; a unit without a key is
    refused by name, never signed with another unit's key."""
    config = pkcs11_config(softhsm, key=None, scope="unit",
                           units={unit: {"key_label": f"unit-{unit}"} for unit in UNITS})
    with Signer(config) as signer:
        for unit in UNITS:
            signed = signer.sign(docs.plain, unit)
            assert f"Don vi {unit}" in signed.subject
            status = validate(signed.data, keys.units.ca_cert)
            assert status.intact and status.valid and status.trusted
        with pytest.raises(NoKeyForUnit, match="99003"):
            signer.sign(docs.plain, "99003")
        with pytest.raises(NoKeyForUnit):
            signer.sign(docs.plain, None)


def test_misconfigurations_are_clear_errors(softhsm: Path, keys: Keys, docs: Docs, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    wrong_pin = tmp_path / "wrong-pin"
    wrong_pin.write_text("000000\n")
    cases: list[tuple[SigningConfig, type[Exception], str]] = [
        (pkcs11_config(softhsm, source={"type": "pkcs11", "module": str(SOFTHSM_MODULE), "token_label": "nope",
                                        "pin_file": str(softhsm)}), TokenMissing, "no PKCS#11 token labelled 'nope'"),
        (pkcs11_config(softhsm, source={"type": "pkcs11", "module": str(tmp_path / "missing.so"), "token_label": TOKEN,
                                        "pin_file": str(softhsm)}), TokenMissing, "cannot load the PKCS#11 module"),
        (pkcs11_config(softhsm, source={"type": "pkcs11", "module": str(SOFTHSM_MODULE), "token_label": TOKEN,
                                        "pin_file": str(wrong_pin)}), WrongPin, "refused the PIN"),
        (pkcs11_config(softhsm, source={"type": "pkcs11", "module": str(SOFTHSM_MODULE), "token_label": TOKEN,
                                        "pin_env": "SOHOA_TEST_UNSET_PIN"}), SecretMissing, "SOHOA_TEST_UNSET_PIN"),
        (pkcs11_config(softhsm, key={"key_label": "nobody"}), KeyMissing, "'nobody'"),
        (pkcs12_config(keys, source={"type": "pkcs12", "file": str(keys.province.p12_files[None]),
                                     "passphrase_env": "SOHOA_TEST_P12"}), WrongPin, "wrong passphrase"),
        (pkcs12_config(keys, source={"type": "pkcs12", "file": str(tmp_path / "none.p12"),
                                     "passphrase_env": "SOHOA_TEST_P12"}), KeyMissing, "cannot read"),
    ]
    monkeypatch.delenv("SOHOA_TEST_UNSET_PIN", raising=False)
    monkeypatch.setenv("SOHOA_TEST_P12", PASSPHRASE + "x")
    for config, error, message in cases:
        with Signer(config) as signer, pytest.raises(error, match=re.escape(message)):
            signer.sign(docs.plain, None)

    with Signer(pkcs12_config(keys)) as signer:
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
        with pytest.raises(NotAPdf, match="not a PDF"):
            signer.sign(png, None)
        with pytest.raises(NotAPdf):
            signer.sign(b"%PDF-1.7\nthis is no PDF at all\n%%EOF\n", None)
        with pytest.raises(NotAPdf):
            signer.sign(docs.plain[: len(docs.plain) // 2], None)  # cut short in transit
        at = docs.plain.index(b"<x:xmpmeta") + 3  # a damaged byte in its XMP metadata
        with pytest.raises(NotAPdf, match="damaged"):
            signer.sign(docs.plain[:at] + b"\xff" + docs.plain[at + 1:], None)
        assert signer.sign(docs.plain, None).data.startswith(docs.plain)  # the signer is still fine after


def test_the_cli_writes_a_demo_certificate(tmp_path: Path, docs: Docs) -> None:
    """``sohoa-fleet signing demo-cert`` writes a PKCS#12 a config can sign with at once."""
    from fleet.cli import main

    assert main(["signing", "demo-cert", "--out", str(tmp_path / "keys"), "--unit", "99001"]) == 0
    p12 = tmp_path / "keys" / "unit-99001.p12"
    assert p12.stat().st_mode & 0o077 == 0 and (tmp_path / "keys" / "p12-passphrase").stat().st_mode & 0o077 == 0
    config = SigningConfig.model_validate({
        "enabled": True, "scope": "unit",
        "source": {"type": "pkcs12", "passphrase_file": str(tmp_path / "keys" / "p12-passphrase")},
        "units": {"99001": {"file": str(p12)}}})
    with Signer(config) as signer:
        signed = signer.sign(docs.plain, "99001")
    assert validate(signed.data, tmp_path / "keys" / "demo-signing-ca.crt").intact


def test_with_a_time_stamp_authority_the_signature_is_b_t(softhsm: Path, keys: Keys, docs: Docs,
                                                          tmp_path: Path) -> None:
    """``tsa_url`` set: the signature carries an RFC 3161 time stamp from the authority (PAdES
    B-T), which pyHanko validates against the TSA's CA; with the authority gone, the signer says
    so (TimestampFailed) instead of quietly signing at a lower level."""
    from fleet.signing.signer import TimestampFailed
    from tests.fleet.signing.tsa import LoopbackTsa

    with LoopbackTsa(tmp_path / "tsa") as tsa:
        with Signer(pkcs11_config(softhsm, tsa_url=tsa.url)) as signer:
            signed = signer.sign(docs.pdfa, None)
        assert tsa.requests >= 1
    assert signed.level == "B-T"
    status = validate(signed.data, keys.province.ca_cert, extra_roots=[tsa.ca_cert])
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None and status.timestamp_validity.intact
    assert status.timestamp_validity.valid and status.timestamp_validity.trusted
    assert "Signature Validation: Signature is Valid." in pdfsig(signed.data, tmp_path)

    gone = pkcs11_config(softhsm, tsa_url=tsa.url, tsa_timeout_s=2)  # the server is shut down now
    with Signer(gone) as signer, pytest.raises(TimestampFailed, match="time-stamp authority"):
        signer.sign(docs.pdfa, None)


def test_the_signed_revision_carries_the_fleets_name(keys: Keys, docs: Docs, tmp_path: Path) -> None:
    """A document the fleet renamed (its number taken by another device's, or a walk-in given its
    code): the signed copy's title (Info and XMP, which PDF/A wants to agree) and its dossier
    properties say the fleet's name, the device's revision underneath is untouched, and both
    validators accept the signature. Bad input tried: a PDF whose XMP is not XML is refused as a
    damaged PDF, not signed with its old names."""
    code = "000.00.00.H99-260111-0002"
    name = FleetName.of(code, "component", 3, "birth_certificate")
    with Signer(pkcs12_config(keys)) as signer:
        signed = signer.sign(docs.pdfa, "99001", name)
        assert signed.data.startswith(docs.pdfa)
        status = validate(signed.data, keys.province.ca_cert)
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
        assert "Signature Validation: Signature is Valid." in pdfsig(signed.data, tmp_path)
        xmp, pdf = _xmp(signed.data)
        with pdf:
            assert str(pdf.docinfo.Title) == f"{code}.3 birth_certificate"
            assert f'sohoa:dossierCode="{code}"' in xmp and 'sohoa:sequence="3"' in xmp, xmp
            assert "H99-260110-0001" not in xmp  # the device's code and number are gone from the metadata
            assert re.search(rf"<rdf:li[^>]*>{re.escape(code)}\.3 birth_certificate</rdf:li>", xmp), xmp
            assert re.search(r'pdfaid:part(="|>)2', xmp) and "pdfaExtension:schemas" in xmp
            producer = re.search(r'pdf:Producer="([^"]+)"', xmp)
            assert producer is not None and str(pdf.docinfo.Producer) == producer.group(1)

        broken = pikepdf.open(io.BytesIO(docs.pdfa))
        broken.Root.Metadata.write(b"<x:xmpmeta><not-closed>")
        out = io.BytesIO()
        broken.save(out, fix_metadata_version=False)
        with pytest.raises(NotAPdf, match="XMP"):
            signer.sign(out.getvalue(), "99001", name)
