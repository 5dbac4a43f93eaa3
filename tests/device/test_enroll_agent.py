"""The agent enrolling itself at start: as a real process through ``agent_harness`` (what the
end-to-end tests use), refused by the fleet (shown on the status, kiosk and light, never
retried), and its configuration sections."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from device.agent import Agent
from device.capture.base import ScanRequest
from device.capture.fake import FakeSource
from device.config import AgentConfig
from protocol.configfile import ConfigError, load_config
from provisioning.ca import CertificateAuthority
from provisioning.tokens import issue_token
from tests.device.agent_harness import AgentProcess, agent_config, enrolled_agent, wait_until
from tests.provisioning.conftest import connect
from tests.provisioning.standin import standin_fleet, tls_mosquitto

UNIT = "000.00.00.H01"
DEVICE = "kiosk-test"


def test_agent_process_enrolls_and_reports_over_tls(tmp_path: Path) -> None:
    """``sohoa-device run`` with an enrollment section and no certificate yet: it enrolls
    through a pending approval (202, polled every second), connects to the TLS broker named in
    the answer and says ``online`` to the ingest identity. Fault looked for: the token or the
    private key in the agent's log; the token file left behind."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert ca.cert_path is not None
    text, token = issue_token(UNIT, ttl=dt.timedelta(hours=1), require_approval=True)
    secret = text.get_secret_value()
    with tls_mosquitto(ca, tmp_path / "broker") as broker, \
            standin_fleet(tmp_path / "fleet", ca, broker_url=broker.url, poll_s=1) as fleet:
        fleet.store.tokens[token.token_id] = token
        ingest = connect(broker.port, "fleet.ingest", ca.cert_path, broker.ingest_cert, broker.ingest_key)
        config = agent_config(tmp_path, 1, scanner={"type": "fake"},
                              **enrolled_agent(tmp_path, fleet.url, ca.cert_path, secret))
        agent = AgentProcess(config, tmp_path)
        try:
            assert ingest.subscribe(f"sohoa/v1/{DEVICE}/status") == [1]
            agent.start()
            wait_until(lambda: agent.status()["identity"]["state"] == "pending", 20, "a pending enrollment")
            assert not agent.status()["connected"]
            fleet.service.decide(DEVICE, accept=True, by="admin-1")
            wait_until(lambda: agent.status()["connected"], 20, "the TLS connection after approval")
            assert agent.status()["identity"] == {"state": "enrolled", "reason": None}
            wait_until(lambda: any(b'"online"' in p for _, p in ingest.messages), 10, "online at the ingest")
            assert agent.terminate() == 0
        finally:
            agent.close()
            ingest.close()
    logs = agent.logs()
    assert "enrolled kiosk-test" in logs
    assert secret not in logs and "PRIVATE KEY" not in logs
    assert not (tmp_path / "secrets" / "enrollment.token").exists()
    assert set(fleet.answers) == {202, 200} and fleet.answers[-1] == 200


