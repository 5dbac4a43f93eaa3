"""Documents signed per second at the fleet, with the key in a PKCS#12 file and on a PKCS#11 token
(SoftHSM2), side by side on the same PDFs.

The documents are the device's own (its PDF builder, PDF/A on, no text layer: the text layer's
OCR is the device's cost, not the signer's), each of ``--pages`` pages at 200 dpi. The same demo
organisation key (RSA 2048) is in a PKCS#12 file and imported into a fresh SoftHSM2 token (its
own config and token folder, as the tests do). Rounds alternate which backend goes first; each
signature is timed alone (``Signer.sign``: parse, sign, write the incremental update), B-B, no
time stamp. Medians per document, documents per second from them, and the ratio.

    python -m benchmarks.bench_signing [--docs 20] [--pages 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from benchmarks.harness import machine
from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import DossierInfo, PdfPage, write_pdf
from device.inference import synthetic
from fleet.signing.config import SigningConfig
from fleet.signing.demo import make_demo_keys
from fleet.signing.signer import Signer

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN, PIN, LABEL = "sohoa-bench", "246810", "province"


def _documents(folder: Path, count: int, pages: int) -> list[bytes]:
    out = []
    for n in range(count):
        info = DossierInfo(f"000.00.00.H99-260110-{n:04d}", 1, "other", "99001", "kiosk-bench",
                           dt.datetime(2026, 1, 10, 8, tzinfo=dt.UTC))
        sheets = [PdfPage(synthetic.text_page(seed=100 + n * pages + p, dpi=200), 200, f"{n:02d}{p:02d}" * 16)
                  for p in range(pages)]
        path = folder / f"{n}.pdf"
        write_pdf(sheets, path, info, PdfConfig(ocr="off", pdfa=True))
        out.append(path.read_bytes())
    return out


def _softhsm(folder: Path, p12: Path, passphrase: str) -> Path:
    """A token holding the PKCS#12's key and certificate; returns the PIN file."""
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    key, cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), passphrase.encode())
    assert key is not None and cert is not None
    (folder / "key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (folder / "cert.der").write_bytes(cert.public_bytes(Encoding.DER))
    for cmd in (["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", PIN],
                ["softhsm2-util", "--import", str(folder / "key.pem"), "--token", TOKEN, "--label", LABEL,
                 "--id", "01", "--pin", PIN],
                ["pkcs11-tool", "--module", str(MODULE), "--token-label", TOKEN, "--login", "--pin", PIN,
                 "--write-object", str(folder / "cert.der"), "--type", "cert", "--label", LABEL, "--id", "01"]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    (folder / "key.pem").unlink()
    pin = folder / "pin"
    pin.write_text(PIN + "\n")
    return pin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20, help="documents signed per round and backend")
    parser.add_argument("--pages", type=int, default=2, help="pages per document")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each signs every document with both)")
    args = parser.parse_args(argv)
    if not MODULE.exists() or shutil.which("softhsm2-util") is None or shutil.which("pkcs11-tool") is None:
        print("SoftHSM2 or OpenSC is not installed (scripts/bootstrap.sh all): skipped")
        return 0
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-signing-") as tmp:
        work = Path(tmp)
        (work / "docs").mkdir()
        docs = _documents(work / "docs", args.docs, args.pages)
        keys = make_demo_keys(work / "keys", passphrase="bench passphrase")  # noqa: S106 - a throwaway demo key
        pin = _softhsm(work / "hsm", keys.p12_files[None], "bench passphrase")
        configs = {
            "PKCS#12": SigningConfig.model_validate({"enabled": True, "source": {
                "type": "pkcs12", "file": str(keys.p12_files[None]), "passphrase_file": str(keys.passphrase_file)}}),
            "PKCS#11 (SoftHSM2)": SigningConfig.model_validate({"enabled": True, "source": {
                "type": "pkcs11", "module": str(MODULE), "token_label": TOKEN, "pin_file": str(pin)},
                "key": {"key_label": LABEL}}),
        }
        signers = {name: Signer(config) for name, config in configs.items()}
        for signer in signers.values():  # warm-up: imports, the token's login, the key's handle
            signer.sign(docs[0], None)
        samples: dict[str, list[float]] = {name: [] for name in signers}
        began = time.perf_counter()
        for round_ in range(args.rounds):
            order = list(signers) if round_ % 2 == 0 else list(reversed(signers))
            for name in order:
                for data in docs:
                    start = time.perf_counter()
                    signers[name].sign(data, None)
                    samples[name].append((time.perf_counter() - start) * 1000)
        elapsed = time.perf_counter() - began
        for signer in signers.values():
            signer.close()
    load_after = os.getloadavg()
    size_kb = statistics.median(len(d) for d in docs) / 1024
    print(f"Machine: {machine()}")
    print(f"Load average (1, 5, 15 min) before: {load_before[0]:.1f}, {load_before[1]:.1f}, {load_before[2]:.1f}; "
          f"after: {load_after[0]:.1f}, {load_after[1]:.1f}, {load_after[2]:.1f}")
    print(f"{args.docs} documents of {args.pages} page(s) (median {size_kb:.0f} KiB), {args.rounds} rounds, "
          f"{elapsed:.0f} s in all, RSA 2048, PAdES B-B\n")
    print("| key source | median per document | p90 | documents/s (from the median) |")
    print("|---|---|---|---|")
    rates = {}
    for name, values in samples.items():
        median = statistics.median(values)
        p90 = sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]
        rates[name] = 1000 / median
        print(f"| {name} | {median:.1f} ms | {p90:.1f} ms | {rates[name]:.1f} |")
    names = list(rates)
    print(f"\nRatio {names[1]} / {names[0]}: {rates[names[1]] / rates[names[0]]:.2f} (documents per second)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
