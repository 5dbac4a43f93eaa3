"""The signed update bundle: its manifest, signing and verification.

A bundle is an uncompressed tar (wheels and TFLite models are already compressed) holding:

- ``manifest.json``: a :class:`Manifest` (kind, version, minimum previous version, and the size
  and sha256 of every payload file);
- ``manifest.sig``: the raw 64-byte Ed25519 signature of the exact bytes of ``manifest.json``;
- ``payload/...``: the files the manifest lists, nothing else.

:func:`verify_bundle` checks the signature first, then every member against the manifest, and
reads nothing into place: the device's updater installs only after it returned.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> m = Manifest(kind="model", version="1.1", files=[])
>>> verify_signature(m.canonical(), sign(m.canonical(), key), [key.public_key()]) is None
True
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Literal, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from images.errors import BundleInvalid, HashMismatch, SignatureInvalid, SigningKeyError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PAYLOAD_DIR = "payload"
MAX_MANIFEST_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")

FileRole = Literal["wheel", "lock", "model", "labels", "model_version"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    """One payload file of the bundle."""

    path: str = Field(description="Path inside payload/, '/'-separated, e.g. 'wheels/sohoa-0.2.0-py3-none-any.whl'")
    role: FileRole = Field(description="What the file is: wheel, lock (pip freeze), model, labels, model_version")
    size: int = Field(ge=0, description="Size in bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of the file")

    @field_validator("path")
    @classmethod
    def _safe(cls, value: str) -> str:
        check_member_path(value)
        return value


class Manifest(_Model):
    """What a bundle holds and what it may be installed over. Signed as a whole."""

    format: Literal[1] = Field(default=1, description="Version of this bundle format")
    kind: Literal["app", "model"] = Field(
        description="app: the agent's wheels and lock (and optionally a model); model: a classifier model only"
    )
    version: str = Field(
        pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$", description="Version of the app (or of the model, kind=model)"
    )
    min_previous_version: str | None = Field(
        default=None,
        max_length=64,
        description="The device must run at least this version (app, or model for kind=model) to install it",
    )
    model_version: str | None = Field(
        default=None, max_length=64, description="Version of the model, when one is included"
    )
    allows_downgrade: bool = Field(
        default=False,
        description="Signed consent to install this bundle over a newer version: a device steps back only when the "
                    "offer asks (allow_downgrade) and the bundle says so",
    )
    version_floor: str | None = Field(
        default=None, max_length=64,
        description="Once this bundle runs, the device refuses any app bundle older than this, signed downgrade or "
                    "not (a security fix that must not be undone)",
    )
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC), description="When it was built")
    key_id: str | None = Field(default=None, max_length=64, description="Fingerprint of the signing key (key_id())")
    files: list[FileEntry] = Field(description="Every payload file; the bundle holds nothing else")

    @field_validator("files")
    @classmethod
    def _unique(cls, value: list[FileEntry]) -> list[FileEntry]:
        paths = [f.path for f in value]
        if len(set(paths)) != len(paths):
            raise ValueError("a file is listed twice")
        return value

    @model_validator(mode="after")
    def _floor_not_above_version(self) -> Self:
        if self.version_floor is not None and not version_at_least(self.version, self.version_floor):
            raise ValueError("version_floor is above the bundle's own version")
        return self

    def canonical(self) -> bytes:
        """The exact bytes that are signed and stored as manifest.json. Fields added since the
        first devices shipped are left out when unset, so those devices still take such bundles."""
        unset = {name for name in ("allows_downgrade", "version_floor") if not getattr(self, name)}
        return self.model_dump_json(indent=2, exclude=unset).encode()

    def by_role(self, role: FileRole) -> list[FileEntry]:
        return [f for f in self.files if f.role == role]


def check_member_path(path: str) -> None:
    """Refuse absolute paths, '..', empty parts and odd characters (a tar may name anything)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or len(path) > 512:
        raise BundleInvalid(f"unsafe path {path[:64]!r}")
    for part in pure.parts:
        if part in (".", "..") or not _SAFE_PART.match(part):
            raise BundleInvalid(f"unsafe path {path[:64]!r}")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions such as '0.10.2' > '0.9' and '1.0-54d2359fb2' > '1.0': numbers compare as
    numbers, words as text, a number above a word."""
    parts = [p for p in re.split(r"[.\-+_]", version) if p]
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


def version_at_least(version: str | None, minimum: str | None) -> bool:
    """True when there is no minimum, or ``version`` is known and not below it."""
    if minimum is None:
        return True
    if version is None:
        return False
    return version_key(version) >= version_key(minimum)


# --- keys and signatures -------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex of the sha256 of its raw bytes)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: cannot read the signing key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: cannot read the public key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key")
    return key


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(data)


def verify_signature(data: bytes, signature: bytes, trusted: Sequence[Ed25519PublicKey]) -> None:
    """Raise :class:`SignatureInvalid` unless one trusted key signed ``data``."""
    if not trusted:
        raise SignatureInvalid("no trusted public key is configured")
    if len(signature) != 64:
        raise SignatureInvalid("the signature is not 64 bytes")
    for public in trusted:
        try:
            public.verify(signature, data)
        except InvalidSignature:
            continue
        return
    raise SignatureInvalid("the manifest's signature does not verify with any trusted key")


# --- reading a bundle ------------------------------------------------------------------------


def sha256_stream(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return sha256_stream(f)[0]


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if not member.isfile() or member.size > limit:
        raise BundleInvalid(f"{member.name} is not a small regular file")
    stream = tar.extractfile(member)
    if stream is None:
        raise BundleInvalid(f"{member.name} cannot be read")
    return stream.read(limit + 1)


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():  # only what write_bundle writes: regular files, each once
        if member.name in members:
            raise BundleInvalid(f"{member.name[:64]!r} appears twice")
        if not member.isfile():
            raise BundleInvalid(f"{member.name[:64]!r} is not a regular file (links, folders and devices are refused)")
        members[member.name] = member
    return members


def verify_bundle(path: Path, trusted: Sequence[Ed25519PublicKey]) -> Manifest:
    """Check a bundle completely and return its manifest; raise a :class:`BundleInvalid`.

    Order: the signature over manifest.json, then the manifest's shape, then every payload
    file's size and sha256, and that nothing else is in the archive.
    """
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise BundleInvalid(f"not a bundle archive ({type(exc).__name__})") from None
    with tar:
        try:
            members = _members(tar)
            if SIGNATURE_NAME not in members:
                raise SignatureInvalid("the bundle is unsigned (no manifest.sig)")
            if MANIFEST_NAME not in members:
                raise BundleInvalid("the bundle has no manifest.json")
            manifest_bytes = _read_small(tar, members[MANIFEST_NAME], MAX_MANIFEST_BYTES)
            signature = _read_small(tar, members[SIGNATURE_NAME], 1024)
            verify_signature(manifest_bytes, signature, trusted)
            try:
                manifest = Manifest.model_validate_json(manifest_bytes)
            except ValidationError as exc:
                fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
                raise BundleInvalid(f"signed manifest does not validate: {fields}") from None
            expected = {f"{PAYLOAD_DIR}/{f.path}": f for f in manifest.files}
            extra = set(members) - set(expected) - {MANIFEST_NAME, SIGNATURE_NAME}
            if extra:
                raise BundleInvalid(f"{len(extra)} member(s) not in the manifest, e.g. {sorted(extra)[0][:64]!r}")
            for name, entry in expected.items():
                member = members.get(name)
                if member is None:
                    raise BundleInvalid(f"{entry.path} is listed but missing")
                stream = tar.extractfile(member)
                if stream is None:
                    raise BundleInvalid(f"{entry.path} cannot be read")
                digest, size = sha256_stream(stream)
                if size != entry.size or digest != entry.sha256:
                    raise HashMismatch(f"{entry.path}: sha256 or size differs from the signed manifest")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleInvalid(f"the archive is damaged ({type(exc).__name__})") from None
    return manifest


def extract_payload(path: Path, manifest: Manifest, dest: Path) -> Iterator[tuple[FileEntry, Path]]:
    """Write the manifest's files under ``dest`` (re-hashing while writing) and yield each one.

    Call only with a manifest :func:`verify_bundle` returned for the same file. Each file is
    fsynced; a hash that differs now (the file changed since) raises :class:`HashMismatch`.
    """
    with tarfile.open(path, mode="r:") as tar:
        members = _members(tar)
        for entry in manifest.files:
            member = members.get(f"{PAYLOAD_DIR}/{entry.path}")
            stream = tar.extractfile(member) if member is not None else None
            if stream is None:
                raise BundleInvalid(f"{entry.path} is missing")
            target = dest.joinpath(*PurePosixPath(entry.path).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with target.open("wb") as out:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != entry.sha256:
                raise HashMismatch(f"{entry.path} changed after verification")
            yield entry, target


# --- writing a bundle ------------------------------------------------------------------------


def file_entry(source: Path, path: str, role: FileRole) -> FileEntry:
    with source.open("rb") as f:
        digest, size = sha256_stream(f)
    return FileEntry(path=path, role=role, size=size, sha256=digest)


def write_bundle(
    out: Path, manifest: Manifest, sources: Iterable[tuple[FileEntry, Path]], key: Ed25519PrivateKey | None
) -> None:
    """Write the tar: manifest.json, manifest.sig (unless ``key`` is None: an unsigned bundle,
    which devices refuse; tests make them), then the payload files in manifest order."""
    data = manifest.canonical()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w:", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, blob: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            info.mode = stat.S_IFREG | 0o644
            info.mtime = int(manifest.created_at.timestamp())
            tar.addfile(info, io.BytesIO(blob))

        add_bytes(MANIFEST_NAME, data)
        if key is not None:
            add_bytes(SIGNATURE_NAME, sign(data, key))
        for entry, source in sources:
            info = tar.gettarinfo(str(source), arcname=f"{PAYLOAD_DIR}/{entry.path}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with source.open("rb") as f:
                tar.addfile(info, f)
    tmp.replace(out)
