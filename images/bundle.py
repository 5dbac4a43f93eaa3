"""``python -m images.bundle``: make signing keys, build and check update bundles.

    python -m images.bundle keygen --out keys/
    python -m images.bundle build --kind app --version 0.2.0 --key keys/update_signing.key --out dist/
    python -m images.bundle build --kind model --version 1.1 --model device/models/doctype.tflite \\
        --key keys/update_signing.key --out dist/
    python -m images.bundle verify dist/sohoa-app-0.2.0.bundle --public-key keys/update_signing.pub

An app bundle holds the project's wheel (``pip wheel --no-deps``, or ``--wheel`` files), the
dependency lock (``pip freeze`` of the build environment, or ``--lock``) and optionally a model;
a model bundle holds only the classifier (``.tflite`` with its ``_labels.txt`` and
``_version.txt`` neighbours). The private key file is created 0600 and never overwritten;
the ``.pub`` file is what devices trust (the updater's ``public_keys``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from images.errors import BuildFailed, BundleError, SigningKeyError
from images.manifest import (
    FileEntry,
    FileRole,
    Manifest,
    file_entry,
    key_id,
    load_private_key,
    load_public_key,
    verify_bundle,
    write_bundle,
)

log = logging.getLogger(__name__)

PRIVATE_NAME = "update_signing.key"
PUBLIC_NAME = "update_signing.pub"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def generate_keys(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: the private key 0600 (refusing to overwrite), the public key 0644."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{private_path} exists: refusing to overwrite a signing key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path.write_bytes(public_pem)
    public_path.chmod(0o644)
    return private_path, public_path


def build_wheel(project: Path, out_dir: Path, python: str = sys.executable) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of the project; returns the wheel's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    cmd = [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out_dir), str(project)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(set(out_dir.glob("*.whl")) - before) or sorted(out_dir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise BuildFailed(f"pip wheel failed: {result.stderr.strip()[-400:]}")
    return wheels[-1]


def freeze(python: str = sys.executable) -> str:
    """The build environment's ``pip freeze`` (editable installs left out: the wheel replaces them)."""
    cmd = [python, "-m", "pip", "freeze", "--exclude-editable"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildFailed(f"pip freeze failed: {result.stderr.strip()[-400:]}")
    return result.stdout


def model_files(model: Path) -> list[tuple[Path, str, FileRole]]:
    """The model and its labels/version neighbours: (source, path in bundle, role)."""
    if not model.is_file():
        raise BuildFailed(f"{model}: no such model file")
    found: list[tuple[Path, str, FileRole]] = [(model, f"model/{model.name}", "model")]
    roles: tuple[tuple[str, FileRole], ...] = (("_labels.txt", "labels"), ("_version.txt", "model_version"))
    for suffix, role in roles:
        side = model.with_name(model.stem + suffix)
        if side.is_file():
            found.append((side, f"model/{side.name}", role))
    return found


def build_bundle(
    *,
    kind: str,
    version: str,
    key_path: Path,
    out_dir: Path,
    wheels: list[Path] | None = None,
    lock: Path | None = None,
    model: Path | None = None,
    min_previous_version: str | None = None,
    allows_downgrade: bool = False,
    version_floor: str | None = None,
    project: Path = PROJECT_ROOT,
    unsigned: bool = False,
) -> Path:
    """Build one bundle and return its path, ``<out_dir>/sohoa-<kind>-<version>.bundle``."""
    if kind not in ("app", "model"):
        raise BuildFailed(f"kind must be app or model, not {kind!r}")
    if kind == "model" and model is None:
        raise BuildFailed("a model bundle needs --model")
    if kind == "model" and (wheels or lock):
        raise BuildFailed("a model bundle holds no wheel or lock (release the app separately)")
    key = None if unsigned else load_private_key(key_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sohoa-bundle-") as tmp_name:
        tmp = Path(tmp_name)
        sources: list[tuple[FileEntry, Path]] = []
        if kind == "app":
            for wheel in wheels or [build_wheel(project, tmp / "wheels")]:
                sources.append((file_entry(wheel, f"wheels/{wheel.name}", "wheel"), wheel))
            if lock is None:
                lock = tmp / "requirements.lock"
                lock.write_text(freeze())
            sources.append((file_entry(lock, "requirements.lock", "lock"), lock))
        model_version = None
        if model is not None:
            for source, path, role in model_files(model):
                sources.append((file_entry(source, path, role), source))
                if role == "model_version":
                    model_version = source.read_text().strip()[:64] or None
        manifest = Manifest(
            kind=kind,
            version=model_version if kind == "model" and model_version and version == "auto" else version,
            min_previous_version=min_previous_version,
            model_version=model_version,
            allows_downgrade=allows_downgrade,
            version_floor=version_floor,
            key_id=key_id(key.public_key()) if key is not None else None,
            files=[entry for entry, _ in sources],
        )
        out = out_dir / f"sohoa-{kind}-{manifest.version}.bundle"
        write_bundle(out, manifest, sources, key)
    log.info("built %s (%s files)", out, len(manifest.files))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.bundle", description="Signed update bundles")
    sub = parser.add_subparsers(dest="command", required=True)
    p_key = sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    p_key.add_argument("--out", type=Path, required=True, help="directory for update_signing.key/.pub")
    p_build = sub.add_parser("build", help="build a signed bundle")
    p_build.add_argument("--kind", choices=["app", "model"], required=True)
    p_build.add_argument("--version", required=True, help="bundle version ('auto' for a model: its _version.txt)")
    p_build.add_argument("--key", type=Path, required=True, help="private key (from keygen)")
    p_build.add_argument("--out", type=Path, required=True, help="output directory")
    p_build.add_argument("--wheel", type=Path, action="append", help="wheel(s) to ship instead of building one")
    p_build.add_argument("--lock", type=Path, help="dependency lock instead of this environment's pip freeze")
    p_build.add_argument("--model", type=Path, help="classifier .tflite (labels/version files beside it)")
    p_build.add_argument("--min-previous-version", help="refuse devices running an older version")
    p_build.add_argument("--allows-downgrade", action="store_true",
                         help="signed consent to install over a newer version (when the offer asks for it)")
    p_build.add_argument("--version-floor", help="devices that ran this bundle refuse older app bundles for good")
    p_build.add_argument("--project", type=Path, default=PROJECT_ROOT, help="project to build the wheel from")
    p_verify = sub.add_parser("verify", help="check a bundle's signature and hashes")
    p_verify.add_argument("bundle", type=Path)
    p_verify.add_argument("--public-key", type=Path, action="append", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("DEBUG") == "1" else logging.INFO, format="%(message)s")
    try:
        if args.command == "keygen":
            private_path, public_path = generate_keys(args.out)
            sys.stdout.write(f"private key: {private_path} (0600, keep it off devices)\npublic key: {public_path}\n")
        elif args.command == "build":
            out = build_bundle(
                kind=args.kind,
                version=args.version,
                key_path=args.key,
                out_dir=args.out,
                wheels=args.wheel,
                lock=args.lock,
                model=args.model,
                min_previous_version=args.min_previous_version,
                allows_downgrade=args.allows_downgrade,
                version_floor=args.version_floor,
                project=args.project,
            )
            sys.stdout.write(f"{out}\n")
        else:
            manifest = verify_bundle(args.bundle, [load_public_key(p) for p in args.public_key])
            sys.stdout.write(f"ok: {manifest.kind} {manifest.version}, {len(manifest.files)} files\n")
    except BundleError as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
