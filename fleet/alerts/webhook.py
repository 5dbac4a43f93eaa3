"""Alerts to a webhook: JSON POSTed from a thread of its own, retried with backoff, so a slow or
absent receiver never holds up the evaluator (let alone the ingest, which never sees it).

>>> with Webhook("http://127.0.0.1:9/hook", retries=0) as hook:
...     hook.send({"event": "opened"})
"""

import contextlib
import logging
import queue
import threading
from typing import Any, Self

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0


class Webhook:
    """A queue of payloads and one sender thread. ``send`` never blocks: when the queue is full
    (the receiver has been away a long time) the payload is dropped and counted."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 5, backoff_s: float = 1.0,
                 max_queue: int = 1000) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            log.warning("webhook queue full: an alert notification was dropped")

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                self._deliver(client, payload)

    def _deliver(self, client: Any, payload: dict[str, Any]) -> None:
        import httpx

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = client.post(self.url, json=payload)
                if response.status_code < 300:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt == self.retries:
                break
            log.info("webhook delivery failed (%s); retry %d in %.1f s", problem, attempt + 1, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, MAX_BACKOFF_S)
        self.failed += 1
        log.warning("webhook delivery given up (%s)", problem)

    def close(self, timeout: float = 5.0) -> None:
        """Stop retrying; deliver what is queued if the receiver answers within ``timeout``."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # then the thread drains the queue, one attempt each
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
