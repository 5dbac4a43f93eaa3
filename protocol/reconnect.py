"""When an MQTT client tries the broker again, and when a kiosk may ask the broker why it failed.

Both sides use it: the kiosk's link (``device/delivery/link.py``) and the fleet's own clients
(the ingest workers, the operations publisher), through :class:`PahoReconnects`, which sets each
delay on the paho client.

A broker restart drops every client at the same instant. Reconnecting on a fixed doubling
schedule (1, 2, 4 ... s) makes them all knock together again and again: mosquitto does every TLS
handshake on its one thread, handshakes that wait too long are abandoned by the kiosk and
started over, and the storm feeds itself. So:

- The first reconnect after a lost connection comes at a random moment in a window
  (``spread_s``): 10,000 kiosks over 30 s is about 330 handshakes a second instead of 10,000 at
  once.
- After a failed attempt, the next comes after a "full jitter" delay: uniform between zero and
  ``min(cap_s, first_s * 2**failures)`` (exponential, capped, and spread over the whole range,
  so kiosks that failed together do not retry together).
- A connection that failed may be asked why with a second TLS connection (a probe: revoked?
  expired?), but not when the failure said nothing about our certificate (the broker is down,
  or busy: a timeout, a reset, an end of stream in the handshake), and at most once per
  ``probe_interval_s``: a probe is one more handshake for a broker that may be short of them.

The schedule takes its random numbers and its clock from outside, so a test can replay it:

>>> import random
>>> schedule = ReconnectSchedule(first_s=1, cap_s=30, spread_s=30, rng=random.Random(7))
>>> [round(schedule.after_failure(), 2) for _ in range(6)]
[0.32, 0.3, 2.6, 0.58, 8.57, 10.97]
>>> round(schedule.after_loss(), 2) <= 30
True
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from typing import Literal, Protocol, cast

Failure = Literal["unreachable", "busy", "tls", "dropped"]
"""Why a connection attempt failed, as far as the device can tell without asking:

- ``unreachable``: no TCP connection (broker down, network away): a probe would learn nothing.
- ``busy``: the broker did not answer in time, or closed the connection in the middle of the
  handshake: it is overloaded; a probe would only add to its load.
- ``tls``: the TLS handshake failed with an alert or a verification error: a probe says which.
- ``dropped``: the handshake went through but the connection closed before the broker accepted
  the MQTT session; with TLS 1.3 this is how a refused client certificate looks (the broker's
  verdict arrives after the handshake), so a probe says why.
