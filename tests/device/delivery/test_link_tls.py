"""The agent with its own identity against a real mutual-TLS mosquitto (the configuration
``provisioning.broker`` generates) and the stand-in fleet over real HTTPS, all on loopback.

The agent enrolls at start, then its events reach the fleet's ingest identity over TLS and its
pages are uploaded with signed requests; it cannot speak for another device; a revoked
certificate (at the broker or at the fleet) stops it reconnecting and uploading, and it says
"revoked" on its status and kiosk screen; a renewal swaps the certificate and reconnects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.agent import Agent
from device.capture.base import ScanRequest
from device.capture.fake import FakeSource
from device.config import AgentConfig
from protocol.messages import decode
from provisioning.ca import CertificateAuthority
from provisioning.tokens import issue_token
from tests.device.agent_harness import agent_config, enrolled_agent, wait_until
from tests.provisioning.conftest import Client, connect
from tests.provisioning.standin import Fleet, TlsBroker, standin_fleet, tls_mosquitto

DEVICE = "kiosk-test"
UNIT = "000.00.00.H01"
TIMEOUT = 20.0


@dataclass
class Site:
    ca: CertificateAuthority
    broker: TlsBroker
    fleet: Fleet
    ingest: Client
    tmp: Path

    def agent(self, source: FakeSource | None = None, **overrides: object) -> Agent:
        """An agent that enrolls with the stand-in fleet on start (a fresh token)."""
        text, token = issue_token(UNIT, ttl=dt.timedelta(hours=1))
        self.fleet.store.tokens[token.token_id] = token
        assert self.ca.cert_path is not None
        config = agent_config(self.tmp, 1, scanner={"type": "fake"}, fleet_url="http://127.0.0.1:9",
                              **enrolled_agent(self.tmp, self.fleet.url, self.ca.cert_path, text.get_secret_value()),
                              **overrides)
        return Agent(AgentConfig.model_validate(config), source=source or FakeSource(pages=2))

    def wait_offline(self) -> None:
        """Until the ingest has received the device's ``offline`` status."""
        def offline() -> bool:
            with self.ingest.got:
                got = list(self.ingest.messages)
            return any(t == f"sohoa/v1/{DEVICE}/status" and b'"offline"' in p for t, p in got)

        wait_until(offline, TIMEOUT, "an offline status at the ingest")

    def events(self, type_: str) -> list[object]:
        with self.ingest.got:
            got = list(self.ingest.messages)
        wanted = f"sohoa/v1/{DEVICE}/event"
        return [m for t, p in got if t == wanted and getattr(m := decode(t, p).message, "type", None) == type_]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert ca.cert_path is not None
    with tls_mosquitto(ca, tmp_path / "broker") as broker, \
            standin_fleet(tmp_path / "fleet", ca, broker_url=broker.url, poll_s=1) as fleet:
        ingest = connect(broker.port, "fleet.ingest", ca.cert_path, broker.ingest_cert, broker.ingest_key)
        try:
            assert ingest.subscribe("sohoa/v1/+/#") == [1]
            yield Site(ca, broker, fleet, ingest, tmp_path)
        finally:
            ingest.close()


def test_enrolled_agent_over_tls_signed_uploads_and_no_forgery(site: Site) -> None:
    """A fresh agent enrolls at start, connects with its certificate (the plain port in its
    config is not used: the enrollment answer names the TLS broker, and a bogus fleet_url
    yields to the answer's), and its events reach the ingest identity; scanned pages arrive at
    the fleet through signed uploads. Bad input: the agent's own connection publishes on
    kiosk-b's event topic: the broker denies it (logged) and the ingest never sees it."""
    with site.agent() as agent:
        assert agent.link.connected.wait(TIMEOUT), "the agent did not connect over TLS"
        assert agent.status()["identity"] == {"state": "enrolled", "reason": None}
        wait_until(lambda: len(site.events("agent_started")) >= 1, TIMEOUT, "agent_started at the ingest")
        job = agent.request_scan(ScanRequest())
        assert job.done.wait(TIMEOUT) and job.pages == 2
        wait_until(lambda: len(site.fleet.files) == 2, TIMEOUT, "two signed uploads")
        assert set(site.fleet.file_uploaders.values()) == {DEVICE}
        wait_until(lambda: len(site.events("page_captured")) == 2, TIMEOUT, "page events at the ingest")

        assert agent.link.publish("sohoa/v1/kiosk-b/event", b"forged") is not None
        assert agent.link.publish(f"sohoa/v1/{DEVICE}/telemetry", b"marker") is not None
        site.ingest.wait_message(f"sohoa/v1/{DEVICE}/telemetry", b"marker")  # sent after the forgery
        site.broker.mosquitto.wait_log(f"Denied PUBLISH from {DEVICE}")
        assert all(payload != b"forged" for _, payload in site.ingest.messages)
        assert not [t for t, _ in site.ingest.messages if "kiosk-b" in t]
    assert not site.fleet.refusals


