"""A real fleet over real HTTPS: the app from its factory, served by uvicorn in a thread with a
server certificate issued by the fleet's CA; clients trust only that CA. SQLite by default, the
suite's PostgreSQL where a test asks for it."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url

from fleet.api.app import create_app
from fleet.api.state import FleetState, fleet_state
from fleet.auth.models import AuditEntry
from fleet.config import BrokerConfig, FleetConfig, HttpConfig
from fleet.enroll.config import EnrollmentConfig, PkiConfig
from fleet.enroll.server import https_files
from provisioning.ca import CertificateAuthority
from provisioning.enrollment import EnrollRequest
from provisioning.identity import DeviceIdentity
from tests.authn import login_as, make_user
from tests.fleet.conftest import make_config
from tests.services import free_port, wait_port

UNIT = "00001"
OTHER_UNIT = "00002"


class Clock:
    """The fleet's clock: real time plus an offset a test can move (token expiry without waiting)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class HttpsFleet:
    url: str
    app: Any
    config: FleetConfig
    clock: Clock
    ca_file: Path
    pki: Path
    responses: list[httpx.Response] = field(default_factory=list)

    @property
    def state(self) -> FleetState:
        state = fleet_state(self.app)
        return state

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.pki / "ca")

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTPS client trusting only the fleet CA; every response is kept for the secret checks."""
        return httpx.Client(base_url=self.url, verify=kwargs.pop("verify", self.trust()), timeout=10,
                            event_hooks={"response": [self._keep]}, **kwargs)

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def admin(self, *, role: str = "province_admin", unit_code: str | None = None, name: str = "admin") -> httpx.Client:
        """A client logged in as a new user with ``role``."""
        password = f"pw-{name}-0123456789"
        make_user(self.state.sessions, name=name, password=password, role=role,  # type: ignore[arg-type]
                  unit_code=unit_code)
        http = self.client()
        login_as(http, name, password)
        return http

    def audit(self) -> list[AuditEntry]:
        with self.state.sessions() as session:
            return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))

    def enroll(self, ident: DeviceIdentity, token: str, unit: str = UNIT) -> httpx.Response:
        request = EnrollRequest(device_id=ident.device_id, unit_code=unit, token=SecretStr(token),
                                csr_pem=ident.csr().decode())
        with self.client() as http:
            return http.post("/api/v1/enroll", content=request.wire_json(),
                             headers={"Content-Type": "application/json"})


def fleet_config(tmp_path: Path, db_url: str, port: int, **sections: Any) -> FleetConfig:
    pki = tmp_path / "pki"
    base = make_config(tmp_path, db_url, None)
    update: dict[str, Any] = {
        "http": HttpConfig(host="127.0.0.1", port=port),
        "pki": PkiConfig(ca_dir=pki / "ca", crl_file=pki / "broker" / "crl.pem"),
        "enrollment": EnrollmentConfig(public_url=f"https://127.0.0.1:{port}", broker_url="mqtts://127.0.0.1:8883"),
    }
    update.update(sections)
    return base.model_copy(update=update)


@pytest.fixture
def serve_fleet(tmp_path: Path) -> Iterator[Callable[..., HttpsFleet]]:
    """``serve_fleet(db_url, **config sections)``: the fleet on HTTPS; stopped at the end."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(db_url: str, *, port: int | None = None, **sections: Any) -> HttpsFleet:
        port = port or free_port()
        config = fleet_config(tmp_path, db_url, port, **sections)
        tls = https_files(config)  # what `sohoa-fleet serve` does: issued from the CA
        assert tls is not None
        clock = Clock()
        app = create_app(config, clock=clock)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=str(tls[0]),
                                               ssl_keyfile=str(tls[1]), log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_port(port)
        deadline = time.monotonic() + 20
        while not server.started:  # the lifespan (migrations, CA, first CRL) has run once this is set
            assert time.monotonic() < deadline and thread.is_alive(), "the fleet did not start"
            time.sleep(0.02)
        assert config.pki.ca_dir is not None
        return HttpsFleet(f"https://127.0.0.1:{port}", app, config, clock, config.pki.ca_dir / "ca.crt",
                          config.pki.ca_dir.parent)

    try:
        yield start
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(15)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fleet.db"


def new_postgres_database(base_url: str) -> str:
    """A new, empty database on the suite's PostgreSQL server (dropped with the server)."""
    name = f"enroll_{uuid.uuid4().hex[:12]}"
    admin = make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def broker_tls(pki: Path, port: int) -> BrokerConfig:
    """The ingest's broker section for the layout of ``python -m provisioning init``."""
    return BrokerConfig(host="127.0.0.1", port=port, client_id="fleet.ingest", ca_file=pki / "ca" / "ca.crt",
                        cert_file=pki / "ingest" / "fleet.ingest.crt", key_file=pki / "ingest" / "fleet.ingest.key")
