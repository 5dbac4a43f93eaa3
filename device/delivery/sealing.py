"""Page files and PDFs waiting for delivery are encrypted on the card (AES-256-GCM, one random
nonce per file), with a data key that never lies on the card in the clear.

* The data key (32 random bytes) is made at a start with no sealed file waiting and kept in
  ``state_dir/outbox.key``,
  wrapped (AES-GCM) by a key-encryption key from a :class:`KeySource`: the board's one-time
  programmable key (:class:`BoardKey`, a Raspberry Pi 4/5 with its OTP private key programmed),
  or a file (:class:`FileKey`, by default beside the state: it then protects nothing against a
  stolen card, see the README). The wrapping names the device id, so a key file copied to
  another device does not open there.
* A sealed file is ``MAGIC | key id (8) | nonce (12) | ciphertext and tag``; the file's name (the
  plaintext's sha256) is authenticated with it, so a file renamed, swapped or damaged fails its
  tag and is never sent as another page. Files written before encryption existed (no magic) are
  read as they are and checked against their sha256.
* A missing key with sealed files waiting, a key that does not unwrap on this board, or a file
  sealed under another key is :class:`~device.errors.OutboxKeyError`; a damaged file is
  :class:`~device.errors.OutboxFileDamaged`. Neither deletes anything.

>>> sealer = Sealer(bytes(32), "00" * 8)
>>> sha = hashlib.sha256(b"page").hexdigest()
>>> sealed = sealer.seal(sha, b"page")
>>> sealed.startswith(MAGIC) and b"page" not in sealed
True
>>> sealer.open(sha, sealed)
b'page'
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from device.durable import atomic_write
from device.errors import OutboxFileDamaged, OutboxKeyError

if TYPE_CHECKING:
    from device.config import AgentConfig

log = logging.getLogger(__name__)

MAGIC = b"SOHOA\x00E1"
"""The first bytes of every sealed outbox file (format 1)."""
_KEY_FORMAT = "sohoa-outbox-key-v1"
KEY_FILE = "outbox.key"
_NONCE = 12
_KEY_ID = 8
OVERHEAD = len(MAGIC) + _KEY_ID + _NONCE + 16
"""How many bytes longer a sealed file is than its plaintext (header and tag)."""


class KeySource(Protocol):
    """Where the key that wraps the outbox's data key comes from."""

    name: Literal["board", "file"]

    def key_encryption_key(self) -> bytes:
        """32 bytes; raises :class:`OutboxKeyError` when they cannot be had."""
        ...


class BoardKey:
    """The Raspberry Pi's 256-bit OTP private key, read with ``rpi-otp-private-key`` (prints it as
    64 hex digits). It lives in the SoC, not on the card; a board whose key was never programmed
    (all zeros) is refused rather than used.

    >>> BoardKey(["rpi-otp-private-key"]).name
    'board'
    """

    name: Literal["board", "file"] = "board"

    def __init__(self, command: Sequence[str], timeout_s: float = 20.0) -> None:
        self.command = list(command)
        self.timeout_s = timeout_s

    def key_encryption_key(self) -> bytes:
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OutboxKeyError(f"cannot read the board's key with {self.command[0]}: {exc}") from None
        if done.returncode != 0:
            raise OutboxKeyError(f"cannot read the board's key: {self.command[0]} exited {done.returncode}")
        text = done.stdout.strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise OutboxKeyError(f"{self.command[0]} did not print a 256-bit key in hex")
        if key == bytes(32):
            raise OutboxKeyError("the board's OTP private key is not programmed (all zeros): program it first")
        return key


class FileKey:
    """A 32-byte key-encryption key in a file, made (0600) on first use when ``create`` is true.

    >>> FileKey(Path("/etc/sohoa/outbox.kek")).name
    'file'
    """

    name: Literal["board", "file"] = "file"

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.create = create

    def key_encryption_key(self) -> bytes:
        try:
            key = self.path.read_bytes()
        except FileNotFoundError:
            if not self.create:
                raise OutboxKeyError(f"the key-encryption key file {self.path} is missing") from None
            key = os.urandom(32)
            atomic_write(self.path, key)  # a temporary file of mode 0600 renamed into place
            return key
        except OSError as exc:
            raise OutboxKeyError(f"cannot read the key-encryption key file {self.path}: {exc.strerror}") from None
        if len(key) != 32:
            raise OutboxKeyError(f"the key-encryption key file {self.path} does not hold 32 bytes")
        return key


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def _sealed_files(files_dir: Path) -> int:
    """How many files under ``files_dir`` are sealed (their first bytes say so)."""
    count = 0
    if not files_dir.is_dir():
        return 0
    for entry in files_dir.iterdir():
        if entry.name.startswith(".tmp-") or not entry.is_file():
            continue
        with entry.open("rb") as fh:
            count += fh.read(len(MAGIC)) == MAGIC
    return count


