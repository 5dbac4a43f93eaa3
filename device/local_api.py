"""The local endpoint on loopback, for the kiosk screen and tests: ``POST /scan`` queues a batch
(``{source?, max_pages?, wait?}``, the ``test_scan`` arguments plus ``wait``) and ``GET /status``
answers the agent's status (no personal data).

>>> api = LocalApi(config.local_api, status=agent.status, request_scan=worker.request_scan)  # doctest: +SKIP
>>> api.start(); api.port  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from device.scanning import ScanJob, scan_request
from protocol.commands import TestScanArgs

if TYPE_CHECKING:
    from device.capture.base import ScanRequest
    from device.config import LocalApiConfig

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
WAIT_LIMIT_S = 600


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def foreign_request(host: str | None, origin: str | None) -> str | None:
    """Why a request to the loopback API is refused, or None.

    >>> foreign_request("127.0.0.1:8765", None), foreign_request("evil.example:8765", None)
    (None, 'forbidden_host')
    >>> foreign_request("127.0.0.1:8765", "http://127.0.0.1:8766")
    'browser_origin'
    """
    name = (host or "").rsplit(":", 1)[0] if not (host or "").endswith("]") else host
    if name not in LOOPBACK_HOSTS:
        return "forbidden_host"
    if origin is not None:
        return "browser_origin"
    return None


class LocalApi:
    """A small HTTP server on its own thread; :meth:`start` it, :meth:`close` it."""

    def __init__(
        self,
        config: LocalApiConfig,
        *,
        status: Callable[[], dict[str, Any]],
        request_scan: Callable[[ScanRequest, Literal["scanner", "folder"]], ScanJob],
    ) -> None:
        self.config = config
        self._status = status
        self._request_scan = request_scan
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def start(self) -> LocalApi:
        """Listen (an OSError when the port is taken) and serve on a thread."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sohoa-device"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("local api: %s", format % args)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refused(self) -> bool:
                """A request not made from this machine's own programs: 403. The Host must name
                loopback (a rebinding DNS name may not), and a browser's request (it carries an
                Origin, e.g. a page in the kiosk's Chromium posting /scan) is never taken."""
                why = foreign_request(self.headers.get("Host"), self.headers.get("Origin"))
                if why is None:
                    return False
                log.warning("local api: refused a request (%s)", why)
                self._reply(HTTPStatus.FORBIDDEN, {"detail": why})
                return True

            def do_GET(self) -> None:
                if self._refused():
                    return
                if self.path.split("?")[0] == "/status":
                    self._reply(HTTPStatus.OK, api._status())
                else:
                    self._reply(HTTPStatus.NOT_FOUND, {"detail": "not found"})

            def do_POST(self) -> None:
                if self._refused():
                    return
                if self.path.split("?")[0] != "/scan":
                    self._reply(HTTPStatus.NOT_FOUND, {"detail": "not found"})
                    return
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    wait = bool(body.pop("wait", False)) if isinstance(body, dict) else False
                    args = TestScanArgs.model_validate(body)
                except (json.JSONDecodeError, ValidationError, AttributeError):
                    self._reply(HTTPStatus.BAD_REQUEST, {"detail": "body: {source?, max_pages?, wait?}"})
                    return
                kind, request = scan_request(args)
                job = api._request_scan(request, kind)
                if wait:
                    job.wait(WAIT_LIMIT_S)
                if job.outcome == "refused":
                    self._reply(HTTPStatus.CONFLICT, job.summary())
                else:
                    self._reply(HTTPStatus.OK if wait else HTTPStatus.ACCEPTED, job.summary())

        self._server = ThreadingHTTPServer((self.config.host, self.config.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        log.info("local endpoint on http://%s:%s (POST /scan, GET /status)", self.config.host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
