"""Issue 6's "must be shown", end to end on real services: mosquitto with the mutual-TLS
configuration ``python -m provisioning init`` writes, the fleet as a real HTTPS process
(``python -m fleet serve``) whose ingest connects as ``fleet.ingest``, and two device agents
(``python -m device run``) that enroll over HTTPS with one-time tokens on their first start.

Shown, in one run (each step says the fault or bad input it tries):
- device A's certificate cannot publish on or subscribe to device B's topics: the broker drops
  the publishes (PUBACK 135), delivers nothing of B's to A, the fleet's view of B is unchanged,
  and the broker's log holds each attempt (:func:`provisioning.broker.scan_log`), which the fleet
  records in its audit log (``broker.publish_denied`` / ``broker.subscribe_denied``);
- a reused, an expired and a wrong-unit token are refused (403 with the reason, audited);
- revoking A through the API: the fleet rewrites the CRL and SIGHUPs the broker, which then
  refuses A's TLS handshake; the API answers A's signed upload 401 ``revoked``; A's agent (also
  after a restart) says "revoked" on its status and kiosk screen and stops trying (no new
  connection in the broker's log over several reconnect delays); the fleet shows A "revoked";
- an unauthenticated call (401), a unit admin asking for another unit's device and file (404)
  and a viewer's write (403) are refused, and each is in ``GET /api/v1/audit``;
- no token, private key or password appears in the fleet's, the agents' or the broker's log,
  in telemetry or in any API response (other than the one answer that hands out a token).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.db import make_engine, session_factory
from protocol.messages import Status, encode
from protocol.topics import Channel, topic
from provisioning.broker import AclViolation, scan_log
from provisioning.identity import DeviceIdentity, probe_tls
from provisioning.tokens import parse_token
from tests.authn import login_as, make_user
from tests.device.agent_harness import AgentProcess, agent_config, enrolled_agent, wait_until
from tests.devices import TestDevice, enroll_request
from tests.e2e.fleet_harness import FleetProcess
from tests.fleet.messages import fault
from tests.provisioning.conftest import Client, connect
from tests.services import ConfiguredMosquitto, provisioned_mosquitto

pytestmark = pytest.mark.timeout(150)

UNIT = "00001"
OTHER_UNIT = "00002"
A, B = "kiosk-a", "kiosk-b"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Path, ConfiguredMosquitto, Path]]:
    """(pki dir, mosquitto running the configuration `provisioning init` wrote, its pid file); the
    fleet's operations publisher has its own identity."""
    with provisioned_mosquitto(tmp_path, "fleet.ingest", "fleet.ops") as running:
        yield running


class Responses:
    """Every API response a client of this test received (their bodies are searched for secrets)."""

    def __init__(self) -> None:
        self.seen: list[httpx.Response] = []

    def keep(self, response: httpx.Response) -> None:
        response.read()
        self.seen.append(response)

    def client(self, fleet: FleetProcess) -> httpx.Client:
        trust = ssl.create_default_context(cafile=str(fleet.ca_file))
        return httpx.Client(base_url=fleet.url, timeout=10, verify=trust, event_hooks={"response": [self.keep]})


def _agent(tmp: Path, fleet: FleetProcess, broker_port: int, device_id: str, token: str) -> AgentProcess:
    config = agent_config(tmp, broker_port, device_id=device_id, unit=UNIT, fleet_url=fleet.url,
                          scanner={"type": "fake", "pages": 1, "width": 200, "height": 280},
                          kiosk={"enabled": True, "port": 0}, telemetry={"interval_s": 1},
                          upload={"retry_min_s": 0.2, "retry_max_s": 1.0},
                          **enrolled_agent(tmp, fleet.url, fleet.ca_file, token))
    return AgentProcess(config, tmp)


def _online(fleet: FleetProcess, device_id: str) -> bool:
    return (fleet.device(device_id) or {}).get("online") is True


