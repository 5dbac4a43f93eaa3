"""The folder source: image files taken byte for byte once settled, odd files set aside."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from PIL import Image

from device.capture.base import ScanRequest
from device.capture.config import FolderConfig
from device.capture.folder import FolderSource


def _image_bytes(fmt: str, size: tuple[int, int] = (40, 30), dpi: int | None = 200) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"dpi": (dpi, dpi)} if dpi else {}
    Image.new("RGB", size, (200, 10, 10)).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_files_are_taken_byte_for_byte_and_moved_aside(tmp_path: Path) -> None:
    """A JPEG, a PNG and a TIFF become pages with their original bytes, type, size and dpi;
    a text file named .png and a truncated JPEG go to rejected/; a file still being written
    (too new) waits; imported files move to imported/."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = {"a.jpg": _image_bytes("JPEG"), "b.png": _image_bytes("PNG", dpi=None), "c.tif": _image_bytes("TIFF")}
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    (inbox / "d.png").write_text("not an image")
    (inbox / "e.jpg").write_bytes(files["a.jpg"][:20])
    (inbox / "notes.txt").write_text("ignored")
    old = time.time() - 60
    for entry in inbox.iterdir():
        os.utime(entry, (old, old))
    (inbox / "f.png").write_bytes(_image_bytes("PNG"))  # just arrived: not settled yet
    source = FolderSource(FolderConfig(path=inbox, settle_s=5))
    pages = []
    for page in source.pages(ScanRequest()):
        pages.append(page)
        source.done(page)
    assert [(p.content_type, p.data) for p in pages] == [
        ("image/jpeg", files["a.jpg"]), ("image/png", files["b.png"]), ("image/tiff", files["c.tif"])]
    assert [p.sequence for p in pages] == [1, 2, 3]
    assert (pages[0].width, pages[0].height, pages[0].dpi) == (40, 30, 200)
    assert pages[1].dpi is None
    assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["a.jpg", "b.png", "c.tif"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == ["d.png", "e.jpg"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["f.png", "notes.txt"]


def test_delete_after_import_and_name_clash(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "imported").mkdir(parents=True)
    (inbox / "imported" / "a.png").write_bytes(b"older import")
    (inbox / "a.png").write_bytes(_image_bytes("PNG"))
    source = FolderSource(FolderConfig(path=inbox, settle_s=0))
    for page in source.pages(ScanRequest()):
        source.done(page)
    assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["a.1.png", "a.png"]
    (inbox / "b.png").write_bytes(_image_bytes("PNG"))
    deleting = FolderSource(FolderConfig(path=inbox, settle_s=0, after_import="delete"))
    for page in deleting.pages(ScanRequest()):
        deleting.done(page)
    assert not (inbox / "b.png").exists()
