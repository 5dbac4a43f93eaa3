"""The fleet served for real (uvicorn on loopback, ingest and operations on the test mosquitto)
and device agents in this process, for the fleet-operations tests."""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from device.agent import Agent
from device.config import AgentConfig
from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import FleetConfig
from fleet.enroll.server import https_files
from fleet.operations.models import SettingsLayer
from fleet.operations.service import new_command, recompute_desired
from protocol.messages import CommandName
from tests.authn import login_as, make_user


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-check ``predicate`` until it holds (the conditions here are on other processes' and
    threads' state: database rows, files); fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unchecked_command(app: object, device_id: str, name: CommandName, args: dict[str, Any]) -> str:
    """Queue a command as a fleet that did not check it against the contract would (the API
    refuses one that does not fit with 422): what a device does with such a command. Returns
    its id."""
    state = fleet_state(app)
    now = state.now()
    with state.sessions.begin() as session:
        command_id: str = new_command(session, device_id, name, args, now + timedelta(hours=1), now).id
    state.services.wake_operations()
    return command_id


def unchecked_settings(app: object, device_id: str, settings: dict[str, Any]) -> None:
    """Set a device's own settings layer without the contract check (see :func:`unchecked_command`)."""
    state = fleet_state(app)
    now = state.now()
    with state.sessions.begin() as session:
        layer = session.get(SettingsLayer, ("device", device_id))
        if layer is None:
            session.add(SettingsLayer(scope="device", key=device_id, settings=settings, version=1, updated_at=now))
        else:
            layer.settings, layer.updated_at, layer.version = settings, now, layer.version + 1
        session.flush()
        recompute_desired(session, [device_id], now)
    state.services.wake_operations()


class FleetServer:
    """The fleet app under uvicorn in a thread: devices download bundles from it. :attr:`http`
    is logged in as a province admin (:attr:`admin`, :attr:`password`). With ``pki.ca_dir`` in
    the config, it serves HTTPS from its CA (as ``sohoa-fleet serve`` does) at the public URL it
    tells enrolled devices; :attr:`ca_file` is the CA to trust."""

    def __init__(self, config: FleetConfig) -> None:
        self.port = free_port()
        tls: tuple[Path, Path] | None = None
        self.ca_file: Path | None = None
        ca_dir = config.pki.ca_dir
        if ca_dir is not None:
            config = config.model_copy(update={
                "http": config.http.model_copy(update={"host": "127.0.0.1", "port": self.port}),
                "enrollment": config.enrollment.model_copy(update={"public_url": f"https://127.0.0.1:{self.port}"}),
            })
            tls = https_files(config)
            self.ca_file = ca_dir / "ca.crt"
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.app = create_app(config)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on",
                                                    ssl_certfile=str(tls[0]) if tls else None,
                                                    ssl_keyfile=str(tls[1]) if tls else None))
        self.thread = threading.Thread(target=self.server.run, name="fleet-uvicorn", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the fleet to serve")
        self.verify: ssl.SSLContext | bool = True
        if self.ca_file is not None:
            self.verify = ssl.create_default_context(cafile=str(self.ca_file))
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=self.verify)
        self.admin, self.password = "ops-admin", secrets.token_urlsafe(12)
        make_user(fleet_state(self.app).sessions, name=self.admin, password=self.password, role="province_admin")
        login_as(self.http, self.admin, self.password)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"/api/v1{path}", **kwargs)

    def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text)
        return response.json()

    def unchecked_command(self, device_id: str, name: CommandName, args: dict[str, Any]) -> str:
        return unchecked_command(self.app, device_id, name, args)

    def unchecked_settings(self, device_id: str, settings: dict[str, Any]) -> None:
        unchecked_settings(self.app, device_id, settings)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(30)


def agent_config(tmp: Path, device_id: str, broker_port: int, fleet_url: str, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "device_id": device_id,
        "unit": "000.00.00.H01",
        "broker": {"port": broker_port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5, "shutdown_flush_s": 5},
        "fleet_url": fleet_url,
        "state_dir": str(tmp / device_id / "state"),
        "min_free_bytes": 0,
        "scanner": {"type": "fake", "pages": 2, "width": 200, "height": 280},
        "local_api": {"enabled": False},
        "usb_watch": {"enabled": False},
        "telemetry": {"interval_s": 60},
        "commands": {"reboot_command": ["true"], "update_restart": "in_process"},
    }
    values.update(overrides)
    return AgentConfig.model_validate(values)


def start_agent(config: AgentConfig) -> Agent:
    agent = Agent(config).start()
    wait_until(agent.link.connected.is_set, 20, "the agent to connect")
    return agent
