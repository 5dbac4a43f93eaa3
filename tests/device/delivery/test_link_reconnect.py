"""The link's jittered reconnects against a real mutual-TLS mosquitto (one broker for the module):
a broker killed with SIGKILL and restarted gets the kiosk back after the delay drawn from the
spread window, without a TLS probe (a broker that was down says nothing about our certificate);
a broker too busy to finish a handshake (stopped with SIGSTOP) is retried with growing jittered
delays and never probed, and the kiosk connects once it answers again."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config import BrokerConfig
from device.delivery.link import MqttLink
from provisioning.ca import CertificateAuthority
from provisioning.identity import DeviceIdentity
from tests.device.agent_harness import wait_until
from tests.provisioning.standin import TlsBroker, tls_mosquitto

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CertificateAuthority, TlsBroker, Path]]:
    tmp = tmp_path_factory.mktemp("reconnect")
    ca = CertificateAuthority.create(tmp / "ca")
    with tls_mosquitto(ca, tmp / "broker") as broker:
        yield ca, broker, tmp


def _kiosk(site: tuple[CertificateAuthority, TlsBroker, Path], device_id: str, **broker: float) -> MqttLink:
    ca, tls, tmp = site
    identity = DeviceIdentity(tmp / device_id, device_id)
    issued = ca.sign_device(identity.csr(), device_id)
    identity.store(issued.pem, ca.certificate_pem, broker_url=tls.url)
    return MqttLink(device_id, BrokerConfig.model_validate(broker), "0.1.0", on_message=lambda t, p: None,
                    identity=identity, rng=random.Random(42))


def test_a_killed_broker_gets_the_kiosk_back_after_its_jittered_delay(
        site: tuple[CertificateAuthority, TlsBroker, Path]) -> None:
    _, tls, _ = site
    with _kiosk(site, "kiosk-restart", reconnect_min_s=0.5, reconnect_max_s=3, reconnect_spread_s=3) as link:
        link.start()
        assert link.connected.wait(TIMEOUT)
        tls.mosquitto.kill9()
        lost = time.monotonic()
        wait_until(lambda: not link.connected.is_set(), TIMEOUT, "the link to notice the loss")
        tls.mosquitto.start()
        assert link.connected.wait(TIMEOUT), "the kiosk did not come back after the broker's restart"
        back = time.monotonic() - lost
        assert link.connects == 2
        first = link.delays[0]
        assert 0 <= first <= 3, "the first reconnect is drawn from the spread window"
        assert back >= first, "the kiosk reconnected before its drawn delay"
        replay = random.Random(42)
        assert first == replay.uniform(0, 3), "the delay is the seeded schedule's"
        # Refused while the broker was down (or timed out while it started, on a loaded machine):
        # neither says anything about the certificate, so no probe.
        assert link.probes == 0 and set(link.failures) <= {"unreachable", "busy"}, link.failures


def test_a_busy_broker_is_retried_with_jitter_and_never_probed(
        site: tuple[CertificateAuthority, TlsBroker, Path]) -> None:
    """SIGSTOP freezes the broker: the kernel still accepts TCP connections, but no handshake
    finishes, as with a broker buried in handshakes. Every attempt times out ("busy"); the
    delays between attempts grow under the doubling window; no probe adds a handshake; the kiosk
    connects once the broker runs again."""
    _, tls, _ = site
    proc = tls.mosquitto.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        with _kiosk(site, "kiosk-busy", reconnect_min_s=0.2, reconnect_max_s=0.8, connect_timeout_s=0.5,
                    tls_probe_interval_s=0) as link:
            link.start()
            wait_until(lambda: link.failures["busy"] >= 4, TIMEOUT, "four timed-out attempts")
            assert link.probes == 0, "a busy broker was probed"
            assert all(0 <= d <= 0.8 for d in link.delays) and len(set(link.delays)) == len(link.delays)
            proc.send_signal(signal.SIGCONT)
            assert link.connected.wait(TIMEOUT), "the kiosk did not connect once the broker answered"
            assert link.probes == 0
    finally:
        proc.send_signal(signal.SIGCONT)
