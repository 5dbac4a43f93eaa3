"""Helpers for the agent's integration tests: the agent as a real subprocess, a plain paho
subscriber that records what reaches the broker, and a minimal HTTP receiver that implements
the file part of the device <-> fleet contract (used until the real fleet is in the test)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.messages import decode
from tests.services import stop_process

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll ``predicate`` until it holds (bounded); for state we cannot be notified about."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Recorder:
    """A plain paho subscriber (persistent session, QoS 1) recording every message by topic."""

    def __init__(self, port: int, device_id: str, client_id: str = "test-recorder") -> None:
        self.device_id = device_id
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.connected = threading.Event()
        self.client.loop_start()
        assert self.connected.wait(10), "recorder could not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        client.subscribe(f"sohoa/v1/{self.device_id}/#", qos=1)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def decoded(self, channel: str = "event") -> list[Any]:
        with self.cond:
            items = list(self.messages)
        wanted = f"sohoa/v1/{self.device_id}/{channel}"
        return [decode(t, p).message for t, p, _ in items if t == wanted]

    def events(self, type_: str | None = None) -> list[Any]:
        """Events, deduplicated on id (delivery is at-least-once), in arrival order."""
        seen: dict[str, Any] = {}
        for event in self.decoded("event"):
            if type_ is None or event.type == type_:
                seen.setdefault(event.id, event)
        return list(seen.values())

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self.cond.wait(min(left, 0.5))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FileReceiver:
    """The contract's file endpoint: ``HEAD``/``PUT /api/v1/files/{sha256}``; 201 stored, 200
    already held, 400 when the body's sha256 differs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.puts = 0
        self.bad = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _sha(self) -> str | None:
                prefix = "/api/v1/files/"
                return self.path[len(prefix):] if self.path.startswith(prefix) else None

            def do_HEAD(self) -> None:
                sha = self._sha()
                self.send_response(200 if sha in receiver.files else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self) -> None:
                sha = self._sha()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.puts += 1
                if sha is None or hashlib.sha256(body).hexdigest() != sha or not self.headers.get("X-Sohoa-Device"):
                    receiver.bad += 1
                    code = 400
                else:
                    code = 200 if sha in receiver.files else 201
                    receiver.files[sha] = body
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def agent_config(tmp: Path, broker_port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "device_id": "kiosk-test",
        "unit": "000.00.00.H01",
        "broker": {"port": broker_port, "reconnect_min_s": 1, "reconnect_max_s": 1},
        "fleet_url": None,
        "state_dir": str(tmp / "state"),
        "min_free_bytes": 0,
        "scanner": {"type": "sane", "device": "test:0", "dpi": 75, "source": "adf"},
        "local_api": {"port": 0},
        "telemetry": {"interval_s": 60},
        "usb_watch": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and "type" not in value:
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def enrolled_agent(tmp: Path, fleet_url: str, ca_file: Path, token: str | None = None, *,
                   unit: str | None = None, identity_dir: Path | None = None) -> dict[str, Any]:
    """Config overrides for an agent that enrolls with ``fleet_url`` on its first start (issue 6):
    ``agent_config(tmp, port, **enrolled_agent(tmp, fleet.url, ca_file, token_text))``. The token
    text (if given) is written to ``tmp/secrets/enrollment.token`` (0600), which the agent deletes
    once enrolled; the key and certificate go to ``identity_dir`` (default ``tmp/identity``).
    Once enrolled, the agent uses the broker and fleet URLs of the enrollment answer."""
    token_file = tmp / "secrets" / "enrollment.token"
    if token is not None:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(0o600)
        token_file.write_text(token)
    return {
        "identity": {"dir": str(identity_dir or tmp / "identity")},
        "enrollment": {"fleet_url": fleet_url, "unit_code": unit, "token_file": str(token_file),
                       "ca_file": str(ca_file), "retry_min_s": 0.5, "retry_max_s": 2},
    }


class AgentProcess:
    """``python -m device run --config FILE`` as a real process, driven over its loopback API."""

    def __init__(self, config: dict[str, Any], workdir: Path, sane_dir: Path | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.state = Path(config["state_dir"])
        self.path = workdir / "agent.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if sane_dir is not None:
            self.env["SANE_CONFIG_DIR"] = str(sane_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.port = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"agent-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        port_file = self.state / "local_api.port"
        port_file.unlink(missing_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "device", "run", "--config", str(self.path)],
                                         cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        # A bound for an agent that never comes up, not a speed check: a start (imports, model,
        # outbox replay after a kill) took over 30 s at load 30-60 with the suite on two workers.
        wait_until(lambda: (port_file.exists() and port_file.read_text().strip() != "") or self.exited(), 60,
                   "the agent's local endpoint")
        assert not self.exited(), self.log.read_text()
        self.port = int(port_file.read_text())

    def kiosk_url(self) -> str:
        """The kiosk screen's base URL, once it listens (the agent opens its local endpoint, which
        start() waits for, a moment before the kiosk's)."""
        wait_until(lambda: self.status()["kiosk_port"] is not None, 30, "the kiosk screen's port")
        return f"http://127.0.0.1:{self.status()['kiosk_port']}"

    def threads_taking(self, signo: int) -> list[str]:
        """The agent's threads, other than its main one, that do not block ``signo`` (from /proc).
        The agent takes SIGTERM/SIGINT only in its main thread's sigtimedwait (which unblocks
        them while it waits, so /proc shows the main thread taking them): any other thread that
        does not block them would let the default action end the agent without its clean stop."""
        assert self.proc is not None
        unblocked = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            if task.name == str(self.proc.pid):
                continue
            try:
                fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines()
                              if ":\t" in line)
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            if not int(fields["SigBlk"], 16) & (1 << (signo - 1)):
                unblocked.append(f"{fields['Name'].strip()} ({task.name})")
        return unblocked

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def scan(self, wait: bool = True, timeout: float = 120, **args: Any) -> dict[str, Any]:
        response = httpx.post(f"http://127.0.0.1:{self.port}/scan", json={**args, "wait": wait}, timeout=timeout)
        result: dict[str, Any] = response.json()
        result["http_status"] = response.status_code
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/status", timeout=10).json()
        return result

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return stop_process(self.proc, "the agent", timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return "\n".join((self.workdir / f"agent-{n}.log").read_text(errors="replace")
                         for n in range(1, self.runs + 1))


def sane_conf(sane_dir: Path, **options: str) -> None:
    """Rewrite the test backend's test.conf (read at the next sane_init)."""
    conf = {"number_of_devices": "1", "mode": "Color", "depth": "8", "resolution": "75",
            "test-picture": '"Color pattern"', **options}
    (sane_dir / "test.conf").write_text("".join(f"{k.replace('_', '-') if k != 'number_of_devices' else k} {v}\n"
                                                for k, v in conf.items()))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
