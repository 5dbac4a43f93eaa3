"""The uploader against a real HTTP server that misbehaves: retries with backoff, deletes the
local copy only after 200/201, skips the body when the fleet already holds the file."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from device.config import EnrollmentConfig, UploadConfig
from device.delivery.outbox import Outbox
from device.delivery.uploader import Uploader
from device.enroll import Enroller
from provisioning.identity import DeviceIdentity
from provisioning.tokens import issue_token
from tests.device.agent_harness import enrolled_agent
from tests.provisioning.standin import standin_fleet

UNIT = "00001"


class Fleet:
    """Answers scripted status codes to PUT (then 201), 200 to HEAD for ``held`` files."""

    def __init__(self, put_codes: list[int], held: set[str] | None = None) -> None:
        self.put_codes = put_codes
        self.held = held or set()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                fleet.requests.append(("HEAD", self.path, dict(self.headers), b""))
                self._answer(200 if self.path.rsplit("/", 1)[-1] in fleet.held else 404)

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fleet.requests.append(("PUT", self.path, dict(self.headers), body))
                code = fleet.put_codes.pop(0) if fleet.put_codes else 201
                if code in (200, 201):
                    fleet.held.add(self.path.rsplit("/", 1)[-1])
                self._answer(code)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state")
    try:
        yield box
    finally:
        box.close()


def _add(outbox: Outbox, data: bytes) -> str:
    return outbox.add_page(data, "image/png", lambda s: ("sohoa/v1/kiosk-0001/event", b"{}", f"message-{s[:8]}"))


def test_retries_until_stored_then_deletes(outbox: Outbox) -> None:
    """503, then 500, then 201: the file stays through the failures (with growing delays) and
    is deleted only after the 201; the PUT carries the raw bytes and the contract's headers."""
    fleet = Fleet([503, 500])
    sha = _add(outbox, b"\x89PNG page bytes")
    uploader = Uploader(outbox, fleet.url, "kiosk-0001", UploadConfig(retry_min_s=0.01, retry_max_s=0.05))
    try:
        assert uploader.upload_due() == 0
        assert outbox.file_path(sha).exists() and outbox.depth().files == 1
        due = outbox.next_file_due()
        assert due is not None
        assert not uploader.upload_one(outbox.pending_files(now=due + 1)[0])
        assert uploader.upload_one(outbox.pending_files(now=due + 10)[0])
        assert not outbox.file_path(sha).exists() and outbox.depth().files == 0
        puts = [r for r in fleet.requests if r[0] == "PUT"]
        assert len(puts) == 3
        assert all(r[1] == f"/api/v1/files/{sha}" and r[3] == b"\x89PNG page bytes" for r in puts)
        assert puts[-1][2]["Content-Type"] == "image/png" and puts[-1][2]["X-Sohoa-Device"] == "kiosk-0001"
    finally:
        uploader.close()
        fleet.close()


def test_already_held_file_is_not_sent_again(outbox: Outbox) -> None:
    """HEAD says 200 (the fleet has it, e.g. from before a crash): no PUT, local copy deleted."""
    data = b"page already at the fleet"
    fleet = Fleet([], held={hashlib.sha256(data).hexdigest()})
    sha = _add(outbox, data)
    uploader = Uploader(outbox, fleet.url, "kiosk-0001", UploadConfig())
    try:
        assert uploader.upload_due() == 1  # the fleet holds it
        assert not outbox.file_path(sha).exists()
        assert [r[0] for r in fleet.requests] == ["HEAD"]
    finally:
        uploader.close()
        fleet.close()


def test_damaged_local_copy_is_set_aside_not_retried_forever(outbox: Outbox) -> None:
    """The bytes on disk no longer match their name (disk damage): the uploader sees it before
    sending anything, stops trying, and keeps the bytes in ``unreadable/``."""
    fleet = Fleet([])
    sha = _add(outbox, b"original")
    outbox.file_path(sha).write_bytes(b"bit rot")
    uploader = Uploader(outbox, fleet.url, "kiosk-0001", UploadConfig())
    try:
        assert not uploader.upload_one(outbox.pending_files()[0])
        assert outbox.depth().files == 0
        assert [r[0] for r in fleet.requests] == ["HEAD"]
        assert (outbox.unreadable_dir / sha).read_bytes() == b"bit rot"
    finally:
        uploader.close()
        fleet.close()


def test_unreachable_fleet_keeps_the_file(outbox: Outbox) -> None:
    sha = _add(outbox, b"waiting")
    uploader = Uploader(outbox, "http://127.0.0.1:9", "kiosk-0001", UploadConfig(timeout_s=2))
    try:
        assert uploader.upload_due() == 0
        assert outbox.file_path(sha).exists()
        assert uploader.failures == 1 and outbox.pending_files() == []  # postponed
    finally:
        uploader.close()


def test_signed_upload_names_the_device_only_by_its_signature(outbox: Outbox, tmp_path: Path) -> None:
    """An enrolled uploader against the stand-in HTTPS fleet: the PUT is signed and carries no
    X-Sohoa-Device header (a name anyone could write; the unsigned PUT above still sends it).
    The fleet records the signer as the uploader."""
    with standin_fleet(tmp_path / "fleet") as fleet:
        text, token = issue_token(UNIT, ttl=dt.timedelta(hours=1))
        fleet.store.tokens[token.token_id] = token
        assert fleet.ca.cert_path is not None
        identity = DeviceIdentity(tmp_path / "identity", "kiosk-0001")
        config = EnrollmentConfig.model_validate(
            enrolled_agent(tmp_path, fleet.url, fleet.ca.cert_path, text.get_secret_value())["enrollment"])
        Enroller(identity, config, unit_code=UNIT).enroll(threading.Event())
        sha = _add(outbox, b"\x89PNG a signed page")
        uploader = Uploader(outbox, "http://127.0.0.1:9", "kiosk-0001", UploadConfig(), identity=identity)
        try:
            assert uploader.upload_due() == 1  # to the enrollment answer's fleet URL, not the config's
        finally:
            uploader.close()
        assert fleet.file_uploaders[sha] == "kiosk-0001"
        sent = fleet.file_headers[sha]
        assert "authorization" in sent and "x-sohoa-device" not in sent, sorted(sent)
