"""Bundle building and verification: the signature and every hash are checked; tampering of any
kind (flipped bytes, no signature, another key, extra or unsafe members) is refused."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from images.bundle import build_bundle, generate_keys, main
from images.errors import BuildFailed, BundleInvalid, HashMismatch, SignatureInvalid, SigningKeyError
from images.manifest import (
    MANIFEST_NAME,
    Manifest,
    load_public_key,
    sha256_file,
    verify_bundle,
    version_at_least,
    version_key,
)
from tests.images.helpers import app_bundle, flip_byte, make_wheel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keys(tmp_path / "keys")


def _model(tmp_path: Path) -> Path:
    model_dir = tmp_path / "model-src"
    model_dir.mkdir()
    (model_dir / "doctype.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 8)
    (model_dir / "doctype_labels.txt").write_text("cccd\nbirth_certificate\n")
    (model_dir / "doctype_version.txt").write_text("2.0-test\n")
    return model_dir / "doctype.tflite"


def test_keygen_private_key_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    """Bad input: running keygen twice into the same directory (would destroy the release key)."""
    private, public = generate_keys(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    load_public_key(public)
    before = private.read_bytes()
    with pytest.raises(SigningKeyError):
        generate_keys(tmp_path / "k")
    assert private.read_bytes() == before


def test_app_bundle_with_model_verifies_and_lists_every_hash(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle = app_bundle(tmp_path, keys[0], "0.2.0", min_previous_version="0.1.0", model=_model(tmp_path))
    manifest = verify_bundle(bundle, [load_public_key(keys[1])])
    assert manifest.kind == "app" and manifest.version == "0.2.0" and manifest.min_previous_version == "0.1.0"
    assert manifest.model_version == "2.0-test"
    assert sorted(f.role for f in manifest.files) == ["labels", "lock", "model", "model_version", "wheel"]
    with tarfile.open(bundle) as tar:
        for entry in manifest.files:
            stream = tar.extractfile(f"payload/{entry.path}")
            assert stream is not None
            assert hashlib.sha256(stream.read()).hexdigest() == entry.sha256


def test_model_bundle_is_released_alone(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: a model bundle with a wheel in it (app and model are released separately)."""
    out = build_bundle(kind="model", version="auto", key_path=keys[0], out_dir=tmp_path / "o", model=_model(tmp_path))
    manifest = verify_bundle(out, [load_public_key(keys[1])])
    assert manifest.kind == "model" and manifest.version == "2.0-test"
    assert {f.role for f in manifest.files} == {"model", "labels", "model_version"}
    with pytest.raises(BuildFailed):
        build_bundle(
            kind="model",
            version="1",
            key_path=keys[0],
            out_dir=tmp_path / "o",
            model=tmp_path / "model-src" / "doctype.tflite",
            wheels=[make_wheel(tmp_path / "w")],
        )


