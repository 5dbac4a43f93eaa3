"""Writing secrets and certificates to disk: atomically, private keys mode 0600 from the first byte.

A private key is never written with a wider mode and then narrowed (a reader could open it in
between): the temporary file is created 0600 with ``os.open``, filled, fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from provisioning.errors import KeyFileError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a same-directory temporary file created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it, and an old tmp may have had another mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    """PKCS#8 PEM, mode 0600, optionally encrypted with ``passphrase``."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_atomic(path, pem, 0o600)


def read_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Load a private key, refusing a file that group or others can read or write (as ssh does)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError("key_missing", f"no private key at {path}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError("key_permissions", f"{path} is accessible to group/others (mode "
                           f"{stat.S_IMODE(st.st_mode):o}); it must be 0600")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        # The message of ValueError from cryptography never contains key material.
        raise KeyFileError("key_unreadable", f"{path} is not a usable private key ({type(exc).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError("key_type", f"{path} holds a {type(key).__name__}; expected ECDSA or Ed25519")
    return key


def write_public(path: Path, data: bytes) -> None:
    """Certificates, CRLs and configuration: world-readable is fine (0644)."""
    write_atomic(path, data, 0o644)
