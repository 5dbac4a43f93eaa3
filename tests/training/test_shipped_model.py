"""The shipped document-type model and the sets reserved for the independent evaluation: its
training manifest (written by ``training.train`` beside the model) names every real page it was
trained or judged on, and none of them is reserved."""

from __future__ import annotations

import csv
from pathlib import Path

from device.inference.config import MODELS_DIR
from training import reserved
from training.train import MANIFEST


def test_shipped_model_was_not_trained_on_a_reserved_set() -> None:
    """The shipped model's manifest lists every real page it was trained or judged on: none is
    reserved by name or by sha256, and the reserved list holds the known Roboflow pages."""
    known = reserved.reserved_sha256()
    assert len(known) >= 50 and all(len(h) == 64 for h in known)
    manifest = MODELS_DIR / MANIFEST
    with manifest.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["role"] for r in rows} == {"train", "heldout"}
    for row in rows:
        assert not reserved.is_reserved_path(Path(row["file"])), row["file"]
        assert row["sha256"] not in known, row["file"]
    report = (MODELS_DIR / "doctype_training_report.md").read_text(encoding="utf-8")
    n_train = sum(r["role"] == "train" for r in rows)
    assert f"({n_train} real pages + " in report
