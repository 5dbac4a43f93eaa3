"""sd_notify over a real Unix datagram socket standing for systemd's, and the watchdog feeder
that feeds only while every watched loop is alive."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.systemd import Liveness, SystemdNotifier, WatchdogFeeder


class FakeSystemd:
    """The listening end of ``$NOTIFY_SOCKET``: a bound SOCK_DGRAM socket collecting datagrams."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def nothing_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(4096)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5)
        return False


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[FakeSystemd, str]]:
    path = str(tmp_path / "notify")
    listener = FakeSystemd(path)
    try:
        yield listener, path
    finally:
        listener.sock.close()


def test_ready_status_watchdog_and_stopping_arrive_as_datagrams(systemd: tuple[FakeSystemd, str]) -> None:
    listener, path = systemd
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    try:
        assert notifier.enabled
        assert notifier.ready("agent 1.0 started")
        assert listener.receive() == ["READY=1", "STATUS=agent 1.0 started"]
        assert notifier.watchdog()
        assert listener.receive() == ["WATCHDOG=1"]
        assert notifier.stopping()
        assert listener.receive() == ["STOPPING=1"]
    finally:
        notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"sohoa-test-{os.getpid()}-{threading.get_ident()}"
    listener = FakeSystemd(b"\0" + name.encode())
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.ready()
        assert listener.receive() == ["READY=1"]
    finally:
        notifier.close()
        listener.sock.close()


def test_without_systemd_every_call_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not SystemdNotifier.from_environment({}).ready()
    gone = SystemdNotifier(str(tmp_path / "nobody-listens"))
    assert not gone.watchdog()  # logged, never raised: the agent keeps working
    gone.close()


def test_watchdog_period_from_the_environment() -> None:
    own = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_environment(own).watchdog_interval_s == 15.0
    other = dict(own, WATCHDOG_PID=str(os.getpid() + 1))  # meant for another process
    assert SystemdNotifier.from_environment(other).watchdog_interval_s is None
    assert SystemdNotifier.from_environment(dict(own, WATCHDOG_USEC="0")).watchdog_interval_s is None


def test_feeds_only_while_every_loop_is_alive(systemd: tuple[FakeSystemd, str]) -> None:
    listener, path = systemd
    clock = [100.0]
    liveness = Liveness(clock=lambda: clock[0])
    beat = liveness.heartbeat("link", max_age_s=10)
    stop_capture = threading.Event()
    capture = threading.Thread(target=stop_capture.wait, name="capture")
    capture.start()
    liveness.thread("capture", capture)
    liveness.add("delivery", lambda: True)
    notifier = SystemdNotifier(path, watchdog_usec=2_000_000)
    feeder = WatchdogFeeder(notifier, liveness)
    try:
        assert feeder.feed_once()
        assert listener.receive() == ["WATCHDOG=1"]

        clock[0] += 11  # the link loop has not beaten for 11 s
        assert not feeder.feed_once()
        assert listener.receive() == ["STATUS=stalled: link"]  # said once, and no WATCHDOG=1
        assert not feeder.feed_once()
        assert listener.nothing_within(0.2)

        beat()
        assert feeder.feed_once()
        assert listener.receive() == ["WATCHDOG=1"]

        stop_capture.set()
        capture.join(5)
        assert not feeder.feed_once()
        assert feeder.starving == ["capture"]
        assert listener.receive() == ["STATUS=stalled: capture"]
    finally:
        stop_capture.set()
        notifier.close()


def test_a_check_that_raises_counts_as_dead() -> None:
    liveness = Liveness()

    def broken() -> bool:
        raise OSError("gone")

    liveness.add("delivery", broken)
    assert liveness.dead() == ["delivery"]


def test_feeder_thread_feeds_periodically_and_stops(systemd: tuple[FakeSystemd, str]) -> None:
    listener, path = systemd
    notifier = SystemdNotifier(path, watchdog_usec=100_000)  # feed every 50 ms
    with WatchdogFeeder(notifier, Liveness()) as feeder:
        assert feeder.running
        for _ in range(3):
            assert listener.receive() == ["WATCHDOG=1"]
    assert not feeder.running
    notifier.close()


def test_threads_watched_by_name_once_seen() -> None:
    liveness = Liveness()
    liveness.named_threads("delivery", "test-publisher", "test-uploader")
    assert liveness.dead() == []  # neither started yet
    stop = threading.Event()
    publisher = threading.Thread(target=stop.wait, name="test-publisher")
    publisher.start()
    try:
        assert liveness.dead() == []
        uploader = threading.Thread(target=stop.wait, name="test-uploader-1")
        uploader.start()
        assert liveness.dead() == []
    finally:
        stop.set()
    publisher.join(5)
    uploader.join(5)
    assert liveness.dead() == ["delivery"]
