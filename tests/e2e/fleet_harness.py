"""The fleet manager as a real process for the end-to-end tests: ``python -m fleet serve``
on a free loopback port with its own config (SQLite in the test's directory, or a fresh
database on the suite's PostgreSQL), driven only through its HTTP API, as a user would."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from provisioning.ca import CertificateAuthority
from tests.authn import login_as
from tests.devices import issue_token
from tests.services import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]


class FleetProcess:
    """``sohoa-fleet serve --config FILE``; ``stop()`` then ``start()`` keeps the same port,
    database, file store and MQTT client id (so the broker keeps its session for it).

    The fleet has its own CA (``workdir/pki/ca``, made here as ``serve`` would on its first
    start): it serves HTTPS with a certificate from it, devices enroll with a token
    (:meth:`enrollment_token`) and sign their uploads. Enrolled devices are told the plain
    loopback broker (``mqtt://127.0.0.1:<port>``): these tests are about the backbone, not the
    broker's TLS (tests/e2e/test_security.py is)."""

    def __init__(self, workdir: Path, broker_port: int, db_url: str | None = None,
                 heartbeat_timeout_s: float = 60.0, group: str | None = None, *,
                 pki: Path | None = None, broker_pid_file: Path | None = None,
                 shared_dir: Path | None = None, extra_yaml: str = "", pki_yaml: str = "") -> None:
        """``pki``: a ``python -m provisioning init`` directory whose mutual-TLS broker listens on
        ``broker_port``: the ingest connects as ``fleet.ingest`` (the operations publisher as
        ``fleet.ops`` when init made that identity too), devices are told
        ``mqtts://127.0.0.1:<broker_port>``, a revocation rewrites its CRL and SIGHUPs
        ``broker_pid_file``, the broker's ACL refusals in its log are audited. Without it the
        fleet's CA is ``workdir/pki/ca`` and the broker plain.

        ``shared_dir``: another node of the same fleet (same database) keeps its CA, page files and
        first admin's password there (the mount both nodes reach); ``extra_yaml``: more sections;
        ``pki_yaml``: more lines of the ``pki:`` section (indented)."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.db_url = db_url or f"sqlite:///{workdir}/fleet.db"
        self.config = workdir / "fleet.yaml"
        common = shared_dir or workdir
        ca_dir = (pki or common / "pki") / "ca"
        if pki is None:
            broker = f"broker:\n  port: {broker_port}\n  client_id: e2e-fleet-{uuid.uuid4().hex[:8]}\n"
            own_https = f"  server_cert_dir: {workdir}/https\n" if shared_dir is not None else ""
            tls = f"pki:\n  ca_dir: {ca_dir}\n{pki_yaml}{own_https}enrollment:\n  broker_url: mqtt://127.0.0.1:{broker_port}\n"
        else:
            broker = (f"broker:\n  port: {broker_port}\n  client_id: fleet.ingest\n  ca_file: {ca_dir}/ca.crt\n"
                      f"  cert_file: {pki}/ingest/fleet.ingest.crt\n  key_file: {pki}/ingest/fleet.ingest.key\n")
            if (pki / "ingest" / "fleet.ops.crt").exists():  # `provisioning init ... --ingest fleet.ops`
                broker += (f"  ops_cert_file: {pki}/ingest/fleet.ops.crt\n"
                           f"  ops_key_file: {pki}/ingest/fleet.ops.key\n")
            tls = (f"pki:\n  ca_dir: {ca_dir}\n{pki_yaml}  crl_file: {pki}/broker/crl.pem\n"
                   f"  broker_log_file: {pki}/broker/mosquitto.log\n  broker_log_scan_s: 0.5\n"
                   + (f"  broker_pid_file: {broker_pid_file}\n" if broker_pid_file else "")
                   + f"enrollment:\n  broker_url: mqtts://127.0.0.1:{broker_port}\n")
        self.config.write_text(
            f"database:\n  url: {self.db_url}\n"
            f"storage:\n  dir: {common}/files\n  fsync: false\n"
            + broker
            + (f"  group: {group}\n" if group else "")
            + f"ingest:\n  heartbeat_timeout_s: {heartbeat_timeout_s}\n"
            f"http:\n  host: 127.0.0.1\n  port: {self.port}\n"
            f"auth:\n  initial_admin_file: {common}/initial-admin-password\n"
            + tls
            + f"  public_url: {self.url}\n"
            + extra_yaml
        )
        self.admin_file = common / "initial-admin-password"
        CertificateAuthority.open(ca_dir)
        self.ca_file = ca_dir / "ca.crt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        # No kept-alive connection: between two requests a test may wait longer than uvicorn keeps an
        # idle one open, and a request sent as the node closes it fails (a ReadError, once "bad
        # decrypt", on node b's first request after two nodes started together, in two fresh-clone runs).
        self.http = httpx.Client(base_url=self.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0),
                                 verify=ssl.create_default_context(cafile=str(self.ca_file)))

    @property
    def log(self) -> Path:
        return self.workdir / f"fleet-{self.runs}.log"

    def start(self, timeout: float = 45.0) -> None:
        """Start and wait until the API answers with the ingest connected to the broker."""
        self.runs += 1
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "fleet", "serve", "--config", str(self.config)],
                                         cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the fleet exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.http.get("/healthz").json().get("ingest") == "connected":
                    if "Authorization" not in self.http.headers:  # the admin `serve` created on first start
                        login_as(self.http, "admin", self.admin_file.read_text().strip())
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the fleet did not come up within {timeout}s:\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: the fleet writes and acknowledges what it holds, then exits."""
        assert self.proc is not None
        return stop_process(self.proc, "the fleet", timeout)

    def close(self) -> None:
        self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return "\n".join((self.workdir / f"fleet-{n}.log").read_text(errors="replace")
                         for n in range(1, self.runs + 1))

    # --- the API, as a client sees it -------------------------------------------------------

    def enrollment_token(self, unit_code: str, **body: Any) -> str:
        """A new enrollment token's text for ``unit_code`` (the fleet must be running)."""
        return issue_token(self.http, unit_code, **body)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def device(self, device_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/v1/devices/{device_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def events(self, device_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        """Every event the fleet holds for the device (paged through, so none is missed)."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        if type_ is not None:
            params["type"] = type_
        while True:
            response = self.http.get(f"/api/v1/devices/{device_id}/events", params={**params, "offset": len(out)})
            if response.status_code == 404:
                return []
            response.raise_for_status()
            chunk: list[dict[str, Any]] = response.json()
            out += chunk
            if len(chunk) < 1000:
                return out

    def pages(self, device_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            chunk: list[dict[str, Any]] = self.get("/api/v1/pages", device_id=device_id, limit=1000, offset=len(out))
            out += chunk
            if len(chunk) < 1000:
                return out

    def page_file(self, page_id: str) -> bytes:
        response = self.http.get(f"/api/v1/pages/{page_id}/file")
        response.raise_for_status()
        return response.content

    def metric(self, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(self.http.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0


def fresh_postgres_database(base_url: str) -> str:
    """A new, empty database on the suite's PostgreSQL server; its SQLAlchemy URL."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)
