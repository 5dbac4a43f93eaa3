"""Dataset building: the real held-out split never overlaps training; arrays have the model's shape."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.inference.doctype import DOCTYPES
from training import dataset, reserved
from training.generator import render


def _fake_dev_dir(root: Path) -> Path:
    """A stand-in for ../shared/data/dev made of generated pages (tests never read the real one)."""
    rows = ["path,label,note"]
    for folder, label, n in (("shop", "receipt", 5), ("inv", "invoice", 4), ("papers", "scientific_paper", 6),
                             ("misc", "handwriting", 3)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            name = f"{folder}_{i}.png"
            cv2.imwrite(str(root / folder / name), render("receipt" if label != "scientific_paper" else "other",
                                                          i, dpi=40))
            rows.append(f"{folder}/{name},{label},rotation_deg={90 if i == 0 else 0}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_real_split_is_disjoint_stratified_and_deterministic(tmp_path: Path) -> None:
    """Every fitting page lands in exactly one half, each folder in both halves; labels that fit
    no class (handwriting) are left out."""
    root = _fake_dev_dir(tmp_path / "dev")
    train, held = dataset.real_pages(root)
    names_t = {p.path.name for p in train}
    names_h = {p.path.name for p in held}
    assert not names_t & names_h
    assert len(names_t) + len(names_h) == 15
    for folder in ("shop", "inv", "papers"):
        assert any(n.startswith(folder) for n in names_t) and any(n.startswith(folder) for n in names_h)
    assert {p.doctype for p in held} == {"receipt", "other"}
    again_t, again_h = dataset.real_pages(root)
    assert [p.path for p in again_t] == [p.path for p in train] and [p.path for p in again_h] == [p.path for p in held]


def test_real_arrays_and_augmentation(tmp_path: Path) -> None:
    """Augmentation adds the asked number of degraded copies; an unreadable file is skipped."""
    root = _fake_dev_dir(tmp_path / "dev")
    train, _ = dataset.real_pages(root)
    (train[0].path).write_bytes(b"not an image")
    arr = dataset.real_arrays(train, 64, augment=2, seed0=1)
    assert arr.x.shape == ((len(train) - 1) * 3, 64, 64, 3)
    assert arr.x.dtype == np.uint8 and set(arr.y.tolist()) <= {DOCTYPES.index("receipt"), DOCTYPES.index("other")}


def test_synthetic_arrays_are_balanced_and_deterministic() -> None:
    """Two pages per class, twice: identical arrays, labels in class order."""
    a = dataset.synthetic("train", 2, 0, 48, dpi=30, workers=1)
    b = dataset.synthetic("train", 2, 0, 48, dpi=30, workers=1)
    assert a.x.shape == (2 * len(DOCTYPES), 48, 48, 3)
    assert np.array_equal(a.x, b.x)
    assert np.bincount(a.y).tolist() == [2] * len(DOCTYPES)


def test_reserved_sets_never_enter_training(tmp_path: Path) -> None:
    """A page under a reserved set's folder name, or one whose bytes are a reserved image under an
    innocent name, is left out of both halves; handed to real_arrays anyway, it stops the run."""
    root = _fake_dev_dir(tmp_path / "dev")
    (root / "roboflow_receipt_invoice").mkdir()
    cv2.imwrite(str(root / "roboflow_receipt_invoice" / "r.png"), render("receipt", 99, dpi=40))
    disguised = root / "shop" / "shop_0.png"
    hashes = frozenset({reserved.sha256_of(disguised)})
    with (root / "labels.csv").open("a", encoding="utf-8") as fh:
        fh.write("roboflow_receipt_invoice/r.png,receipt,\n")
    train, held = dataset.real_pages(root, hashes=hashes)
    used = {p.path for p in train + held}
    assert disguised not in used and root / "roboflow_receipt_invoice" / "r.png" not in used
    # inv_0.png is the same render as shop_0.png: the same bytes under a third name, refused too
    assert reserved.sha256_of(root / "inv" / "inv_0.png") in hashes
    assert len(used) == 13
    with pytest.raises(reserved.ReservedSetError):
        dataset.real_arrays([dataset.RealPage(disguised, "receipt", 0)], 32, hashes=hashes)
    with pytest.raises(reserved.ReservedSetError):
        dataset.real_arrays([dataset.RealPage(root / "roboflow_receipt_invoice" / "r.png", "receipt", 0)], 32)

