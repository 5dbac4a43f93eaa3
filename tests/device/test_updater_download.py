"""Resumable download against a loopback HTTP server: a server that ignores Range, a URL that
changes between attempts, a missing file, a stop request, and a downgrade attempt."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.update_download import download
from device.update_errors import DownloadFailed
from device.updater import Updater
from images.bundle import generate_keys
from protocol.commands import UpdateOffer
from tests.images.device_harness import DEVICE_ID, Recorder, bootstrap, config
from tests.images.helpers import RangeServer, ServedFile, app_bundle, range_server

DATA = os.urandom(300_000)


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with range_server() as srv:
        yield srv


def test_partial_file_resumes_and_progress_is_reported(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: the connection drops after 100 000 bytes."""
    server.files["/f"] = ServedFile(DATA, cut_after=100_000)
    seen: list[tuple[int, int | None]] = []
    out = download(
        f"{server.base_url}/f", tmp_path / "f.bundle", retry_min_s=0, on_progress=lambda d, t: seen.append((d, t))
    )
    assert out.read_bytes() == DATA
    assert server.requests == [("/f", None), ("/f", "bytes=100000-")]
    assert seen[-1] == (len(DATA), len(DATA))
    assert not (tmp_path / "f.bundle.part").exists()


def test_server_ignoring_range_starts_over(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a server (or proxy) that answers 200 with the whole file to a Range request."""
    server.files["/g"] = ServedFile(DATA, cut_after=50_000, ignore_range=True)
    assert download(f"{server.base_url}/g", tmp_path / "g.bundle", retry_min_s=0).read_bytes() == DATA
    assert server.requests == [("/g", None), ("/g", "bytes=50000-")]


def test_partial_file_longer_than_the_bundle_starts_over(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a partial file longer than the served file (416 Range Not Satisfiable)."""
    dest = tmp_path / "l.bundle"
    (tmp_path / "l.bundle.part").write_bytes(b"x" * (len(DATA) + 10))
    (tmp_path / "l.bundle.url").write_text(f"{server.base_url}/l")
    server.files["/l"] = ServedFile(DATA)
    assert download(f"{server.base_url}/l", dest, retry_min_s=0).read_bytes() == DATA
    assert server.requests == [("/l", f"bytes={len(DATA) + 10}-"), ("/l", None)]


def test_another_url_does_not_continue_old_bytes(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a partial file left by a different bundle's download."""
    dest = tmp_path / "h.bundle"
    (tmp_path / "h.bundle.part").write_bytes(b"old bundle bytes")
    (tmp_path / "h.bundle.url").write_text(f"{server.base_url}/old")
    server.files["/new"] = ServedFile(DATA)
    assert download(f"{server.base_url}/new", dest, retry_min_s=0).read_bytes() == DATA
    assert server.requests == [("/new", None)]


def test_missing_file_fails_after_the_attempts(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a URL the server does not have (404)."""
    with pytest.raises(DownloadFailed, match="3 attempts"):
        download(f"{server.base_url}/nope", tmp_path / "n.bundle", attempts=3, retry_min_s=0)
    assert len(server.requests) == 3


def test_stop_ends_the_retries(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: the agent shuts down while the download waits to retry."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(DownloadFailed, match="stopped"):
        download(f"{server.base_url}/nope", tmp_path / "s.bundle", stop=stop)


def test_downgrade_needs_to_be_asked(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a validly signed older bundle (0.0.5) offered to a 0.1.0 device (a replay)."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    old = app_bundle(tmp_path, private, "0.0.5")
    server.files["/old"] = ServedFile(old.read_bytes())
    url = f"{server.base_url}/old"
    for allow, outcome in ((False, "failed"), (True, "succeeded")):
        rec = Recorder()
        updater = Updater(config(root, pub), device_id=DEVICE_ID, current_version="0.1.0", report=rec.report,
                          restart=rec.restart, health_checks={})
        offer = UpdateOffer(rollout_id="old", url=url, version="0.0.5", allow_downgrade=allow)
        assert updater.run(offer) == outcome
        if not allow:
            assert "older" in (rec.reports[-1].detail or "")
