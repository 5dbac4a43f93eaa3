"""The agent as systemd runs it (``Type=notify``, ``WatchdogSec=``): a real ``python -m device run``
process with ``$NOTIFY_SOCKET`` pointing at a datagram socket the test holds. It says READY=1
once started, feeds the watchdog at half its period, stops feeding while frozen (SIGSTOP: what
systemd would kill and restart), and says STOPPING=1 on SIGTERM before its clean stop."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.agent_harness import AgentProcess, agent_config
from tests.services import free_port


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    try:
        yield sock
    finally:
        sock.close()


def _next(sock: socket.socket, timeout: float = 30) -> list[str]:
    sock.settimeout(timeout)
    return sock.recv(4096).decode().split("\n")


def test_ready_watchdog_stopping_and_no_feeding_while_frozen(tmp_path: Path, notify_socket: socket.socket) -> None:
    config = agent_config(tmp_path, free_port(), scanner={"type": "fake", "pages": 1})  # no broker: link retries
    agent = AgentProcess(config, tmp_path)
    agent.env.update(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="600000")  # feed every 0.3 s
    try:
        agent.start()
        ready = _next(notify_socket)
        assert ready[0] == "READY=1" and ready[1].startswith("STATUS=agent ") and "kiosk-test" in ready[1]
        assert [_next(notify_socket) for _ in range(3)] == [["WATCHDOG=1"]] * 3
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        while (message := _next(notify_socket)) == ["WATCHDOG=1"]:
            pass
        assert message == ["STOPPING=1"]
        assert agent.proc.wait(60) == 0

        agent.start()  # again, then frozen: what systemd's watchdog kills (SIGABRT) and restarts
        assert _next(notify_socket)[0] == "READY=1"
        assert _next(notify_socket) == ["WATCHDOG=1"]
        agent.proc.send_signal(signal.SIGSTOP)
        notify_socket.settimeout(0.1)
        try:  # what was sent just before the stop may still be queued
            while True:
                notify_socket.recv(4096)
        except TimeoutError:
            pass
        with pytest.raises(TimeoutError):
            _next(notify_socket, timeout=1.5)  # five feeding periods: nothing
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