def test_certificate_revoked_at_the_broker_stops_reconnecting(site: Site) -> None:
    """Fault: the fleet revokes the device, rewrites the CRL and SIGHUPs the broker; the broker
    restarts (the kiosk's connection drops). The agent's reconnect is refused, its TLS probe
    reads 'certificate revoked', and it gives up: no new connection attempts in the broker's log
    over several reconnect delays (1 s here), status and kiosk screen say "revoked"."""
    with site.agent(kiosk={"enabled": True, "port": 0}) as agent:
        assert agent.link.connected.wait(TIMEOUT)
        site.fleet.revoke(DEVICE)
        site.broker.publish_crl(site.fleet.service.crl_pem())
        site.broker.mosquitto.stop()
        site.broker.mosquitto.start()
        assert agent.link.gave_up.wait(TIMEOUT), "the agent kept retrying a revoked certificate"
        assert agent.link.refused == "revoked"
        assert agent.status()["identity"] == {"state": "revoked", "reason": "revoked"}
        assert agent.kiosk is not None
        screen = agent.kiosk.app.wait_for(lambda s: s["device_problem"] is not None, 5)
        assert screen["device_problem"]["code"] == "revoked" and "thu hồi" in screen["device_problem"]["vi"]
        log = site.broker.mosquitto
        attempts = log.log_text().count("New connection from")
        assert attempts >= 2  # the first connection and the refused reconnect (and the probe)
        assert not agent.link.connected.wait(3.5)
        assert log.log_text().count("New connection from") == attempts
        assert "certificate verify failed" in log.log_text()


def test_certificate_revoked_at_the_fleet_stops_uploads(site: Site) -> None:
    """Fault: the fleet revokes the device (its API answers 401 'revoked') before the broker
    has the new CRL. The uploader stops at the first refusal instead of retrying every second,
    the pages stay in the outbox, the MQTT link is closed too (after a last 'offline' status, so
    the fleet does not show it online forever) and the status says "revoked"."""
    with site.agent() as agent:
        assert agent.link.connected.wait(TIMEOUT)
        site.fleet.revoke(DEVICE)
        job = agent.request_scan(ScanRequest())
        assert job.done.wait(TIMEOUT) and job.pages == 2
        wait_until(lambda: agent.status()["identity"]["state"] == "revoked", TIMEOUT, "revoked status")
        assert agent.link.gave_up.is_set() and not agent.link.connected.is_set()
        # It said goodbye while it still could (the broker's CRL is not updated yet).
        site.wait_offline()
        refusals = len(site.fleet.refusals)
        assert refusals >= 1 and {r for _, r in site.fleet.refusals} == {"revoked"}
        wait_until(lambda: agent.outbox.depth().files == 2, 5, "pages kept")
        with agent.outbox.changed:
            agent.outbox.changed.wait(3)  # three upload retry delays
        assert len(site.fleet.refusals) == refusals and not site.fleet.files


