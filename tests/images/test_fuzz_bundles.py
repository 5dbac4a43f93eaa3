"""Bad input: update bundles built to trick the device. A real signed bundle is taken apart and
rebuilt with every tar member type and path trick (links, devices, fifos, ``..``, absolute paths,
duplicate names, a second manifest or signature), and its bytes are cut and flipped at random.
Each one is refused with a :class:`BundleError` before anything is written; nothing else is ever
raised, and nothing lands outside the extraction folder."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from images.bundle import build_bundle, generate_keys
from images.errors import BundleError
from images.manifest import MANIFEST_NAME, PAYLOAD_DIR, SIGNATURE_NAME, extract_payload, load_public_key, verify_bundle
from tests.fuzzing import fuzz_settings, tried

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Ed25519PublicKey]:
    """A real signed model bundle (small: no wheel to build) and the key that verifies it."""
    work = tmp_path_factory.mktemp("bundle")
    private, public = generate_keys(work / "keys")
    model = work / "doctype.tflite"
    model.write_bytes(b"TFL3" + bytes(range(256)) * 8)
    (work / "doctype_labels.txt").write_text("cccd\nother\n")
    path = build_bundle(kind="model", version="2.0", key_path=private, out_dir=work / "out", model=model)
    return path.read_bytes(), load_public_key(public)


def _members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        out = []
        for m in tar.getmembers():
            stream = tar.extractfile(m) if m.isfile() else None
            out.append((m, stream.read() if stream is not None else None))
        return out


def _rebuild(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for info, blob in members:
            if info.isfile() and blob is not None and info.size > len(blob):
                # A header that promises more than the archive holds: written raw, as tar will not.
                out.write(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape") + blob)
                return out.getvalue()
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)
    return out.getvalue()


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None


def _file(name: str, blob: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    return info, blob


def _declared(name: str, size: int) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, b""


Trick = Callable[[list[tuple[tarfile.TarInfo, bytes | None]]], list[tuple[tarfile.TarInfo, bytes | None]]]


def _replace_payload(make: Callable[[str], tuple[tarfile.TarInfo, bytes | None]]) -> Trick:
    """Put ``make(name)`` in place of the first payload file (the manifest still lists the name)."""
    def trick(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        i = next(i for i, (m, _) in enumerate(members) if m.name.startswith(PAYLOAD_DIR + "/"))
        return [*members[:i], make(members[i][0].name), *members[i + 1:]]
    return trick


def _append(*extra: tuple[tarfile.TarInfo, bytes | None]) -> Trick:
    return lambda members: [*members, *extra]


def _prepend(*extra: tuple[tarfile.TarInfo, bytes | None]) -> Trick:
    return lambda members: [*extra, *members]


TRICKS: dict[str, Trick] = {
    "payload as symlink to /etc/passwd": _replace_payload(lambda n: _special(n, tarfile.SYMTYPE, "/etc/passwd")),
    "payload as relative symlink out": _replace_payload(lambda n: _special(n, tarfile.SYMTYPE, "../../../x")),
    "payload as hardlink to manifest": _replace_payload(lambda n: _special(n, tarfile.LNKTYPE, MANIFEST_NAME)),
    "payload as hardlink to /etc/shadow": _replace_payload(lambda n: _special(n, tarfile.LNKTYPE, "/etc/shadow")),
    "payload as char device": _replace_payload(lambda n: _special(n, tarfile.CHRTYPE)),
    "payload as block device": _replace_payload(lambda n: _special(n, tarfile.BLKTYPE)),
    "payload as fifo": _replace_payload(lambda n: _special(n, tarfile.FIFOTYPE)),
    "payload as contiguous file": _replace_payload(lambda n: _special(n, tarfile.CONTTYPE)),
    "payload as directory": _replace_payload(lambda n: _special(n, tarfile.DIRTYPE)),
    "extra symlink": _append(_special("payload/evil", tarfile.SYMTYPE, "/")),
    "extra hardlink": _append(_special("payload/evil", tarfile.LNKTYPE, "/etc/passwd")),
    "extra fifo": _append(_special("payload/fifo", tarfile.FIFOTYPE)),
    "extra dotdot file": _append(_file("../evil.py", b"import os")),
    "extra deep dotdot file": _append(_file("payload/../../evil.py", b"import os")),
    "extra absolute file": _append(_file("/tmp/sohoa-evil.py", b"import os")),
    "extra absolute dir then file": _append(_special("/tmp/sohoa-evil", tarfile.DIRTYPE),
                                            _file("/tmp/sohoa-evil/x", b"x")),
    "extra dot path": _append(_file("./payload/model/doctype.tflite", b"other model")),
    "double slash path": _append(_file("payload//model/doctype.tflite", b"other model")),
    "backslash path": _append(_file("payload\\..\\evil", b"x")),
    "nul in name": _append(_file("payload/model/x\x00.py", b"x")),
    "duplicate payload, other content last": lambda ms: [*ms, _file(next(m.name for m, _ in ms if m.name.startswith(
        "payload/")), b"different content")],
    "duplicate payload, other content first": lambda ms: [_file(next(m.name for m, _ in ms if m.name.startswith(
        "payload/")), b"different content"), *ms],
    "second manifest": _append(_file(MANIFEST_NAME, b'{"format": 1}')),
    "second signature": _append(_file(SIGNATURE_NAME, b"\0" * 64)),
    "manifest as symlink": lambda ms: [_special(MANIFEST_NAME, tarfile.SYMTYPE, "/etc/passwd"),
                                       *[(m, b) for m, b in ms if m.name != MANIFEST_NAME]],
    "no signature": lambda ms: [(m, b) for m, b in ms if m.name != SIGNATURE_NAME],
    "no manifest": lambda ms: [(m, b) for m, b in ms if m.name != MANIFEST_NAME],
    "payload missing": lambda ms: [(m, b) for m, b in ms if not m.name.startswith("payload/model/doctype.tflite")],
    "payload grown": lambda ms: [(m, b) if not m.name.endswith(".tflite") else _file(m.name, (b or b"") + b"\0")
                                 for m, b in ms],
    "directory named .. ": _prepend(_special("..", tarfile.DIRTYPE)),
    "huge declared size": _append(_declared("payload/big", 2**40)),
}


def _refused(data: bytes, key: Ed25519PublicKey, tmp: Path) -> bool:
    """True when refused with a BundleError; False when accepted (then it must be the original)."""
    path = tmp / "x.bundle"
    path.write_bytes(data)
    try:
        manifest = verify_bundle(path, [key])
    except BundleError:
        return True
    dest = tmp / "extract"
    for _entry, written in extract_payload(path, manifest, dest):
        assert written.resolve().is_relative_to(dest.resolve())
    return False


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_every_member_type_and_path_trick_is_refused(signed: tuple[bytes, Ed25519PublicKey], tmp_path: Path,
                                                     trick: str) -> None:
    data, key = signed
    try:
        tricked = _rebuild(TRICKS[trick](_members(data)))
    except (ValueError, tarfile.TarError):
        pytest.skip("the tar module itself will not write this member")
    tried("bundles")
    assert _refused(tricked, key, tmp_path), f"{trick}: accepted"
    assert not Path("/tmp/sohoa-evil.py").exists() and not Path("/tmp/sohoa-evil").exists()
    assert not (tmp_path.parent / "evil.py").exists()


def test_the_untouched_bundle_is_accepted(signed: tuple[bytes, Ed25519PublicKey], tmp_path: Path) -> None:
    """The control: the same rebuild without a trick is a good bundle (so a refusal above is the trick's)."""
    data, key = signed
    assert not _refused(_rebuild(_members(data)), key, tmp_path)


@fuzz_settings(150)
@given(cut=st.integers(0, 10**7), flips=st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 255)),
                                                 min_size=1, max_size=6))
def test_cut_and_flipped_bundles_are_refused_cleanly(signed: tuple[bytes, Ed25519PublicKey], tmp_path: Path,
                                                     cut: int, flips: list[tuple[int, int]]) -> None:
    """Generated: the signed bundle cut short anywhere and with bytes flipped anywhere (headers,
    sizes, checksums, the manifest, the signature, the payload). Either it is refused with a
    BundleError, or the flip hit only padding and the payload extracts unchanged."""
    data, key = signed
    mutated = bytearray(data)
    for at, xor in flips:
        mutated[at % len(mutated)] ^= xor
    mutated = mutated[: len(mutated) - cut % (len(mutated) // 2)] if cut % 3 == 0 else mutated
    tried("bundles")
    _refused(bytes(mutated), key, tmp_path)
