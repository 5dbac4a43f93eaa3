"""Test helpers for bundles: a tiny real wheel, signed bundles, and a loopback HTTP server that
honours Range requests and can cut a response half-way."""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from images.bundle import build_bundle, generate_keys


def make_wheel(out_dir: Path, *, name: str = "sohoa_probe", version: str = "1.0", body: str = "OK = True\n") -> Path:
    """A minimal valid wheel (pip installs it) holding one module ``<name>``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def keypair(directory: Path) -> tuple[Path, Path]:
    return generate_keys(directory)


def app_bundle(
    tmp: Path,
    key: Path,
    version: str,
    *,
    body: str = "OK = True\n",
    min_previous_version: str | None = None,
    model: Path | None = None,
    unsigned: bool = False,
    allows_downgrade: bool = False,
    version_floor: str | None = None,
) -> Path:
    """A signed app bundle whose wheel is ``sohoa_probe`` at ``version`` with module text ``body``."""
    work = tmp / f"build-{version}-{abs(hash(body))}"
    wheel = make_wheel(work / "wheels", version=version, body=body)
    lock = work / "requirements.lock"
    lock.write_text("pydantic\n")  # no pins: the lock check finds nothing to compare
    return build_bundle(
        kind="app",
        version=version,
        key_path=key,
        out_dir=work / "out",
        wheels=[wheel],
        lock=lock,
        model=model,
        min_previous_version=min_previous_version,
        unsigned=unsigned,
        allows_downgrade=allows_downgrade,
        version_floor=version_floor,
    )


def flip_byte(path: Path, offset: int) -> Path:
    """A copy of ``path`` with the byte at ``offset`` inverted."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    out = path.with_name(f"flipped-{offset}-{path.name}")
    out.write_bytes(bytes(data))
    return out


@dataclass
class ServedFile:
    data: bytes
    cut_after: int | None = None
    """If set, the next GET sends full headers but only this many bytes, then drops the link (once)."""
    ignore_range: bool = False
    """Answer 200 with the whole file even when asked for a range (some proxies do)."""
    hide_length: bool = False
    """Send no Content-Length: the body ends when the connection closes (as a hostile server may)."""


@dataclass
class RangeServer:
    base_url: str
    files: dict[str, ServedFile]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every GET, in order."""


@contextmanager
def range_server() -> Iterator[RangeServer]:
    """A loopback HTTP server honouring ``Range: bytes=N-``; files are added to ``.files``."""
    files: dict[str, ServedFile] = {}
    requests: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet tests
            pass

        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Range")))
            served = files.get(self.path)
            if served is None:
                self.send_error(404)
                return
            data, start = served.data, 0
            range_header = self.headers.get("Range")
            if (
                range_header
                and not served.ignore_range
                and range_header.startswith("bytes=")
                and range_header.endswith("-")
            ):
                start = int(range_header[6:-1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if served.hide_length:
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if served.cut_after is not None:
                cut, served.cut_after = served.cut_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RangeServer(f"http://127.0.0.1:{server.server_address[1]}", files, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