"""

WORTH_A_PROBE: frozenset[Failure] = frozenset({"tls", "dropped"})


def classify(exc: BaseException | None) -> Failure:
    """What an exception raised by a connection attempt says (None: the connection closed after
    the handshake, before the broker's CONNACK).

    >>> classify(TimeoutError()), classify(ConnectionRefusedError()), classify(None)
    ('busy', 'unreachable', 'dropped')
    """
    if exc is None:
        return "dropped"
    if isinstance(exc, (TimeoutError, ssl.SSLEOFError, ConnectionResetError, ConnectionAbortedError,
                        BrokenPipeError)):
        return "busy"
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return "tls"
    return "unreachable"


class ReconnectSchedule:
    """Delays between connection attempts (full jitter, capped exponential) and the probe gate.

    ``first_s``: the scale of the first retry after a failure; ``cap_s``: the longest delay;
    ``spread_s``: the window over which the first reconnect after a lost connection is spread;
    ``probe_interval_s``: the shortest time between two probes; ``rng`` and ``clock`` (monotonic
    seconds) are injectable for replayable tests.

    >>> schedule = ReconnectSchedule(first_s=1, cap_s=8, spread_s=4, rng=random.Random(1))
    >>> schedule.may_probe("busy"), schedule.may_probe("tls"), schedule.may_probe("tls")
    (False, True, False)
    """

    def __init__(self, *, first_s: float, cap_s: float, spread_s: float, probe_interval_s: float = 600.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < first_s <= cap_s or spread_s < 0 or probe_interval_s < 0:
            raise ValueError("need 0 < first_s <= cap_s, spread_s >= 0 and probe_interval_s >= 0")
        self.first_s = first_s
        self.cap_s = cap_s
        self.spread_s = spread_s
        self.probe_interval_s = probe_interval_s
        self._rng = rng or random.Random()
        self._clock = clock
        self.failures = 0
        """Failed attempts since the last successful connection."""
        self._last_probe: float | None = None

    def set_cap(self, cap_s: float) -> None:
        """A new longest delay (the link slows down while the broker refuses it for what may be the
        broker's own fault, and speeds up again once accepted)."""
        self.cap_s = max(cap_s, self.first_s)

    def connected(self) -> None:
        """The broker accepted the session: the next failure starts the doubling over."""
        self.failures = 0

    def after_loss(self) -> float:
        """Seconds before the first reconnect after an established connection was lost: uniform
        over the spread window (every kiosk lost the broker at the same moment if it restarted)."""
        self.failures = 0
        return self._rng.uniform(0, min(self.spread_s, self.cap_s))

    def after_failure(self) -> float:
        """Seconds before the next attempt after a failed one: full jitter over a window that
        doubles per failure up to the cap."""
        window = min(self.cap_s, self.first_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return self._rng.uniform(0, window)

    def may_probe(self, failure: Failure) -> bool:
        """Whether this failure may be followed by a TLS probe now; if so, the probe is counted."""
        if failure not in WORTH_A_PROBE:
            return False
        now = self._clock()
        if self._last_probe is not None and now - self._last_probe < self.probe_interval_s:
            return False
        self._last_probe = now
        return True


class DelaySetter(Protocol):
    """What :class:`PahoReconnects` needs of a paho ``Client`` (protocol/ does not import paho)."""

    def reconnect_delay_set(self, min_delay: int = 1, max_delay: int = 120) -> None: ...


class PahoReconnects:
    """Makes a paho client wait the schedule's delays instead of its own doubling, which has no
    jitter: clients that lost a restarted broker together would knock together at 1, 2, 4... s.

    Call :meth:`connected` when the broker accepts the session, :meth:`lost` when an established
    connection drops and :meth:`failed` when an attempt fails (``on_connect_fail``, or a close
    before the session was accepted). paho calls these callbacks just before it waits for its
    next attempt, and reads the delay set here for that wait.

    >>> class Client:
    ...     def reconnect_delay_set(self, min_delay: int = 1, max_delay: int = 120) -> None:
    ...         self.delay = (min_delay, max_delay)
    >>> client = Client()
    >>> reconnects = PahoReconnects(client, ReconnectSchedule(first_s=1, cap_s=8, spread_s=4,
    ...                                                       rng=random.Random(7)))
    >>> first = reconnects.lost()
    >>> client.delay == (first, first) and 0 <= first <= 4
    True
    """

    def __init__(self, client: DelaySetter, schedule: ReconnectSchedule) -> None:
        self.client = client
        self.schedule = schedule
        self.delays: list[float] = []
        """The delays set so far, in order (the last few hundred)."""

    def connected(self) -> None:
        self.schedule.connected()

    def lost(self) -> float:
        """An established connection dropped: the next attempt comes somewhere in the spread window."""
        delay = self.schedule.after_loss()
        self.next_attempt_in(delay)
        return delay

    def failed(self) -> float:
        """An attempt failed: the next comes after a full-jitter delay under the doubling cap."""
        delay = self.schedule.after_failure()
        self.next_attempt_in(delay)
        return delay

    def next_attempt_in(self, delay: float) -> None:
        """Make paho's next reconnect wait exactly ``delay`` seconds: with equal bounds its
        doubling has nothing to double. paho annotates the bounds as int but adds them to its
        clock as they are; a float keeps the jitter finer than a second."""
        self.delays = [*self.delays[-255:], delay]
        self.client.reconnect_delay_set(min_delay=cast(int, delay), max_delay=cast(int, delay))