def _device(http: httpx.Client, device_id: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/devices/{device_id}")
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def _key_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: any of them in a log would leak the key."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]


def _connections(mosquitto: ConfiguredMosquitto) -> int:
    return mosquitto.log_text().count("New connection from")


def test_no_device_speaks_for_another_and_every_refusal_is_seen(
        tmp_path: Path, broker: tuple[Path, ConfiguredMosquitto, Path]) -> None:
    pki, mosquitto, pid_file = broker
    responses = Responses()
    fleet = FleetProcess(tmp_path / "fleet", mosquitto.port, pki=pki, broker_pid_file=pid_file)
    fleet.http.event_hooks = {"response": [responses.keep]}
    agents: list[AgentProcess] = []
    try:
        fleet.start()  # the ingest is connected over TLS as fleet.ingest once this returns
        assert "fleet.ingest" in mosquitto.log_text()
        sessions = session_factory(make_engine(fleet.db_url))
        passwords = {name: f"pw-{name}-{os.urandom(6).hex()}" for name in ("unit-admin-2", "viewer-1")}
        make_user(sessions, name="unit-admin-2", password=passwords["unit-admin-2"], role="unit_admin",
                  unit_code=OTHER_UNIT)
        make_user(sessions, name="viewer-1", password=passwords["viewer-1"], role="viewer")
        passwords["admin"] = (fleet.workdir / "initial-admin-password").read_text().strip()

        tokens = {A: fleet.enrollment_token(UNIT), B: fleet.enrollment_token(UNIT)}
        a = _agent(tmp_path / A, fleet, mosquitto.port, A, tokens[A])
        b = _agent(tmp_path / B, fleet, mosquitto.port, B, tokens[B])
        agents += [a, b]
        a.start()
        b.start()
        wait_until(lambda: _online(fleet, A) and _online(fleet, B), 30, "both agents enrolled and online")
        ident_a = DeviceIdentity(tmp_path / A / "identity", A)
        assert ident_a.is_enrolled() and not (tmp_path / A / "secrets" / "enrollment.token").exists()

        # B scans: its page and file reach the fleet (signed upload, mutual-TLS events)
        scanned = b.scan(max_pages=1)
        assert scanned["outcome"] == "complete", scanned
        wait_until(lambda: any(p["file_available"] for p in fleet.get("/api/v1/pages", device_id=B)), 20,
                   "B's page with its file")
        b_sha = fleet.get("/api/v1/pages", device_id=B)[0]["sha256"]

        # --- 1. bad tokens: reused, expired, wrong unit -----------------------------------------
        with responses.client(fleet) as anon:
            def enroll(device_id: str, token: str, unit: str = UNIT) -> tuple[int, str]:
                ident = DeviceIdentity(tmp_path / "intruders" / device_id, device_id)
                r = anon.post("/api/v1/enroll", content=enroll_request(ident, token, unit),
                              headers={"Content-Type": "application/json"})
                return r.status_code, r.json().get("detail", r.json().get("state"))

            assert enroll("kiosk-c", tokens[A]) == (403, "used")  # A's token, spent
            short = fleet.enrollment_token(UNIT, ttl_hours=1 / 3600)  # one second
            tokens["short"] = short
            short_id = parse_token(short)[0]
            wait_until(lambda: [t["state"] for t in fleet.get("/api/v1/enrollment-tokens")
                                if t["token_id"] == short_id] == ["expired"], 10, "the short token to expire")
            assert enroll("kiosk-d", short) == (403, "expired")
            tokens["unit"] = fleet.enrollment_token(UNIT)
            assert enroll("kiosk-e", tokens["unit"], OTHER_UNIT) == (403, "wrong_unit")
        refusals = [e["detail"] for e in fleet.get("/api/v1/audit", action="enrollment.refused", limit=50)]
        for reason in ("used", "expired", "wrong_unit"):
            assert any(f"reason={reason}" in (d or "") for d in refusals), (reason, refusals)

        # --- 2. A's certificate against B's topics --------------------------------------------
        b_before = _device(fleet.http, B)
        assert a.terminate() == 0  # the broker forces client id = CN: A's own agent would be kicked
        files = ident_a.tls_files()
        forger: Client = connect(mosquitto.port, A, files.ca_certs, files.certfile, files.keyfile)
        try:
            forged_status = Status(device_id=B, state="offline", agent_version="6.6.6", unit="99999")
            assert forger.publish(topic(B, Channel.STATUS), encode(forged_status)) == 135
            forged_event = fault(B)
            assert forger.publish(topic(B, Channel.EVENT), encode(forged_event)) == 135
            forger.subscribe(topic(B, Channel.CMD))  # mosquitto grants it, and delivers nothing
            forger.subscribe(f"sohoa/v1/{B}/#")
            own = fault(A)
            assert forger.publish(topic(A, Channel.EVENT), encode(own)) == 0  # its own tree: accepted
            wait_until(lambda: any(e["id"] == own.id for e in fleet.events(A)), 15, "A's own event in the fleet")
            command = fleet.http.post(f"/api/v1/devices/{B}/commands",
                                      json={"name": "test_scan", "args": {"max_pages": 1}})
            assert command.status_code == 201, command.text
            wait_until(lambda: fleet.get(f"/api/v1/commands/{command.json()['id']}")["state"] == "succeeded", 20,
                       "B to run the fleet's command")
        finally:
            forger.close()
        assert not [t for t, _ in forger.messages if B in t], forger.messages  # nothing of B's reached A
        b_after = _device(fleet.http, B)
        assert (b_after["unit"], b_after["online"], b_after["version"]) == (
            b_before["unit"], True, b_before["version"]) == (UNIT, True, b_before["version"])
        assert forged_event.id not in {e["id"] for e in fleet.events(B)}
        violations = scan_log(mosquitto.log_text().splitlines())
        for seen in (AclViolation(A, "publish", topic(B, Channel.STATUS)),
                     AclViolation(A, "publish", topic(B, Channel.EVENT)),
                     AclViolation(A, "subscribe", topic(B, Channel.CMD)),
                     AclViolation(A, "subscribe", f"sohoa/v1/{B}/#")):
            assert seen in violations, (seen, violations)
        assert not [v for v in violations if v.client == B]
        wait_until(lambda: {(e["action"], e["target"]) for e in fleet.get("/api/v1/audit", actor=A, action="broker.*")}
                   >= {("broker.publish_denied", topic(B, Channel.STATUS)),
                       ("broker.subscribe_denied", f"sohoa/v1/{B}/#")}, 10, "the fleet to audit A's attempts")
        a.start()
        wait_until(lambda: _online(fleet, A), 20, "A back online")

        # --- 3. users outside their rights ------------------------------------------------------
        with responses.client(fleet) as anon, responses.client(fleet) as unit_admin, \
                responses.client(fleet) as viewer:
            assert anon.get("/api/v1/devices").status_code == 401
            login_as(unit_admin, "unit-admin-2", passwords["unit-admin-2"])
            assert unit_admin.get(f"/api/v1/devices/{B}").status_code == 404
            assert unit_admin.get(f"/api/v1/files/{b_sha}").status_code == 404
            login_as(viewer, "viewer-1", passwords["viewer-1"])
            assert viewer.post(f"/api/v1/devices/{B}/revoke").status_code == 403
            assert _device(viewer, B)["status"] != "revoked"
        audit = fleet.get("/api/v1/audit", limit=1000)
        assert any(e["outcome"] == "401" and e["actor"] is None and e["action"] == "GET /api/v1/devices"
                   for e in audit)
        for path in (f"/api/v1/devices/{B}", f"/api/v1/files/{b_sha}"):
            assert any(e["actor"] == "unit-admin-2" and e["target"] == path and e["outcome"] == "404"
                       for e in audit), path
        assert any(e["actor"] == "viewer-1" and e["target"] == f"/api/v1/devices/{B}/revoke"
                   and e["outcome"] == "403" for e in audit)

        # --- 4. revoke A -----------------------------------------------------------------------
        reloads = mosquitto.log_text().count("Reloading config")
        revoked = fleet.http.post(f"/api/v1/devices/{A}/revoke")
        assert revoked.status_code == 200, revoked.text
        mosquitto.wait_log("Reloading config", reloads + 1)  # the fleet's SIGHUP after rewriting the CRL
        wait_until(lambda: probe_tls("127.0.0.1", mosquitto.port, ident_a.ssl_context()) == "revoked", 10,
                   "the broker to refuse A's certificate")
        page = b"%PDF-1.4 a page A tries to upload after its revocation"
        with responses.client(fleet) as device_http:
            upload = TestDevice(ident_a).put_file(device_http, page)
        assert (upload.status_code, upload.json()["detail"]) == (401, "revoked")
        assert a.scan(max_pages=1)["outcome"] == "complete"  # its upload is refused: the agent learns of it
        wait_until(lambda: a.status()["identity"]["state"] == "revoked", 20, "A's agent to say revoked")
        assert a.terminate() == 0
        a.start()  # a rebooted kiosk: its reconnect is refused by the broker itself
        wait_until(lambda: a.status()["identity"] == {"state": "revoked", "reason": "revoked"}, 20,
                   "A's restarted agent to say revoked")
        kiosk_state = f"{a.kiosk_url()}/api/state"
        wait_until(lambda: (httpx.get(kiosk_state, timeout=5).json()["device_problem"] or {}).get("code") == "revoked",
                   10, "A's kiosk screen to say revoked")
        assert "thu hồi" in httpx.get(kiosk_state, timeout=5).json()["device_problem"]["vi"]
        attempts = _connections(mosquitto)
        deadline = time.monotonic() + 3.5  # several of A's reconnect delays (1 s): none may come
        while time.monotonic() < deadline:
            assert _connections(mosquitto) == attempts, "A's agent kept retrying a revoked certificate"
            time.sleep(0.1)
        assert _device(fleet.http, A)["status"] == "revoked"
        assert _device(fleet.http, B)["status"] != "revoked" and _device(fleet.http, B)["online"] is True
        assert any(e["action"] == "device.refused" and e["detail"] == "reason=revoked" and e["target"] == A
                   for e in fleet.get("/api/v1/audit", limit=1000))

        # --- 5. no secret anywhere it should not be -------------------------------------------
        for d in (A, B):
            responses.keep(fleet.http.get(f"/api/v1/devices/{d}"))  # its telemetry
            fleet.events(d)
        secrets: dict[str, str] = {f"token {k}": v for k, v in tokens.items()}
        secrets |= {f"password {k}": v for k, v in passwords.items()}
        for device_id in (A, B):
            for n, line in enumerate(_key_lines(DeviceIdentity(tmp_path / device_id / "identity", device_id).key_path)):
                secrets[f"{device_id} key line {n}"] = line
        secrets["ingest key"] = _key_lines(pki / "ingest" / "fleet.ingest.key")[1]
        secrets["CA key"] = _key_lines(pki / "ca" / "ca.key")[1]
        texts = {"fleet log": fleet.logs(), "agent A log": a.logs(), "agent B log": b.logs(),
                 "broker log": mosquitto.log_text()}
        handed_out = [r for r in responses.seen if r.request.url.path == "/api/v1/enrollment-tokens"
                      and r.request.method == "POST"]
        assert len(handed_out) == 4
        for r in responses.seen:
            if r not in handed_out and r.request.url.path != "/api/v1/auth/login":
                texts[f"{r.request.method} {r.request.url.path}"] = r.text
        leaks = [(what, where) for what, secret in secrets.items() for where, text in texts.items() if secret in text]
        assert not leaks, leaks
        for r in handed_out:  # each token's text was in exactly one answer, its own
            assert sum(t in r.text for t in tokens.values()) == 1
    finally:
        for agent in agents:
            agent.close()
        fleet.close()

