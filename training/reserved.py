"""The sets reserved for the independent evaluation: no image of theirs may train, tune or judge a
model here. Every real page that enters training passes :func:`check_page` (its path and the
sha256 of its bytes), and the training manifest shipped beside the model lists what passed.

    >>> is_reserved_path(Path("dev/roboflow_receipt_invoice/1003-receipt.jpg"))
    True
    >>> is_reserved_path(Path("dev/softmatic_receipts/lidl_11042020_08_01977.jpg"))
    False

Two checks, because either alone can be fooled: a reserved image copied under another folder
name keeps its hash (``reserved_sha256.txt``: the reserved pages that exist on this team's
machines), and a reserved set nobody has hashed here still carries its name in its path.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

from device.errors import SohoaError

#: Lower-case fragments of folder or file names of the reserved sets and repositories.
RESERVED_NAMES: tuple[str, ...] = (
    "roboflow", "receipt_or_invoice", "receipt-or-invoice",
    "midv", "sroie", "funsd", "mc-ocr", "mc_ocr", "mcocr",
    "ocr_ressident_id", "ocr_local_vbhc", "rotation_mc-ocr", "vietnamese_ocr_documents",
    "vn-cccd-ocr", "ocr_khai_sinh", "ocr-pipeline", "test6", "ocr_output", "project_yolov8",
    "thamdinh", "idcardvnrecognition", "smart-table-extractor", "uit-hwdb", "vietnamese_ocr_pipeline",
    "ocr-identify-document",
)

_HASHES_FILE = Path(__file__).with_name("reserved_sha256.txt")


class ReservedSetError(SohoaError, ValueError):
    """A page of a set reserved for the independent evaluation was about to enter training."""


@functools.cache
def reserved_sha256() -> frozenset[str]:
    """The sha256 (hex) of every reserved image known here."""
    lines = _HASHES_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_reserved_path(path: Path) -> bool:
    """Whether a folder or file name on ``path`` names a reserved set."""
    return any(name in part.lower() for part in path.parts for name in RESERVED_NAMES)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_page(path: Path, *, hashes: Iterable[str] | None = None) -> str:
    """The page's sha256 if it may train; :class:`ReservedSetError` if its path or bytes are reserved.

    ``hashes`` replaces the shipped list (tests)."""
    if is_reserved_path(path):
        raise ReservedSetError(f"{path} is in a set reserved for the independent evaluation")
    digest = sha256_of(path)
    known = reserved_sha256() if hashes is None else frozenset(h.lower() for h in hashes)
    if digest in known:
        raise ReservedSetError(f"{path} is a reserved evaluation image (sha256 {digest[:12]}...)")
    return digest
