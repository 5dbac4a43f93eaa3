"""Bad input: hostile image files into ``sohoa-device inspect`` (the page pipeline's file path)
and into the agent's folder source (how files reach the agent's pipeline). Inspect gives one JSON
line per file, a refusal as one line with ``error``, in bounded time and memory; the folder source
takes each file as a page or sets it aside; nothing raises."""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from device.capture.base import ScanRequest
from device.capture.config import FolderConfig
from device.capture.folder import SUFFIXES, FolderSource
from device.inspect import inspect_main
from tests.fuzzing import fuzz_settings, tried

pytestmark = pytest.mark.fuzz

PER_FILE_S = 20.0
"""Longest one hostile file may take (a real page takes well under a second)."""
PEAK_GROWTH_BYTES = 1_500_000_000
"""How much the process's peak memory may grow over the whole suite (a bomb would take tens of GB)."""


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` over a few bytes of data (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\0" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def _save(image: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def _cases() -> dict[str, bytes]:
    page = Image.new("RGB", (600, 800), "white")
    jpeg = _save(page, "JPEG")
    png = _save(page, "PNG")
    frames = [Image.new("P", (200, 200), i) for i in range(5)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    tiff = io.BytesIO()
    page.save(tiff, "TIFF", save_all=True, append_images=[page.convert("L"), page.convert("CMYK")])
    return {
        "zero.png": b"",
        "one-byte.jpg": b"\xff",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "header-only.png": png[:33],
        "bomb.png": _png_claiming(100_000, 100_000),
        "wide-bomb.png": _png_claiming(2**31 - 1, 1),
        "zero-size.png": _png_claiming(0, 0),
        "cmyk.jpg": _save(page.convert("CMYK"), "JPEG"),
        "cmyk.tif": _save(page.convert("CMYK"), "TIFF"),
        "16bit.png": _save(Image.new("I;16", (300, 400), 40000), "PNG"),
        "32bit-int.tif": _save(Image.new("I", (300, 400), 7), "TIFF"),
        "float.tif": _save(Image.new("F", (300, 400), 0.5), "TIFF"),
        "palette.png": _save(page.convert("P"), "PNG"),
        "1bit.png": _save(page.convert("1"), "PNG"),
        "la.png": _save(page.convert("LA"), "PNG"),
        "rgba.png": _save(page.convert("RGBA"), "PNG"),
        "tiny.png": _png(1, 1),
        "multipage.tiff": tiff.getvalue(),
        "animated.gif": gif.getvalue(),
        "text.png": "một trang\n".encode() * 100,
        "html.jpg": b"<html><script>alert(1)</script></html>",
        "png-as-jpg.jpg": png,
    }


@pytest.fixture(scope="module")
def peak_before() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _inspect(paths: list[Path], tmp: Path) -> list[dict[str, object]]:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    status = inspect_main([str(p) for p in paths], out=out, err=err)
    elapsed = time.monotonic() - start
    assert elapsed < PER_FILE_S * len(paths), f"{len(paths)} file(s) took {elapsed:.1f} s"
    lines = out.getvalue().splitlines()
    assert len(lines) == len(paths), lines
    results = [json.loads(line) for line in lines]
    assert status == (2 if any("error" in r for r in results) else 0)
    for r in results:
        if "error" in r:
            message = str(r["error"])
            assert message and "\n" not in message and "Traceback" not in message and len(message) < 300
    return results


def test_known_hostile_images_each_get_one_line(tmp_path: Path, peak_before: int) -> None:
    """Truncated, zero-byte, decompression bombs (100 000 x 100 000 and 2^31 x 1 claimed in a
    few bytes), CMYK, 16-bit, 32-bit and float TIFF, palette, 1-bit, alpha, multi-page TIFF,
    animated GIF, text and HTML named as images: the folder is inspected in one run."""
    for name, data in _cases().items():
        (tmp_path / name).write_bytes(data)
    results = {Path(str(r["file"])).name: r for r in _inspect(sorted(tmp_path.iterdir()), tmp_path)}
    tried("images", len(results))
    for name in ("zero.png", "one-byte.jpg", "truncated.jpg", "truncated.png", "bomb.png", "wide-bomb.png",
                 "text.png", "html.jpg"):
        assert "error" in results[name], (name, results[name])
    assert "100,000" in str(results["bomb.png"]["error"]) or "pixels" in str(results["bomb.png"]["error"])
    for name in ("cmyk.jpg", "cmyk.tif", "16bit.png", "palette.png", "multipage.tiff", "animated.gif", "rgba.png"):
        assert "error" not in results[name], (name, results[name])
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < PEAK_GROWTH_BYTES


_SEEDS = _cases()


@fuzz_settings(60)
@given(seed=st.sampled_from(sorted(k for k, v in _SEEDS.items() if len(v) > 64)), cut=st.integers(0, 10**6),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=8))
def test_mutated_images_never_crash_inspect(tmp_path: Path, seed: str, cut: int,
                                            flips: list[tuple[int, int]]) -> None:
    """Generated: a valid image of every kind above, cut short at a random place and with random
    bytes flipped (headers, chunk lengths, dimensions, compressed data)."""
    data = bytearray(_SEEDS[seed])
    for at, xor in flips:
        data[at % len(data)] ^= xor
    data = data[: max(1, cut % (len(data) + 1))]
    path = tmp_path / f"mutated{Path(seed).suffix}"
    path.write_bytes(bytes(data))
    tried("images")
    _inspect([path], tmp_path)


def _mutate(seed: str, cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(_SEEDS[seed])
    for at, xor in flips:
        data[at % len(data)] ^= xor
    return bytes(data[: max(1, cut % (len(data) + 1))])


MUTATION = st.tuples(st.sampled_from(sorted(k for k, v in _SEEDS.items() if len(v) > 64)), st.integers(0, 10**6),
                     st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=8))


def _scan_folder(files: dict[str, bytes]) -> None:
    """``files`` in one settled import folder, scanned by the agent's folder source: the scan never
    raises; each file becomes a page with its bytes as they were (then moved to imported/) or is
    moved to rejected/; none is left behind or lost."""
    with tempfile.TemporaryDirectory() as root:
        inbox = Path(root) / "inbox"
        inbox.mkdir()
        old = time.time() - 60
        for name, data in files.items():
            (inbox / name).write_bytes(data)
            os.utime(inbox / name, (old, old))
        source = FolderSource(FolderConfig(path=inbox, settle_s=1))
        for page in source.pages(ScanRequest()):
            assert page.origin is not None and page.data == files[page.origin.name]
            assert page.content_type in ("image/png", "image/jpeg", "image/tiff")
            source.done(page)
        tried("images_folder_source", len(files))
        kept = {p.name for folder in ("imported", "rejected") if (inbox / folder).is_dir()
                for p in (inbox / folder).iterdir()}
        assert kept == set(files), (set(files) - kept, {p.name for p in inbox.iterdir() if p.is_file()})


def test_the_agents_folder_source_takes_or_sets_aside_every_known_hostile_file() -> None:
    """The agent's own way in for image files (its folder source, before the page pipeline): every
    known hostile file above of a type it imports (it does not look at a GIF)."""
    _scan_folder({name: data for name, data in _SEEDS.items() if Path(name).suffix in SUFFIXES})


@fuzz_settings(8)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_the_agents_folder_source_takes_or_sets_aside_damaged_files(
    mutations: list[tuple[str, int, list[tuple[int, int]]]],
) -> None:
    """Generated: damaged files of every kind above (cut short, bytes flipped) in one import folder."""
    _scan_folder({f"gen-{i}{Path(seed).suffix}": _mutate(seed, cut, flips)
                  for i, (seed, cut, flips) in enumerate(mutations) if Path(seed).suffix in SUFFIXES})