def test_flipped_byte_anywhere_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: one byte inverted in the manifest, in its signature, in the wheel, in the lock,
    and in a tar header. Every copy is refused; none verifies."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0")
    trusted = [load_public_key(keys[1])]
    data = bundle.read_bytes()
    manifest_at = data.index(b'"kind"')
    wheel_at = data.index(b"PK\x03\x04") + 40
    lock_at = data.index(b"pydantic\n")
    sig_at = data.index(b"manifest.sig") + 512 + 10  # inside the signature's data block
    header_at = 100  # mode field of the first header
    expected: list[tuple[int, type[BundleInvalid]]] = [
        (manifest_at, SignatureInvalid),
        (sig_at, SignatureInvalid),
        (wheel_at, HashMismatch),
        (lock_at, HashMismatch),
        (header_at, BundleInvalid),
        (len(data) // 2, BundleInvalid),
    ]
    for offset, error in expected:
        with pytest.raises(error):
            verify_bundle(flip_byte(bundle, offset), trusted)


def test_unsigned_and_wrong_key_are_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: a bundle without manifest.sig; a bundle signed by a key the device does not trust."""
    unsigned = app_bundle(tmp_path, keys[0], "0.2.0", unsigned=True)
    with pytest.raises(SignatureInvalid, match="unsigned"):
        verify_bundle(unsigned, [load_public_key(keys[1])])
    other = generate_keys(tmp_path / "other")
    foreign = app_bundle(tmp_path, other[0], "0.2.1")
    with pytest.raises(SignatureInvalid):
        verify_bundle(foreign, [load_public_key(keys[1])])
    assert verify_bundle(foreign, [load_public_key(keys[1]), load_public_key(other[1])]).version == "0.2.1"
    with pytest.raises(SignatureInvalid):
        verify_bundle(foreign, [])


def _append_member(bundle: Path, name: str, data: bytes, out: Path) -> Path:
    out.write_bytes(bundle.read_bytes())
    with tarfile.open(out, "a:") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out


def test_extra_and_unsafe_members_are_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: an unlisted file smuggled into payload/, a '../' path, a symlink member, and a
    manifest that lists a path with '..' (signed by the right key)."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0")
    trusted = [load_public_key(keys[1])]
    with pytest.raises(BundleInvalid, match="not in the manifest"):
        verify_bundle(_append_member(bundle, "payload/evil.py", b"x", tmp_path / "e1.bundle"), trusted)
    with pytest.raises(BundleInvalid):
        verify_bundle(_append_member(bundle, "../../etc/cron.d/x", b"x", tmp_path / "e2.bundle"), trusted)
    link = tmp_path / "e3.bundle"
    link.write_bytes(bundle.read_bytes())
    with tarfile.open(link, "a:") as tar:
        info = tarfile.TarInfo("payload/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleInvalid, match="not a regular file"):
        verify_bundle(link, trusted)
    with pytest.raises(ValueError):
        Manifest.model_validate(
            {"kind": "app", "version": "1", "files": [{"path": "../x", "role": "wheel", "size": 1, "sha256": "0" * 64}]}
        )


def test_not_a_tar_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: an HTML error page saved as the bundle."""
    page = tmp_path / "x.bundle"
    page.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(BundleInvalid):
        verify_bundle(page, [load_public_key(keys[1])])


def test_versions_order_numerically() -> None:
    assert version_key("0.10.0") > version_key("0.9.9")
    assert version_key("1.0-54d2359fb2") > version_key("1.0")
    assert version_at_least("0.2.0", "0.1.9") and not version_at_least("0.1.0", "0.1.9")
    assert version_at_least(None, None) and not version_at_least(None, "0.1")


def test_cli_builds_the_project_wheel_and_freezes_the_lock(tmp_path: Path) -> None:
    """The real build: ``pip wheel --no-deps`` of this project and ``pip freeze``; then verify
    by CLI, and verify a tampered copy (exit 1)."""
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    key, pub = tmp_path / "keys" / "update_signing.key", tmp_path / "keys" / "update_signing.pub"
    code = main(["build", "--kind", "app", "--version", "0.1.0", "--key", str(key), "--out", str(tmp_path / "dist"),
                 "--project", str(ROOT)])
    assert code == 0
    bundle = tmp_path / "dist" / "sohoa-app-0.1.0.bundle"
    manifest = verify_bundle(bundle, [load_public_key(pub)])
    wheels = manifest.by_role("wheel")
    assert len(wheels) == 1 and wheels[0].path.startswith("wheels/sohoa-") and wheels[0].path.endswith(".whl")
    with tarfile.open(bundle) as tar:
        stream = tar.extractfile("payload/requirements.lock")
        assert stream is not None
        lock = stream.read().decode()
        raw = tar.extractfile(MANIFEST_NAME)
        assert raw is not None and json.loads(raw.read())["kind"] == "app"
    assert "pydantic==" in lock
    assert not any(line.lower().startswith("sohoa") for line in lock.splitlines()), "the editable project leaked in"
    assert main(["verify", str(bundle), "--public-key", str(pub)]) == 0
    bad = flip_byte(bundle, bundle.stat().st_size // 2)
    assert main(["verify", str(bad), "--public-key", str(pub)]) == 1
    assert sha256_file(bundle) != sha256_file(bad)
