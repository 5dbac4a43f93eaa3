"""Talking to systemd: readiness, the watchdog and shutdown, over ``$NOTIFY_SOCKET``.

The agent runs as a ``Type=notify`` service with ``WatchdogSec=`` (``images/rootfs``). It says
``READY=1`` once started, ``STOPPING=1`` when it begins its clean stop, and ``WATCHDOG=1``
every half watchdog period, but only while every loop it depends on is alive: a capture, delivery
or link loop that died or hangs stops the feeding, and systemd kills and restarts the agent
(``Restart=always``). A process that is frozen whole (SIGSTOP, a deadlock of the interpreter)
stops feeding by itself.

The protocol is one datagram of ``KEY=value`` lines to a Unix socket (sd_notify(3)); a plain
socket does it, no library needed. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.

>>> notifier = SystemdNotifier.from_environment({})
>>> notifier.enabled, notifier.ready("started")
(False, False)
>>> liveness = Liveness()
>>> beat = liveness.heartbeat("capture", max_age_s=60)
>>> beat(); liveness.dead()
[]
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Self

log = logging.getLogger(__name__)

LivenessCheck = Callable[[], bool]
"""True while the loop it watches is alive; False or an exception means dead."""


class SystemdNotifier:
    """Sends sd_notify messages to ``socket_path`` (``@name`` is the abstract namespace)."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None) -> None:
        self.socket_path = socket_path
        self.watchdog_usec = watchdog_usec
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        """From ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (a watchdog meant for
        another process, such as a launcher before its exec, is ignored)."""
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if raw_usec and raw_usec.isdigit() and int(raw_usec) > 0 and (not pid or pid == str(os.getpid())):
            usec = int(raw_usec)
        return cls(path, usec)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to feed the watchdog (half its period, as sd_watchdog_enabled(3) advises)."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True when it was sent. Never raises: the
        agent must keep working when systemd is not listening."""
        if self.socket_path is None:
            return False
        address = "\0" + self.socket_path[1:] if self.socket_path.startswith("@") else self.socket_path
        data = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, address)
            except OSError as exc:
                log.warning("cannot notify systemd (%s)", exc.strerror or type(exc).__name__)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Liveness:
    """The loops whose life the watchdog vouches for: threads that must be running and
    heartbeats that must be recent. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._checks: dict[str, LivenessCheck] = {}
        self._beats: dict[str, float] = {}

    def add(self, name: str, check: LivenessCheck) -> None:
        """Watch a loop through a callable (True while alive)."""
        with self._lock:
            self._checks[name] = check

    def thread(self, name: str, thread: threading.Thread) -> None:
        """Watch a thread: dead once it has ended."""
        self.add(name, thread.is_alive)

    def named_threads(self, name: str, *prefixes: str) -> None:
        """Watch threads by name (``threading.enumerate()``): once a thread whose name starts with
        one of ``prefixes`` has been seen, one such thread must stay alive. Before that (a loop
        started later, such as the MQTT link's after enrollment) it counts as alive."""
        seen = [False] * len(prefixes)

        def alive() -> bool:
            names = [t.name for t in threading.enumerate() if t.is_alive()]
            for i, prefix in enumerate(prefixes):
                running = any(n.startswith(prefix) for n in names)
                if running:
                    seen[i] = True
                elif seen[i]:
                    return False
            return True

        self.add(name, alive)

    def heartbeat(self, name: str, *, max_age_s: float) -> Callable[[], None]:
        """A ``beat()`` for a loop to call each turn; the loop is dead when the last beat is
        older than ``max_age_s``. Counts as alive from now on."""
        with self._lock:
            self._beats[name] = self._clock()

        def beat() -> None:
            with self._lock:
                self._beats[name] = self._clock()

        def recent() -> bool:
            with self._lock:
                return self._clock() - self._beats[name] <= max_age_s

        self.add(name, recent)
        return beat

    def dead(self) -> list[str]:
        """Names of the loops that are not alive now (empty: all alive)."""
        with self._lock:
            checks = list(self._checks.items())
        out: list[str] = []
        for name, check in checks:
            try:
                alive = bool(check())
            except Exception:  # a check that fails any way at all means "not alive"
                alive = False
            if not alive:
                out.append(name)
        return out


class WatchdogFeeder:
    """Feeds systemd's watchdog from its own thread while :class:`Liveness` says all is alive.

    >>> feeder = WatchdogFeeder(SystemdNotifier(None), Liveness())
    >>> feeder.start().running   # no watchdog asked for: nothing to feed
    False
    >>> feeder.close()
    """

    def __init__(self, notifier: SystemdNotifier, liveness: Liveness, *, interval_s: float | None = None) -> None:
        self.notifier = notifier
        self.liveness = liveness
        self.interval_s = interval_s if interval_s is not None else notifier.watchdog_interval_s
        self.fed = 0
        self.starving: list[str] = []
        """The dead loops that made the last round skip feeding (empty while feeding)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self.interval_s is None or not self.notifier.enabled:
            return self
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()
        return self

    def feed_once(self) -> bool:
        """One round: feed when every loop is alive. True when fed."""
        dead = self.liveness.dead()
        if dead:
            if dead != self.starving:
                log.error("not feeding the watchdog: %s not alive; systemd will restart the agent", ", ".join(dead))
                self.notifier.status(f"stalled: {', '.join(dead)}")
            self.starving = dead
            return False
        if self.starving:
            log.warning("every loop is alive again: feeding the watchdog")
            self.starving = []
        if self.notifier.watchdog():
            self.fed += 1
            return True
        return False

    def _run(self) -> None:
        assert self.interval_s is not None
        while True:
            self.feed_once()
            if self._stop.wait(self.interval_s):
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


def agent_liveness() -> Liveness:
    """The agent's loops that the watchdog vouches for, by their threads' names: capture (the
    scan worker), delivery (the outbox publisher and the page uploader) and the MQTT link (paho's
    network loop). A loop that dies stops the feeding; a whole agent that hangs stops it anyway."""
    liveness = Liveness()
    liveness.named_threads("capture", "scan-worker")
    liveness.named_threads("delivery", "publisher", "uploader")
    liveness.named_threads("link", "paho-mqtt-client-")
    return liveness

