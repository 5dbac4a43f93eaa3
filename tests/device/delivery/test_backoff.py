"""The reconnect schedule and the probe gate, replayed from seeded random numbers and a fake
clock: delays stay under their doubling, capped windows; a broker restart's reconnects spread
evenly over the window; a busy or absent broker is never probed, and a probe comes at most once
per interval."""

from __future__ import annotations

import random
import ssl
from collections import Counter

import pytest
from pydantic import ValidationError

from device.config import BrokerConfig
from protocol.reconnect import ReconnectSchedule, classify


def test_delays_are_full_jitter_under_a_doubling_capped_window() -> None:
    """Attempt n waits between 0 and min(cap, first * 2**n); over many kiosks the delays fill
    the whole window (mean near half of it), so kiosks that failed together do not retry
    together; the same seed replays the same schedule."""
    by_attempt: dict[int, list[float]] = {n: [] for n in range(8)}
    for kiosk in range(2000):
        schedule = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, rng=random.Random(kiosk))
        for n in range(8):
            by_attempt[n].append(schedule.after_failure())
    for n, delays in by_attempt.items():
        window = min(30.0, 2.0**n)
        assert all(0 <= d <= window for d in delays)
        assert 0.45 * window < sum(delays) / len(delays) < 0.55 * window, n
        assert max(delays) > 0.95 * window and min(delays) < 0.05 * window
    replay = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, rng=random.Random(3))
    again = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, rng=random.Random(3))
    assert [replay.after_failure() for _ in range(10)] == [again.after_failure() for _ in range(10)]


def test_a_broker_restart_is_met_evenly_over_the_spread_window() -> None:
    """10,000 kiosks lose a restarted broker at the same instant: their first reconnects fall
    evenly over the 30 s window (no second gets more than 1.25 times its share, about 330 a
    second), where a fixed back-off sends all 10,000 at the same moment. A connection resets the
    doubling; a loss starts it over too."""
    kiosks = 10_000
    seconds: Counter[int] = Counter()
    for kiosk in range(kiosks):
        schedule = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, rng=random.Random(kiosk))
        delay = schedule.after_loss()
        assert 0 <= delay <= 30
        seconds[int(delay)] += 1
    share = kiosks / 30
    assert len(seconds) == 30 and max(seconds.values()) < 1.25 * share and min(seconds.values()) > 0.75 * share

    schedule = ReconnectSchedule(first_s=1, cap_s=30, spread_s=4, rng=random.Random(0))
    for _ in range(6):
        schedule.after_failure()
    assert schedule.failures == 6
    schedule.connected()
    assert schedule.failures == 0 and schedule.after_failure() <= 1
    schedule.after_failure()
    assert schedule.after_loss() <= 4 and schedule.failures == 0
    narrow = ReconnectSchedule(first_s=1, cap_s=2, spread_s=30, rng=random.Random(0))
    assert all(narrow.after_loss() <= 2 for _ in range(100)), "the spread never exceeds the cap"


def test_the_cap_can_be_raised_while_refused_and_lowered_again() -> None:
    schedule = ReconnectSchedule(first_s=1, cap_s=4, spread_s=4, rng=random.Random(5))
    schedule.set_cap(300)
    slow = [schedule.after_failure() for _ in range(12)]
    assert max(slow) > 100 and all(d <= 300 for d in slow)
    schedule.set_cap(4)
    assert all(schedule.after_failure() <= 4 for _ in range(50))
    with pytest.raises(ValueError, match="first_s"):
        ReconnectSchedule(first_s=0, cap_s=1, spread_s=1)


def test_probes_only_when_the_failure_may_be_about_the_certificate_and_rarely() -> None:
    """A broker that is down (refused TCP) or busy (a timeout, an end of stream in the
    handshake) is never probed; a TLS failure or a connection closed before CONNACK is, at most
    once per interval."""
    now = [1000.0]
    schedule = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, probe_interval_s=600, clock=lambda: now[0])
    assert not schedule.may_probe("busy") and not schedule.may_probe("unreachable")
    assert schedule.may_probe("dropped")
    for step in range(59):
        now[0] += 10
        assert not schedule.may_probe("tls"), step
        assert not schedule.may_probe("dropped")
    now[0] += 10
    assert schedule.may_probe("tls")
    assert not schedule.may_probe("tls")


def test_failures_are_classified_from_what_the_attempt_raised() -> None:
    assert classify(TimeoutError("handshake")) == "busy"
    assert classify(ssl.SSLEOFError()) == "busy"
    assert classify(ConnectionResetError()) == "busy"
    assert classify(ConnectionRefusedError()) == "unreachable"
    assert classify(OSError("no route to host")) == "unreachable"
    assert classify(ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA]")) == "tls"
    assert classify(ssl.SSLCertVerificationError("hostname mismatch")) == "tls"
    assert classify(None) == "dropped"


def test_broker_config_bounds() -> None:
    """Bad input: a negative spread or a zero connect timeout is refused with the field named."""
    with pytest.raises(ValidationError, match="reconnect_spread_s"):
        BrokerConfig(reconnect_spread_s=-1)
    with pytest.raises(ValidationError, match="connect_timeout_s"):
        BrokerConfig(connect_timeout_s=0)
    assert BrokerConfig().reconnect_spread_s == 30 and BrokerConfig().tls_probe_interval_s == 600