class Sealer:
    """Seals and opens the outbox's files with one data key.

    >>> board = BoardKey(["rpi-otp-private-key"])
    >>> sealer = Sealer.for_outbox(Path("/var/lib/sohoa/state"), "kiosk-0001", board)  # doctest: +SKIP
    """

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != 32:
            raise ValueError("an outbox data key is 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id
        self._key_id = bytes.fromhex(key_id)

    def _aad(self, key_id: bytes, sha256: str) -> bytes:
        return MAGIC + key_id + sha256.encode("ascii")

    def seal(self, sha256: str, data: bytes) -> bytes:
        """The sealed form of ``data`` whose sha256 is ``sha256`` (its name in the outbox)."""
        nonce = os.urandom(_NONCE)
        return MAGIC + self._key_id + nonce + self._aead.encrypt(nonce, data, self._aad(self._key_id, sha256))

    def open(self, sha256: str, blob: bytes) -> bytes:
        """The plaintext of the outbox file named ``sha256``. Raises :class:`OutboxFileDamaged`
        or :class:`OutboxKeyError` (sealed under another key)."""
        if not is_sealed(blob):
            return open_plain(sha256, blob)
        head = len(MAGIC)
        key_id = blob[head:head + _KEY_ID]
        if key_id != self._key_id:
            raise OutboxKeyError(
                f"an outbox file was sealed under key {key_id.hex()}, this device holds key {self.key_id}"
            )
        nonce = blob[head + _KEY_ID:head + _KEY_ID + _NONCE]
        try:
            data = self._aead.decrypt(nonce, blob[head + _KEY_ID + _NONCE:], self._aad(key_id, sha256))
        except InvalidTag:
            raise OutboxFileDamaged("an outbox file fails its authentication tag (damaged or not its name)") from None
        return data

    @classmethod
    def for_outbox(cls, state_dir: Path, device_id: str, source: KeySource) -> Sealer:
        """The outbox's sealer: its data key unwrapped from ``state_dir/outbox.key`` while sealed
        files wait, else a new data key (each start with nothing waiting replaces it, so a key
        that leaks later opens nothing delivered before). Raises :class:`OutboxKeyError`."""
        path = state_dir / KEY_FILE
        for stale in state_dir.glob(f".{KEY_FILE}.*"):  # a key write a kill interrupted
            stale.unlink(missing_ok=True)
        waiting = _sealed_files(state_dir / "files")
        if not waiting:
            return cls._new(path, device_id, source)
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise OutboxKeyError(
                f"the outbox key {path} is missing and {waiting} encrypted file(s) wait for delivery: restore "
                f"the key file, or move {state_dir / 'files'} aside to start without them"
            ) from None
        except (OSError, ValueError) as exc:
            raise OutboxKeyError(f"the outbox key {path} is unreadable: {exc}") from None
        try:
            key_id = str(record["key_id"])
            aad = f"{_KEY_FORMAT}|{device_id}|{key_id}".encode()
            if record.get("format") != _KEY_FORMAT:
                raise ValueError("unknown format")
            wrapped = base64.b64decode(record["wrapped"])
            nonce = base64.b64decode(record["nonce"])
            made_with = str(record["source"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OutboxKeyError(f"the outbox key {path} is not a key file ({exc})") from None
        try:
            if made_with != source.name:
                raise InvalidTag
            key = AESGCM(source.key_encryption_key()).decrypt(nonce, wrapped, aad)
        except InvalidTag:
            raise OutboxKeyError(
                f"the outbox key {path} does not open with this device's {source.name} key (made with the "
                f"{made_with} key of another board or device, or that key changed): {waiting} encrypted file(s) "
                "cannot be read; put the card back in its board, or restore the key-encryption key"
            ) from None
        return cls(key, key_id)

    @classmethod
    def _new(cls, path: Path, device_id: str, source: KeySource) -> Sealer:
        kek = source.key_encryption_key()
        key, key_id, nonce = os.urandom(32), os.urandom(_KEY_ID).hex(), os.urandom(_NONCE)
        aad = f"{_KEY_FORMAT}|{device_id}|{key_id}".encode()
        record = {
            "format": _KEY_FORMAT,
            "key_id": key_id,
            "source": source.name,
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(AESGCM(kek).encrypt(nonce, key, aad)).decode(),
        }
        atomic_write(path, json.dumps(record).encode())
        log.info("outbox: a new data key (%s) protects files waiting for delivery", key_id)
        return cls(key, key_id)


def open_plain(sha256: str, blob: bytes) -> bytes:
    """An unsealed outbox file (written before encryption, or by an outbox without a sealer)."""
    if is_sealed(blob):
        raise OutboxKeyError("an outbox file is encrypted but this outbox has no key")
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise OutboxFileDamaged("an outbox file's bytes no longer match its sha256 (damaged)")
    return blob


def outbox_sealer(config: AgentConfig) -> Sealer:
    """The agent's sealer from its ``at_rest`` section. Raises :class:`OutboxKeyError`."""
    at_rest = config.at_rest
    source: KeySource
    if at_rest.key_source == "board":
        source = BoardKey(at_rest.board_command)
    else:
        source = FileKey(at_rest.key_file or config.state_dir / "outbox.kek")
    return Sealer.for_outbox(config.state_dir, config.device_id, source)
