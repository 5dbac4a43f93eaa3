"""The real Vietnamese evaluation set's manifest and harness (benchmarks/eval_vnset.py): the manifest
names sources, never people; the harness measures only files whose bytes match it and skips cleanly
without the set."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import eval_vnset
from device.inference.doctype import DOCTYPES

#: The repositories the document-type issue reserves for the independent evaluation.
RESERVED_REPOS = {
    "MyCrabs/OCR_Ressident_ID", "QuangDuyxyz/OCR_LOCAL_VBHC", "tqphu27/Rotation_MC-OCR",
    "KaiKenju/Vietnamese_OCR_documents", "manhph2211/MC-OCR", "zzhunght/VN-cccd-OCR",
    "NguyenHuy31072002/ocr_khai_sinh", "hoang-himself/OCR-Pipeline", "Phuongnam1610/test6",
    "tiendv/MCOCR2021", "Hu2Hoang/OCR_output", "thanhluu0312/Project_Yolov8", "tuananhne1110/thamdinh",
    "phamvanhanh6720/IDCardVNRecognition", "kunengineer/smart-table-extractor",
    "hieunghia-pat/UIT-HWDB-dataset", "XuanTung4501/Vietnamese_OCR_Pipeline", "duchuyvp/ocr-identify-document",
}
RESERVED_WORDS = ("midv", "sroie", "funsd", "mc-ocr", "mcocr", "receipt or invoice", "receipt_or_invoice")


def test_manifest_names_public_sources_and_no_reserved_set() -> None:
    with eval_vnset.MANIFEST.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, "the manifest lists no image"
    assert set(rows[0]) == {"file", "label", "capture", "upright", "note", "repo", "path", "commit", "licence",
                            "sha256"}
    for r in rows:
        assert r["label"] in DOCTYPES, r["file"]
        assert re.fullmatch(r"[0-9a-f]{64}", r["sha256"]), r["file"]
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r["file"]
        assert re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", r["repo"]), r["file"]
        assert r["licence"].strip(), r["file"]
        assert r["repo"] not in RESERVED_REPOS, r["file"]
        assert not any(w in (r["repo"] + r["path"]).lower() for w in RESERVED_WORDS), r["file"]
        assert r["upright"] in ("yes", "no", ""), r["file"]
    assert len({r["sha256"] for r in rows}) == len(rows), "an image is listed twice"
    assert len(eval_vnset.read_manifest()) == len(rows)


def test_without_the_set_the_harness_measures_nothing_and_succeeds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOHOA_VN_DATA", raising=False)
    assert eval_vnset.main([]) == 0
    assert "nothing measured" in capsys.readouterr().out
    assert eval_vnset.main(["--data", str(tmp_path)]) == 0
    assert "none of the manifest's files" in capsys.readouterr().out


def test_only_files_with_the_manifests_bytes_are_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = np.full((300, 480, 3), 235, np.uint8)
    cv2.putText(page, "HOA DON", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3)
    ok, png = cv2.imencode(".png", page)
    assert ok
    (tmp_path / "good.png").write_bytes(png.tobytes())
    (tmp_path / "changed.png").write_bytes(png.tobytes() + b"\0")
    good = hashlib.sha256(png.tobytes()).hexdigest()
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "capture", "upright", "note", "repo", "path", "commit", "licence", "sha256"])
        for name in ("good.png", "changed.png", "absent.png"):
            w.writerow([name, "receipt", "render", "yes", "", "a/b", name, "0" * 40, "none stated", good])
    entries, skipped = eval_vnset.present(eval_vnset.read_manifest(manifest), tmp_path)
    assert [e.file for e in entries] == ["good.png"]
    assert skipped == {"missing": 1, "sha256 differs": 1}
    assert eval_vnset.main(["--data", str(tmp_path), "--manifest", str(manifest), "--no-text"]) == 0
    out = capsys.readouterr().out
    assert "| receipt | 1 |" in out
    assert "skipped: {'sha256 differs': 1, 'missing': 1}" in out
