"""The loopback control API, as a real server on loopback: only this machine's own programs may
drive it (the Host names loopback, and no browser Origin), as the kiosk app checks its Host."""

from __future__ import annotations

from typing import Any, Literal

import httpx

from device.config import LocalApiConfig
from device.local_api import LocalApi


def test_browser_and_rebound_requests_are_refused() -> None:
    """Bad input: POST /scan from a page in the kiosk's browser (an Origin: the kiosk screen's,
    another site's, ``null``), and GET /status and POST /scan under a DNS-rebinding host name.
    Each 403; no scan was asked for. curl-like requests still work."""
    asked: list[Any] = []

    def request_scan(request: Any, kind: Literal["scanner", "folder"]) -> Any:
        asked.append((request, kind))
        raise AssertionError("a refused request reached the scanner")

    api = LocalApi(LocalApiConfig(port=0), status=lambda: {"state": "idle"}, request_scan=request_scan).start()
    try:
        base = f"http://127.0.0.1:{api.port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            for origin in ("http://127.0.0.1:8766", "https://evil.example", "null"):
                r = http.post("/scan", json={"max_pages": 1}, headers={"Origin": origin})
                assert (r.status_code, r.json()["detail"]) == (403, "browser_origin")
            for host in ("evil.example", "evil.example:8765", "127.0.0.1.nip.io"):
                assert http.get("/status", headers={"Host": host}).status_code == 403
                assert http.post("/scan", json={}, headers={"Host": host}).status_code == 403
            assert asked == []
            assert http.get("/status").json() == {"state": "idle"}
            assert http.get("/status", headers={"Host": f"localhost:{api.port}"}).status_code == 200
    finally:
        api.close()
