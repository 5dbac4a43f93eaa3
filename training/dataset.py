"""The arrays the classifier is trained and judged on, all made by :func:`device.inference.doctype.prepare`.

- synthetic pages from :mod:`training.generator`: ``split="train"`` for training and validation
  (different seeds), ``split="heldout"`` (held-out fonts, layout variant and degradations) for
  the held-out generator set;
- real pages from ``../shared/data/dev`` where a class fits (receipts and invoices are
  ``receipt``; scientific papers and printed test pages are ``other``), split in two halves per
  source folder by a hash of the file name: one half (augmented) joins training, the other is
  the real held-out set and is never trained on;
- pages clerks and citizens re-typed on the devices, from the fleet's export
  (``GET /api/v1/corrections/export.zip``, unzipped: :func:`correction_pages`), split the same
  way by sha256: one half trains, the other joins the real held-out set.

No page of a set reserved for the independent evaluation (:mod:`training.reserved`) is read:
:func:`real_pages` and :func:`correction_pages` leave reserved rows out, and :func:`real_arrays`,
the one place a real page's pixels are read, refuses one by path or by the sha256 of its bytes.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from device.inference.doctype import DOCTYPES, prepare
from training import reserved
from training.generator import Split, degrade, render

_log = logging.getLogger(__name__)

#: How a real page's coarse label in labels.csv maps to a class; labels not listed are unused.
REAL_LABEL_MAP: dict[str, str] = {
    "receipt": "receipt",
    "invoice": "receipt",
    "scientific_paper": "other",
    "printed_page": "other",
}


@dataclass
class Arrays:
    """Model inputs ``x`` (N, S, S, 3) uint8 RGB, class indices ``y`` and where each came from."""

    x: np.ndarray
    y: np.ndarray
    source: list[str]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class RealPage:
    path: Path
    doctype: str
    rotation_cw: int
    label: str = ""  # the coarse label in labels.csv (receipt, invoice, ...)


def _reserved(path: Path, hashes: frozenset[str] | None) -> bool:
    try:
        reserved.check_page(path, hashes=hashes)
    except reserved.ReservedSetError:
        return True
    except OSError:
        return False  # unreadable: real_arrays skips it
    return False


def _synthetic_one(task: tuple[int, int, Split, int, int, float]) -> np.ndarray:
    cls, seed, split, size, dpi, strength = task
    page = render(DOCTYPES[cls], seed, split=split, dpi=dpi)
    if strength > 0:
        page = degrade(page, seed, split=split, strength=strength)
    return prepare(page, size)


def _pool_map(fn: object, tasks: list[object], workers: int) -> list[np.ndarray]:
    if workers <= 1:
        return [fn(t) for t in tasks]  # type: ignore[operator]
    with get_context("fork").Pool(workers) as pool:
        return list(pool.map(fn, tasks, chunksize=16))  # type: ignore[arg-type]


def synthetic(split: Split, per_class: int, seed0: int, size: int, *, dpi: int = 60,
              clean_frac: float = 0.1, workers: int = 2) -> Arrays:
    """``per_class`` generated pages of every class; seeds ``seed0 .. seed0+per_class-1``.

    A fraction ``clean_frac`` is left undegraded; the rest get a strength drawn per page.
    """
    tasks: list[object] = []
    ys: list[int] = []
    srcs: list[str] = []
    for cls in range(len(DOCTYPES)):
        for i in range(per_class):
            seed = seed0 + i
            u = (seed * 2654435761 + cls * 97) % 1000 / 1000  # deterministic per page
            strength = 0.0 if u < clean_frac else 0.35 + 0.65 * u
            tasks.append((cls, seed, split, size, dpi, strength))
            ys.append(cls)
            srcs.append(f"gen:{split}:{DOCTYPES[cls]}:{seed}")
    xs = _pool_map(_synthetic_one, tasks, workers)
    return Arrays(np.stack(xs), np.array(ys, np.int64), srcs)


def real_pages(root: Path, *, hashes: frozenset[str] | None = None) -> tuple[list[RealPage], list[RealPage]]:
    """(training half, held-out half) of the real pages whose label fits a class; pages of a
    reserved set (by path or sha256; ``hashes`` replaces the shipped list) are left out."""
    by_folder: dict[str, list[RealPage]] = {}
    refused = 0
    with (root / "labels.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            doctype = REAL_LABEL_MAP.get(row["label"].strip())
            if doctype is None:
                continue
            if _reserved(root / row["path"], hashes):
                refused += 1
                continue
            note = row.get("note") or ""
            rot = 0
            if note.startswith("rotation_deg=") and note.split("=", 1)[1].strip().isdigit():
                rot = int(note.split("=", 1)[1])
            path = root / row["path"]
            folder = f"{row['path'].split('/', 1)[0]}:{row['label']}"
            by_folder.setdefault(folder, []).append(RealPage(path, doctype, rot, row["label"].strip()))
    if refused:
        _log.info("%d real pages of reserved evaluation sets left out", refused)
    train: list[RealPage] = []
    held: list[RealPage] = []
    for pages in by_folder.values():
        pages.sort(key=lambda p: hashlib.sha1(p.path.name.encode()).hexdigest())  # noqa: S324 (not security)
        held.extend(pages[0::2])
        train.extend(pages[1::2])
    return train, held


def correction_pages(root: Path) -> tuple[list[RealPage], list[RealPage]]:
    """(training half, held-out half) of a fleet corrections export unzipped in ``root``: its
    ``labels.csv`` (sha256, file, doctype, previous, device, unit, corrected_at) names each page
    file and its corrected class. Rows naming a class this model does not have, or a file outside
    ``root``, are skipped."""
    pages: list[RealPage] = []
    base = root.resolve()
    with (root / "labels.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            doctype = (row.get("doctype") or "").strip()
            path = (root / (row.get("file") or "")).resolve()
            if doctype not in DOCTYPES or not path.is_relative_to(base) or not path.is_file():
                _log.warning("correction row skipped (class %r, file %s)", doctype, path.name)
                continue
            if _reserved(path, None):
                _log.warning("correction row skipped: a reserved evaluation image (%s)", path.name)
                continue
            pages.append(RealPage(path, doctype, 0, "correction"))
    pages.sort(key=lambda p: p.path.name)  # the file name is the page's sha256: a stable split
    return pages[1::2], pages[0::2]


def load_real(page: RealPage, max_side: int = 1000) -> np.ndarray | None:
    """The page upright (the pipeline turns pages upright before classifying), at most
    ``max_side`` px; None if unreadable."""
    img = cv2.imread(str(page.path), cv2.IMREAD_COLOR)
    if img is None:
        _log.warning("cannot read real page %s", page.path.name)
        return None
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    turns = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    if page.rotation_cw in turns:
        img = cv2.rotate(img, turns[page.rotation_cw])
    return np.asarray(img)


def real_arrays(pages: Iterable[RealPage], size: int, *, augment: int = 0, seed0: int = 0,
                hashes: frozenset[str] | None = None) -> Arrays:
    """Real pages as model inputs; with ``augment`` > 0, that many degraded copies of each too.

    Raises :class:`training.reserved.ReservedSetError` if a page belongs to a reserved evaluation
    set (``hashes`` replaces the shipped list of reserved sha256)."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    srcs: list[str] = []
    for n, page in enumerate(pages):
        try:
            reserved.check_page(page.path, hashes=hashes)
        except OSError:
            _log.warning("cannot read real page %s", page.path.name)
            continue
        img = load_real(page)
        if img is None:
            continue
        cls = DOCTYPES.index(page.doctype)
        xs.append(prepare(img, size))
        ys.append(cls)
        srcs.append(f"real:{page.path.parent.name}/{page.path.name}")
        for k in range(augment):
            seed = seed0 + n * 1000 + k
            xs.append(prepare(degrade(img, seed, split="train", strength=0.4 + 0.6 * (k + 1) / augment), size))
            ys.append(cls)
            srcs.append(f"real-aug:{page.path.name}:{k}")
    if not xs:
        return Arrays(np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64), [])
    return Arrays(np.stack(xs), np.array(ys, np.int64), srcs)


def concat(*parts: Arrays) -> Arrays:
    parts = tuple(p for p in parts if len(p))
    return Arrays(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                  [s for p in parts for s in p.source])


def default_real_root() -> Path:
    """``../shared/data/dev`` beside the repository, or ``$SOHOA_DEV_DATA``."""
    env = os.environ.get("SOHOA_DEV_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev"
