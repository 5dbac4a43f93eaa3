"""``sohoa-device run``: the agent as a systemd service (``READY=1`` once started, a watchdog fed
while its loops live, ``STOPPING=1`` at the clean stop). It runs until SIGTERM or SIGINT and then
stops cleanly; ``restart_agent`` and an update end it with ``commands.restart_exit_code`` so
systemd starts it again.

Signals are blocked in every thread (threads inherit the mask) and taken by the main thread with
``sigtimedwait``: SANE backends reset SIGTERM's disposition from their reader threads (the test
backend does), which would kill a handler-based agent without its clean stop. SIGPIPE too: some
backends reset it to "terminate", and a write to a closed socket must raise BrokenPipeError in
the thread that made it, not end the agent.

>>> run_main("/etc/sohoa/device.yaml")  # doctest: +SKIP
0
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading

from device import __version__
from device.agent import Agent
from device.config import load
from device.systemd import SystemdNotifier, WatchdogFeeder, agent_liveness
from protocol.configfile import ConfigError

log = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def run_main(config_path: str) -> int:
    """Run the agent from ``config_path`` until a stop signal; the process's exit code."""
    try:
        config = load(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
        return 1
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGPIPE})
    try:
        agent = Agent(config)
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot start: %s", exc)
        return 1
    restart = threading.Event()
    agent.commands.restart_hook = restart.set
    systemd = SystemdNotifier.from_environment()
    watchdog = WatchdogFeeder(systemd, agent_liveness())
    try:
        try:
            agent.start()
        except OSError as exc:  # e.g. the local endpoint's port is taken
            log.error("cannot start: %s", exc)
            return 1
        systemd.ready(f"agent {__version__} running as {config.device_id}")
        watchdog.start()
        while not restart.is_set():
            info = signal.sigtimedwait(STOP_SIGNALS, 0.5)
            if info is not None:
                log.info("signal %s: stopping", signal.Signals(info.si_signo).name)
                break
    finally:
        systemd.stopping()
        watchdog.close()
        agent.close()
    if restart.is_set():
        log.info("restarting (exit code %s)", config.commands.restart_exit_code)
        return config.commands.restart_exit_code
    return 0
