"""Enrolled test devices that sign their requests, as a real kiosk does (issue 6).

The fleet accepts a page upload (``PUT /api/v1/files/{sha256}``) or a bundle download only in a
request signed with the key of a certificate its CA issued; the uploader it records is that
certificate's name. A test device is enrolled through the fleet's own API (an admin's token,
then ``POST /api/v1/enroll`` with a CSR), so the fleet holds its certificate like any other's.

>>> # config = with_pki(make_config(tmp_path, db_url), tmp_path)      # the fleet gets a CA
>>> # with TestClient(create_app(config)) as client:
>>> #     login(client)                                               # an admin: it issues the token
>>> #     kiosk = enroll_device(client, "kiosk-0001", "26734", tmp_path)
>>> #     kiosk.put_file(client, png)                                 # 201, uploaded_by kiosk-0001
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from device.http_auth import DeviceAuth
from fleet.config import FleetConfig
from fleet.enroll.config import PkiConfig
from provisioning.enrollment import EnrollRequest
from provisioning.files import read_private_key
from provisioning.identity import DeviceIdentity
from provisioning.requestauth import EMPTY_SHA256, sign_request


def with_pki(config: FleetConfig, directory: Path) -> FleetConfig:
    """``config`` with a certificate authority in ``directory/pki/ca`` (created on the app's first
    start): enrollment and device authentication on."""
    return config.model_copy(update={"pki": PkiConfig(ca_dir=directory / "pki" / "ca")})


def issue_token(admin: Any, unit_code: str, **body: Any) -> str:
    """A new enrollment token's text, from ``POST /api/v1/enrollment-tokens`` as ``admin`` (a
    TestClient or httpx.Client logged in as an admin)."""
    response = admin.post("/api/v1/enrollment-tokens", json={"unit_code": unit_code, **body})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def enroll_request(identity: DeviceIdentity, token: str, unit_code: str) -> str:
    """The enrollment body the device sends (the token in clear only on the wire)."""
    return EnrollRequest(device_id=identity.device_id, unit_code=unit_code, token=SecretStr(token),
                         csr_pem=identity.csr().decode()).wire_json()


class _ClockedAuth(httpx.Auth):
    """Signs with the time of a fleet whose clock a test moved (the device's clock agrees with it)."""

    def __init__(self, identity: DeviceIdentity, clock: Callable[[], dt.datetime], body_sha256: str | None) -> None:
        self.identity, self.clock, self.body_sha256 = identity, clock, body_sha256

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = read_private_key(self.identity.key_path)
        body = self.body_sha256 or (hashlib.sha256(request.content).hexdigest() if request.content else EMPTY_SHA256)
        query = request.url.query.decode("ascii")
        path = request.url.path + (f"?{query}" if query else "")
        request.headers.update(sign_request(key, self.identity.device_id, request.method, path, body,  # type: ignore[arg-type]
                                            now=self.clock()))
        yield request


@dataclass(frozen=True)
class TestDevice:
    """A device with a key and a certificate from the fleet's CA; signs what it sends (with
    ``clock``'s time when the fleet runs on a test clock, else with the device's own signer)."""

    identity: DeviceIdentity
    clock: Callable[[], dt.datetime] | None = None

    __test__ = False  # not a pytest test class

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def auth(self, body_sha256: str | None = None) -> httpx.Auth:
        """An httpx auth signing one request (``body_sha256``: a streamed body's hash)."""
        if self.clock is not None:
            return _ClockedAuth(self.identity, self.clock, body_sha256)
        auth = DeviceAuth(self.identity)
        return auth.for_body(body_sha256) if body_sha256 is not None else auth

    def put_file(self, http: Any, data: bytes, *, sha256: str | None = None,
                 content_type: str = "image/png") -> httpx.Response:
        """``PUT /api/v1/files/{sha256}`` signed by this device (``sha256``: claim another hash)."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        response: httpx.Response = http.put(f"/api/v1/files/{sha}", content=data, auth=self.auth(sha),
                                            headers={"Content-Type": content_type})
        return response

    def get(self, http: Any, path: str, **kwargs: Any) -> httpx.Response:
        """A signed ``GET`` (a bundle download)."""
        response: httpx.Response = http.get(path, auth=self.auth(), **kwargs)
        return response


def enroll_device(admin: Any, device_id: str, unit_code: str, directory: Path, *,
                  token: str | None = None, clock: Callable[[], dt.datetime] | None = None) -> TestDevice:
    """Enroll ``device_id`` in ``unit_code`` through the fleet's API (``admin``: a logged-in admin
    client of that fleet; ``token``: one to use instead of a new one; ``clock``: the fleet's test
    clock, when it has one). Its key and certificate go
    to ``directory/<device_id>``; the fleet records the device in that unit."""
    identity = DeviceIdentity(directory / "devices" / device_id, device_id)
    body = enroll_request(identity, token or issue_token(admin, unit_code), unit_code)
    response = admin.post("/api/v1/enroll", content=body,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    answer = response.json()
    identity.store(answer["certificate_pem"].encode(), answer["ca_pem"].encode(),
                   broker_url=answer["broker_url"], fleet_url=answer["fleet_url"])
    return TestDevice(identity, clock)
