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
from device.update_slots import SlotStore
from device.updater import Updater
from images.bundle import generate_keys
from protocol.commands import UpdateOffer
from tests.images.device_harness import DEVICE_ID, FLEET_URL, Recorder, bootstrap, config, probe
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


def _run(root: Path, pub: Path, offer: UpdateOffer, *, running: str = "0.1.0", fleet_url: str | None = FLEET_URL,
         **cfg: object) -> tuple[str, Recorder]:
    rec = Recorder()
    updater = Updater(config(root, pub, **cfg), device_id=DEVICE_ID, current_version=running, report=rec.report,
                      restart=rec.restart, health_checks={}, fleet_url=fleet_url)
    return updater.run(offer), rec


def test_downgrade_needs_the_offer_and_the_signed_manifest(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: a validly signed older bundle (0.0.5) offered to a 0.1.0 device (a replay),
    first without ``allow_downgrade``, then with it but from a bundle whose signed manifest does
    not consent (an admin cannot turn any old release into a downgrade). Only an offer that asks
    for a bundle that consents steps back."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    server.files["/old"] = ServedFile(app_bundle(tmp_path, private, "0.0.5").read_bytes())
    server.files["/back"] = ServedFile(app_bundle(tmp_path, private, "0.0.6", allows_downgrade=True).read_bytes())
    outcome, rec = _run(root, pub, UpdateOffer(rollout_id="old", url=f"{server.base_url}/old", version="0.0.5"))
    assert outcome == "failed" and "no downgrade asked" in (rec.reports[-1].detail or "")
    outcome, rec = _run(root, pub, UpdateOffer(rollout_id="old2", url=f"{server.base_url}/old", version="0.0.5",
                                               allow_downgrade=True))
    assert outcome == "failed" and "does not allow a downgrade" in (rec.reports[-1].detail or "")
    outcome, rec = _run(root, pub, UpdateOffer(rollout_id="back", url=f"{server.base_url}/back", version="0.0.6",
                                               allow_downgrade=True))
    assert outcome == "succeeded", rec.reports[-1]
    assert probe(root) == ("0.0.6", True)


def test_a_signed_version_floor_is_never_undone(tmp_path: Path, server: RangeServer) -> None:
    """A bundle (0.2.0) carrying a signed floor of 0.2.0 passes its trial: from then on even a
    signed, consenting downgrade bundle (0.1.5) asked for with ``allow_downgrade`` is refused. A
    floor recorded by a trial that failed would not count (the device runs the old slot)."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    server.files["/fix"] = ServedFile(app_bundle(tmp_path, private, "0.2.0", version_floor="0.2.0").read_bytes())
    server.files["/back"] = ServedFile(app_bundle(tmp_path, private, "0.1.5", allows_downgrade=True).read_bytes())
    outcome, _ = _run(root, pub, UpdateOffer(rollout_id="fix", url=f"{server.base_url}/fix", version="0.2.0"))
    assert outcome == "succeeded" and SlotStore(root).version_floor() == "0.2.0"
    outcome, rec = _run(root, pub, UpdateOffer(rollout_id="back", url=f"{server.base_url}/back", version="0.1.5",
                                               allow_downgrade=True), running="0.2.0")
    assert outcome == "failed" and "version floor 0.2.0" in (rec.reports[-1].detail or "")
    assert probe(root) == ("0.2.0", True)
    with pytest.raises(ValueError, match="version_floor"):
        app_bundle(tmp_path, private, "0.3.0", version_floor="0.4.0")


@pytest.mark.parametrize(("url", "fleet_url", "allow_http"), [
    ("{base}/b", "http://127.0.0.1", False),          # plain HTTP on a real device
    ("{base}/b", None, True),                         # a device that knows no fleet
    ("{base}/b", "https://fleet.example", True),      # another host than the fleet's
    ("http://localhost:{port}/b", "http://127.0.0.1", True),  # the same machine by another name
    ("http://user@127.0.0.1:{port}/b", "http://127.0.0.1", True),
    ("ftp://127.0.0.1:{port}/b", "http://127.0.0.1", True),
])
def test_offers_come_only_from_the_fleets_own_host(tmp_path: Path, server: RangeServer, url: str,
                                                   fleet_url: str | None, allow_http: bool) -> None:
    """Bad input: update offers pointing elsewhere than the fleet's host over HTTPS. Each is
    refused before a single request leaves the device (the download would carry its signature)."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    server.files["/b"] = ServedFile(app_bundle(tmp_path, private, "0.2.0").read_bytes())
    port = server.base_url.rsplit(":", 1)[1]
    offer = UpdateOffer.model_construct(rollout_id="r", url=url.format(base=server.base_url, port=port),
                                        version="0.2.0", kind="app", sha256=None, allow_downgrade=False)
    outcome, rec = _run(root, pub, offer, fleet_url=fleet_url, allow_http=allow_http)
    assert outcome == "failed" and rec.states() == ["failed"], rec.reports
    assert server.requests == []


@pytest.mark.parametrize("hide_length", [False, True])
def test_a_download_over_the_cap_is_abandoned_without_a_sha256(tmp_path: Path, server: RangeServer,
                                                               hide_length: bool) -> None:
    """Bad input: an offer with no sha256 whose server sends more than the device's cap, once
    announcing the size (refused before a byte is written) and once without Content-Length
    (stopped as soon as the cap is passed). Nothing of it stays on disk."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    _private, pub = generate_keys(tmp_path / "keys")
    server.files["/big"] = ServedFile(os.urandom(200_000), hide_length=hide_length)
    offer = UpdateOffer(rollout_id="big", url=f"{server.base_url}/big", version="0.2.0")
    outcome, rec = _run(root, pub, offer, max_bundle_bytes=64 * 1024)
    assert outcome == "failed" and "limit of 65536" in (rec.reports[-1].detail or "")
    assert len([r for r in server.requests if r[0] == "/big"]) == 1  # abandoned, not retried
    assert not [p for p in (root / "downloads").iterdir()] if (root / "downloads").exists() else True
