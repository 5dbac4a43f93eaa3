"""The CRL kept fresh while the fleet runs: rewritten at start (a CRL left to lapse while the
fleet was down locks every device out of the broker) and every ``pki.crl_refresh_h`` after,
each time audited as the fleet. An asyncio task of the app's event loop; the signing runs in a
worker thread. The fleet's services build it when enrollment is configured::

    refresh = CrlRefresh(runtime, sessions, config.pki.crl_refresh_h * 3600, clock)
    await refresh.start()  # the CRL is written before the app answers its first request
    ...
    await refresh.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fleet.enroll import admin
from fleet.enroll.crl import Published
from fleet.enroll.runtime import EnrollRuntime
from fleet.leases import Lease

log = logging.getLogger(__name__)


class CrlRefresh:
    """Publishes the CRL at :meth:`start`, then every ``interval_s`` until :meth:`stop`."""

    def __init__(self, runtime: EnrollRuntime, sessions: sessionmaker[Session], interval_s: float,
                 clock: Callable[[], datetime]) -> None:
        self.runtime = runtime
        self.sessions = sessions
        self.interval_s = interval_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.lease: Lease | None = None
        """With several fleet nodes: the timer publishes only while this node holds it, and at
        once when this node takes it over."""

    def publish(self, why: str) -> Published:
        """Sign and write the CRL now, SIGHUP the broker, audit it as the fleet."""
        return admin.publish_crl(self.runtime, self.sessions, admin.system_auditor("fleet", self.clock), why)

    async def start(self) -> None:
        await run_in_threadpool(self.publish, "start")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crl-refresh")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(min(self.interval_s, 1.0))
            gained = self.lease is not None and self.lease.take_gain()
            if not gained and loop.time() - last < self.interval_s:
                continue
            last = loop.time()
            if self.lease is not None and not self.lease.held():
                continue  # another fleet node keeps the CRL fresh
            try:
                await run_in_threadpool(self.publish, "takeover" if gained else "timer")
            except Exception:  # a full disk or a database hiccup: the next tick tries again, loudly
                log.exception("could not publish the CRL")
