"""Download an update bundle over HTTP with resume (``Range: bytes=N-``).

The partial file (``<dest>.part``) survives a dropped link and a restart; a sidecar file
remembers which URL it belongs to, so a different bundle never continues another's bytes.

>>> # download("http://fleet/bundles/sohoa-app-0.2.0.bundle", Path("/var/lib/sohoa/updates/x.bundle"))
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from device.update_errors import DownloadFailed, OfferWithdrawn

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    attempts: int = 5,
    timeout_s: float = 30.0,
    retry_min_s: float = 1.0,
    retry_max_s: float = 60.0,
    on_progress: Callable[[int, int | None], None] | None = None,
    stop: threading.Event | None = None,
    client: httpx.Client | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Fetch ``url`` into ``dest``, resuming a partial download; return ``dest``.

    Each attempt asks for the bytes not yet held. A server that ignores ``Range`` (200) starts
    the file over. Raises :class:`DownloadFailed` after ``attempts`` failed tries, when ``stop``
    is set, or when the finished file's sha256 differs from ``expected_sha256`` (the partial
    file is then deleted, so the next try starts clean). A 410 answer raises
    :class:`OfferWithdrawn` at once and drops the partial file: the fleet withdrew the offer.

    ``max_bytes``: a bundle announced as larger, or growing larger, is abandoned at once
    (:class:`DownloadFailed`, partial file dropped), whether or not a sha256 was announced.

    ``client`` is the HTTP client to use (e.g. one carrying the device's request signing as its
    ``auth``); without it a plain one is made for this download.
    """
    stop = stop or threading.Event()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    sidecar = dest.with_name(dest.name + ".url")
    if dest.exists() and expected_sha256 is not None and _sha256(dest) == expected_sha256:
        return dest
    if not sidecar.exists() or sidecar.read_text() != url:
        part.unlink(missing_ok=True)
        sidecar.write_text(url)
    own_client = client is None
    http = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
    delay = retry_min_s
    last_error = "no attempt made"
    try:
        for attempt in range(1, attempts + 1):
            if stop.is_set():
                raise DownloadFailed("stopped")
            try:
                total = _attempt(http, url, part, on_progress, max_bytes)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 410:
                    part.unlink(missing_ok=True)
                    sidecar.unlink(missing_ok=True)
                    raise OfferWithdrawn(f"the fleet withdrew this update offer: {_reason(exc.response)}") from None
                last_error = f"HTTP {exc.response.status_code}"
            except TooLarge as exc:
                part.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                raise DownloadFailed(str(exc)) from None
            except (httpx.HTTPError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                if total is not None and part.stat().st_size != total:
                    last_error = f"got {part.stat().st_size} of {total} bytes"
                    continue
                if expected_sha256 is not None and _sha256(part) != expected_sha256:
                    part.unlink(missing_ok=True)
                    raise DownloadFailed("the downloaded bundle's sha256 differs from the one announced")
                part.replace(dest)
                sidecar.unlink(missing_ok=True)
                return dest
            # A failed attempt (any but 410): wait, then resume from what the .part holds.
            log.warning("download attempt %s/%s failed (%s); resuming later", attempt, attempts, last_error)
            if attempt < attempts and stop.wait(delay):
                raise DownloadFailed("stopped")
            delay = min(delay * 2, retry_max_s)
    finally:
        if own_client:
            http.close()
    raise DownloadFailed(f"download failed after {attempts} attempts: {last_error}")


def withdrawn(url: str, client: httpx.Client) -> str | None:
    """Ask the fleet whether the offer behind ``url`` still stands (one byte, ``Range: bytes=0-0``):
    the reason when it answers 410, else None. A fleet that cannot be reached withdraws nothing:
    the bundle in hand is verified and signed, and the link at a commune may be down for hours."""
    try:
        with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as response:
            if response.status_code != 410:
                return None
            response.read()
            return _reason(response)
    except httpx.HTTPError as exc:
        log.info("could not ask whether the update offer still stands (%s); going on", type(exc).__name__)
        return None


def _reason(response: httpx.Response) -> str:
    """The fleet's one-line reason (FastAPI's ``{"detail": ...}``), bounded; never the body otherwise."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError, httpx.HTTPError, httpx.StreamError):
        detail = None
    return str(detail)[:200] if isinstance(detail, str) else f"HTTP {response.status_code}"


class TooLarge(DownloadFailed):
    """The bundle is over the download's size cap."""


def _attempt(
    http: httpx.Client, url: str, part: Path, on_progress: Callable[[int, int | None], None] | None,
    max_bytes: int | None = None,
) -> int | None:
    """One GET from the current offset; returns the full size when the server said it."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:
            # Asked past the end: complete if the server's size is what we hold, else start over.
            total_text = response.headers.get("content-range", "").rpartition("/")[2]
            if total_text.isdigit() and int(total_text) == offset:
                return offset
            part.unlink(missing_ok=True)
            raise httpx.HTTPError("range not satisfiable: starting over")
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise httpx.HTTPError("unexpected Content-Range: starting over")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        elif response.status_code == 200:
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            offset, mode = 0, "wb"
        else:
            if int(response.headers.get("content-length") or 0) <= 4096:
                response.read()  # a short reason (410: why the offer was withdrawn)
            raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
        if max_bytes is not None and total is not None and total > max_bytes:
            raise TooLarge(f"the bundle is {total} bytes, over this device's limit of {max_bytes}")
        done = offset
        with part.open(mode) as f:
            for chunk in response.iter_bytes():  # as they arrive: a cut keeps every byte received
                done += len(chunk)
                if max_bytes is not None and done > max_bytes:
                    raise TooLarge(f"the bundle grew over this device's limit of {max_bytes} bytes")
                f.write(chunk)
                if on_progress is not None:
                    on_progress(done, total)
            f.flush()
    return total