def test_renewal_swaps_the_certificate_and_reconnects(site: Site) -> None:
    """The daily check finds the certificate within its renewal window (looked at 340 days
    ahead): a new key and certificate are fetched with a signed request, stored, and the MQTT
    link reconnects with them; events and signed uploads keep flowing under the new key. Bad
    input afterwards: the old key's certificate is superseded, the device signs with the new
    key only (the fleet verifies against the newest certificate)."""
    with site.agent() as agent:
        assert agent.link.connected.wait(TIMEOUT)
        assert agent.keeper is not None and agent.identity is not None
        old_serial = agent.identity.certificate().serial_number
        old_key = agent.identity.key_path.read_bytes()
        connects = agent.link.connects
        assert not agent.keeper.check_renewal()  # a fresh certificate is not renewed
        assert agent.keeper.check_renewal(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=340))
        assert agent.identity.certificate().serial_number != old_serial
        assert agent.identity.key_path.read_bytes() != old_key
        wait_until(lambda: agent.link.connects > connects and agent.link.connected.is_set(), TIMEOUT,
                   "a reconnect with the new certificate")
        job = agent.request_scan(ScanRequest())
        assert job.done.wait(TIMEOUT)
        wait_until(lambda: len(site.fleet.files) == 2, TIMEOUT, "uploads signed with the new key")
        wait_until(lambda: len(site.events("page_captured")) == 2, TIMEOUT, "events after the reconnect")
    assert not site.fleet.refusals


def test_a_broker_without_our_crl_is_not_taken_for_a_foreign_ca(site: Site) -> None:
    """Fault: the broker's CRL file is replaced by another CA's CRL (a copy from the wrong site);
    OpenSSL then finds no CRL for our CA and refuses every device with the alert 'unknown CA'.
    The device must not give up for good (every kiosk stranded until someone visits it): it
    says what the broker answers, retries (slowly), and connects once the right CRL is back."""
    other = CertificateAuthority.create(site.tmp / "other-ca", name="Another Site CA")
    with site.agent(broker={"port": 1, "reconnect_min_s": 1, "reconnect_max_s": 1, "refused_retry_max_s": 2}) as agent:
        assert agent.link.connected.wait(TIMEOUT)
        site.broker.publish_crl(other.crl([]))
        site.broker.mosquitto.stop()
        site.broker.mosquitto.start()
        wait_until(lambda: agent.status()["broker_refusal"] == "unknown_ca", TIMEOUT, "the refusal on the status")
        assert "certificate verify failed" in site.broker.mosquitto.log_text()
        assert not agent.link.gave_up.is_set() and agent.link.refused is None
        assert agent.status()["identity"]["state"] == "enrolled"
        site.broker.publish_crl(site.fleet.service.crl_pem())
        assert agent.link.connected.wait(TIMEOUT), "the agent did not come back once the CRL was right"
        wait_until(lambda: agent.status()["broker_refusal"] is None, TIMEOUT, "the refusal forgotten")


def test_a_lapsed_crl_at_the_broker_is_not_taken_for_an_expired_device(site: Site) -> None:
    """Fault: the fleet's CRL timer failed and the broker's CRL lapsed; the broker then refuses
    every device with the alert 'certificate expired'. This device's own certificate is valid,
    so it must not give up (a fleet-wide outage until someone visits every kiosk): it keeps
    retrying and connects once a fresh CRL is published."""
    with site.agent(broker={"port": 1, "reconnect_min_s": 1, "reconnect_max_s": 1, "refused_retry_max_s": 2}) as agent:
        assert agent.link.connected.wait(TIMEOUT)
        lapsed = site.ca.crl([], now=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
        site.broker.publish_crl(lapsed)
        site.broker.mosquitto.stop()
        site.broker.mosquitto.start()
        log = site.broker.mosquitto
        wait_until(lambda: log.log_text().count("certificate verify failed") >= 3, TIMEOUT, "refused reconnects")
        assert not agent.link.gave_up.is_set() and agent.link.refused is None
        assert agent.status()["identity"]["state"] == "enrolled"
        wait_until(lambda: agent.status()["broker_refusal"] == "expired", TIMEOUT, "the refusal on the status")
        site.broker.publish_crl(site.fleet.service.crl_pem())
        assert agent.link.connected.wait(TIMEOUT), "the agent did not come back once the CRL was fresh"