def test_refused_enrollment_shows_on_status_kiosk_and_light(tmp_path: Path, mock_factory: Any) -> None:
    """Bad input: a token for another unit. The agent asks once, then stays up (scans are kept
    locally) without retrying; its status says ``refused`` with the fleet's reason, the kiosk
    screen says so in Vietnamese and English, and the light turns to attention."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert ca.cert_path is not None
    text, token = issue_token("00002", ttl=dt.timedelta(hours=1))
    with standin_fleet(tmp_path / "fleet", ca) as fleet:
        fleet.store.tokens[token.token_id] = token
        config = agent_config(tmp_path, 1, scanner={"type": "fake"}, kiosk={"enabled": True, "port": 0},
                              buttons={"enabled": True},
                              **enrolled_agent(tmp_path, fleet.url, ca.cert_path, text.get_secret_value()))
        with Agent(AgentConfig.model_validate(config), source=FakeSource(pages=1), pin_factory=mock_factory) as agent:
            wait_until(lambda: agent.status()["identity"]["state"] == "refused", 10, "refused")
            assert agent.status()["identity"]["reason"] == "wrong_unit"
            buttons, kiosk = agent.buttons, agent.kiosk
            assert kiosk is not None and buttons is not None
            screen = kiosk.app.wait_for(lambda s: s["device_problem"] is not None, 5)
            assert screen["device_problem"]["code"] == "refused" and "liên hệ quản trị viên" in screen[
                "device_problem"]["vi"]
            wait_until(lambda: "refused" in buttons.panel.attention, 5, "the light's attention")
            assert not agent.link.connected.wait(2)
            assert fleet.answers == [403]  # asked once, no retry loop
    assert (tmp_path / "secrets" / "enrollment.token").exists()


def test_enrolled_agent_uploads_to_the_fleet_it_enrolled_with(tmp_path: Path) -> None:
    """An agent whose own config has no ``fleet_url`` (null) enrolls, then uploads its pages,
    signed, to the fleet the enrollment answer named. Fault looked for: the files staying in the
    outbox for lack of a configured URL. ``upload.enabled: false`` is the one way to keep them:
    that agent has no uploader even though it is enrolled."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert ca.cert_path is not None
    text, token = issue_token(UNIT, ttl=dt.timedelta(hours=1))
    with standin_fleet(tmp_path / "fleet", ca) as fleet:
        fleet.store.tokens[token.token_id] = token
        values = agent_config(tmp_path, 1, scanner={"type": "fake"},
                              **enrolled_agent(tmp_path, fleet.url, ca.cert_path, text.get_secret_value()))
        assert values["fleet_url"] is None
        config = AgentConfig.model_validate(values)
        with Agent(config, source=FakeSource(pages=2)) as agent:
            wait_until(lambda: agent.status()["identity"]["state"] == "enrolled", 20, "enrolled")
            agent.request_scan(ScanRequest())
            wait_until(lambda: len(fleet.files) == 2, 30, "both pages at the fleet")
            assert set(fleet.file_uploaders.values()) == {DEVICE}
            wait_until(lambda: agent.status()["outbox"]["files"] == 0, 10, "the outbox to let go of the files")
        kept = config.model_copy(update={"upload": config.upload.model_copy(update={"enabled": False})})
        idle = Agent(kept, source=FakeSource(pages=1))  # not started: only what it was built with
        try:
            assert idle.uploader is None
        finally:
            idle.close()


@pytest.mark.parametrize(("section", "message"), [
    ({"enrollment": {"fleet_url": "https://f", "token_file": "/t", "ca_file": "/c"}}, "needs an identity"),
    ({"identity": {}, "enrollment": {"fleet_url": "http://f", "token_file": "/t", "ca_file": "/c"}}, "https://"),
    ({"identity": {}, "enrollment": {"fleet_url": "https://f", "token_file": "/t"}}, "exactly one of"),
    ({"identity": {}, "enrollment": {"fleet_url": "https://f", "token_file": "/t", "ca_file": "/c",
                                     "ca_pin": "sha256:" + "0" * 64}}, "exactly one of"),
    ({"identity": {}, "enrollment": {"fleet_url": "https://f", "token_file": "/t", "ca_pin": "abc"}}, "ca_pin"),
    ({"identity": {"dirr": "/x"}}, "dirr"),
    ({"unit": "Xã An Bình", "identity": {}, "enrollment": {"fleet_url": "https://f", "token_file": "/t",
                                                         "ca_file": "/c"}}, "enrollment.unit_code"),
])
def test_identity_config_errors(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    """Bad input: enrollment without identity, a plain-http fleet (the token would travel in the
    clear), no CA or two CAs, a malformed pin, a mistyped key: each a file:line error."""
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump({"device_id": DEVICE, "unit": UNIT, **section}))
    with pytest.raises(ConfigError) as exc:
        load_config(AgentConfig, path)
    assert message in str(exc.value) and "device.yaml" in str(exc.value)


def test_no_identity_keeps_the_old_behaviour() -> None:
    """An agent config without the new sections validates as before (plain MQTT, unsigned HTTP)."""
    config = AgentConfig(device_id=DEVICE, unit=UNIT)
    assert config.identity is None and config.enrollment is None
