"""Bad input: schemathesis over the fleet API's whole OpenAPI, stateless, as a signed-in province
admin (bearer token), against the app from its factory with a CA and the sample unit tree, on
SQLite. Every operation gets generated requests (valid and invalid by its schema); no answer may be
a 5xx, and every 2xx answer must match the schema the operation declares. Then the same as a unit
admin and as a viewer of one commune, with a device, pages and dossiers in another commune: no
answer may name that device or those dossiers (reading operations in the bounded pass, every
operation in ``make fuzz``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from fleet.api.app import create_app
from provisioning.identity import DeviceIdentity
from tests.authn import login
from tests.devices import TestDevice, enroll_request, issue_token, with_pki
from tests.fleet.conftest import make_config
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status
from tests.fleet.test_api import PNG
from tests.fuzzing import LONG, fuzz_settings, tried

pytestmark = pytest.mark.fuzz

SKIPPED = frozenset({"/api/v1/auth/logout", "/api/v1/auth/password"})
"""Would end the session the pass runs under (each is tested on its own elsewhere)."""
ANSWER_CHECKS = [response_schema_conformance, content_type_conformance, response_headers_conformance]
"""What a 2xx answer must fit: the body's schema, a declared media type and the declared headers."""
HEAVY = (".pdf", ".xlsx")
"""Report renderings (seconds each): in the long pass only, to keep ``make test``'s bounded pass short."""


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module: the pass is stateless, the regressions below need no fresh one."""
    tmp_path = tmp_path_factory.mktemp("fuzz-api")
    app = create_app(with_pki(make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db"), tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client)  # a province admin, by bearer token: the Origin check concerns cookies only
        load_units(client)
        yield client


@pytest.fixture(scope="module")
def api_schema(admin_api: TestClient) -> OpenApiSchema:
    """The OpenAPI as schemathesis reads it, built once for the module (seconds each time): every
    app here comes from the same factory, so each has this same OpenAPI."""
    return schemathesis.openapi.from_dict(admin_api.app.openapi())  # type: ignore[attr-defined]


def _send(client: TestClient, kwargs: dict[str, Any]) -> httpx.Response:
    headers = {k: v for k, v in kwargs.get("headers", {}).items() if k.lower() not in {"cookie", "authorization"}}
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    if "data" in kwargs:
        body["content"] = kwargs["data"]
    response: httpx.Response = client.request(kwargs["method"], kwargs["url"], headers=headers,
                                              params=kwargs.get("params"), **body)
    return response


def _pass(client: TestClient, schema: OpenApiSchema, surface: str, *, reading_only: bool = False,
          foreign: tuple[str, ...] = ()) -> list[str]:
    """One stateless pass over every operation of ``schema`` (the app's); the failures found (5xx,
    a 2xx outside its schema, a 2xx naming one of ``foreign``)."""
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) > 50
    failures: list[str] = []
    for operation in operations:
        if operation.path in SKIPPED or (not LONG and operation.path.endswith(HEAVY)):
            continue
        if reading_only and operation.method.upper() != "GET":
            continue

        @given(operation.as_strategy())
        @fuzz_settings(1)
        def call(case: Any) -> None:
            response = _send(client, case.as_transport_kwargs(base_url="http://testserver"))
            tried(surface)
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif 200 <= response.status_code < 300:
                try:
                    case.validate_response(response, checks=ANSWER_CHECKS)
                except (AssertionError, FailureGroup) as exc:
                    failures.append(f"{where}: answer outside its schema: {str(exc)[:300]}")
                if leaked := [name for name in foreign if name in response.text]:
                    failures.append(f"{where}: answer names another unit's {leaked}")

        call()
    return failures


def test_no_operation_answers_5xx_or_outside_its_schema(admin_api: TestClient, api_schema: OpenApiSchema) -> None:
    failures = _pass(admin_api, api_schema, "fleet_api")
    assert not failures, "\n".join(failures[:20])


OWN, OTHER = "99004", "99001"
FOREIGN = ("kiosk-elsewhere", "H99-ELSEWHERE-1", "H99-ELSEWHERE-2")
"""Names only the other commune's data carries: its device and its dossier codes."""


def _unit_fleet_scope(fixture_name: str, config: pytest.Config) -> Literal["module", "function"]:
    """The bounded pass only reads, so one fleet serves both roles; the long pass also writes (its
    failed logins from the test client's address would lock the next role's login out), so each
    role gets a fleet of its own."""
    return "function" if LONG else "module"


@pytest.fixture(scope=_unit_fleet_scope)
def unit_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app for the unit roles, seeded as a province admin: a kiosk in each commune with a page
    and a closed dossier, and received dossiers in both. Each role's pass then logs in anew (a
    user created after any previous pass, which therefore could not touch it)."""
    tmp_path = tmp_path_factory.mktemp("fuzz-api-units")
    app = create_app(with_pki(make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db"), tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client)
        load_units(client)
        received = [{"code": code, "unit_code": unit, "received_date": "2026-01-05", "procedure_code": "1.001"}
                    for code, unit in (("H99-HERE-1", OWN), (FOREIGN[1], OTHER), (FOREIGN[2], OTHER))]
        assert client.post("/api/v1/dossiers/received", json=received).status_code == 200
        seeded = []
        for device, unit, code in (("kiosk-here", OWN, "H99-HERE-1"), (FOREIGN[0], OTHER, FOREIGN[1])):
            shot = page(device, code, at("2026-01-06"))
            seeded += [status(device, unit, at("2026-01-06")), shot,
                       closed(device, code, [f"{code}.1.pdf"], at("2026-01-06", 4), page_ids=[shot.page.page_id])]
        seeded.append(page(FOREIGN[0], None, at("2026-01-07")))  # a walk-in page there
        send(client, seeded)
        yield client


@pytest.mark.parametrize("role", ["unit_admin", "viewer"])
def test_a_unit_user_gets_no_5xx_and_nothing_of_another_unit(
    role: str, unit_fleet: TestClient, api_schema: OpenApiSchema
) -> None:
    """The pass as a ``role`` of commune 99004 only, over the fleet seeded with both communes."""
    login(unit_fleet, role=role, unit_code=OWN)  # type: ignore[arg-type]
    failures = _pass(unit_fleet, api_schema, f"fleet_api_{role}", reading_only=not LONG, foreign=FOREIGN)
    assert not failures, "\n".join(failures[:20])


FOUND = [
    ("GET", "/api/v1/pages?offset=319996035530253991936", None),
    ("GET", "/api/v1/dossiers/chase?offset=1009168200899851257867403264", None),
    ("GET", "/api/v1/alerts/-1926508446817413276631040", None),
    ("GET", "/api/v1/users/1926508446817413276631040", None),
    ("GET", "/api/v1/audit?before_id=99999999999999999999", None),
    ("GET", "/api/v1/deliveries?offset=6733112705541423702736896&state=acknowledged", None),
    ("POST", "/api/v1/deliveries/95509503363010790253617511137280/retry", None),
    ("POST", "/api/v1/deliveries/95509503363010790253617511137280/cancel", None),
    ("POST", "/api/v1/enrollment-tokens", {"unit_code": "99001", "ttl_hours": 5.131160489187225e307}),
    ("POST", "/api/v1/enrollment-tokens", {"unit_code": "99001", "ttl_hours": 1.106842611639882e-22}),
]


def test_what_the_pass_found_is_a_422(admin_api: TestClient) -> None:
    """Found by the pass above, each a 500 before: ids and offsets beyond a database integer
    (the driver overflowed), and token lifetimes that overflow a timedelta or end before now."""
    for method, path, body in FOUND:
        response = admin_api.request(method, path, json=body)
        assert response.status_code == 422, (path, response.text)


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def _fits(schema: OpenApiSchema, method: str, template: str, response: httpx.Response, **path: str) -> None:
    """``response``, a 2xx of the operation ``method template`` (``path``: its path parameters),
    fits what the OpenAPI declares."""
    assert 200 <= response.status_code < 300, (template, response.status_code, response.text[:200])
    operation = schema[template][method]
    try:
        operation.Case(path_parameters=path).validate_response(response, checks=ANSWER_CHECKS)
    except FailureGroup as exc:
        raise AssertionError(f"{method} {template}: answer outside its schema: {exc}") from None


def test_answers_the_stateless_pass_cannot_reach_fit_their_declared_schemas(
    admin_api: TestClient, api_schema: OpenApiSchema, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The answers the stateless pass cannot reach (they need a held file, an enrolled device, an
    uploaded bundle, a rollout): an enrollment, a page file, a held file, a dossier's PDF, a bundle
    (whole and a range), the exports and texts, a rollout created, shown and paused, the fleet
    screen's device; each a real 2xx checked against the operation's declared media types and
    schema (the files were undeclared or declared as JSON before, the rollouts, commands, fleet
    screen and health answers free-form objects)."""
    client = admin_api
    identity = DeviceIdentity(tmp_path_factory.mktemp("fuzz-files") / "kiosk-files", "kiosk-files")
    body = enroll_request(identity, issue_token(client, OWN), OWN)
    enrolled = client.post("/api/v1/enroll", content=body, headers={"Content-Type": "application/json"})
    _fits(api_schema, "POST", "/api/v1/enroll", enrolled)
    answer = enrolled.json()
    identity.store(answer["certificate_pem"].encode(), answer["ca_pem"].encode(),
                   broker_url=answer["broker_url"], fleet_url=answer["fleet_url"])
    kiosk = TestDevice(identity)
    stored = kiosk.put_file(client, PNG)
    sha = stored.json()["sha256"]
    _fits(api_schema, "PUT", "/api/v1/files/{sha256}", stored, sha256=sha)
    _fits(api_schema, "PUT", "/api/v1/files/{sha256}", kiosk.put_file(client, PNG), sha256=sha)  # 200: already held
    assert kiosk.put_file(client, PDF, content_type="application/pdf").status_code == 201
    shot = page("kiosk-files", "H99-FILES-1", at("2026-01-06"))
    shot = shot.model_copy(update={"page": shot.page.model_copy(update={"sha256": sha,
                                                                         "size": len(PNG)})})
    document = closed("kiosk-files", "H99-FILES-1", ["H99-FILES-1.1.pdf"], at("2026-01-06", 4),
                      page_ids=[shot.page.page_id])
    document = document.model_copy(update={"documents": [document.documents[0].model_copy(
        update={"sha256": hashlib.sha256(PDF).hexdigest(), "size": len(PDF)})]})
    send(client, [status("kiosk-files", OWN, at("2026-01-06")), shot, document])
    _fits(api_schema, "GET", "/api/v1/files/{sha256}", client.get(f"/api/v1/files/{sha}"), sha256=sha)
    page_id = shot.page.page_id
    _fits(api_schema, "GET", "/api/v1/pages/{page_id}/file", client.get(f"/api/v1/pages/{page_id}/file"),
          page_id=page_id)
    _fits(api_schema, "GET", "/api/v1/dossiers/{code}/documents/{name}",
          client.get("/api/v1/dossiers/H99-FILES-1/documents/H99-FILES-1.1.pdf"),
          code="H99-FILES-1", name="H99-FILES-1.1.pdf")
    assert client.put("/api/v1/bundles/app-9.9.9.bundle", content=b"bundle bytes" * 100).status_code == 201
    bundle = "app-9.9.9.bundle"
    _fits(api_schema, "GET", "/api/v1/bundles/{name}", client.get(f"/api/v1/bundles/{bundle}"), name=bundle)
    ranged = client.get("/api/v1/bundles/app-9.9.9.bundle", headers={"Range": "bytes=10-"})
    assert ranged.status_code == 206
    _fits(api_schema, "GET", "/api/v1/bundles/{name}", ranged, name=bundle)
    for path in ("/api/v1/dossiers/chase.xlsx", "/api/v1/progress/report.xlsx", "/api/v1/progress/report.pdf",
                 "/api/v1/pki/ca.crt", "/api/v1/pki/crl.pem", "/metrics", "/api/v1/corrections/export.zip"):
        if LONG or not path.endswith(HEAVY):  # the renderings: in the long pass only, as above
            _fits(api_schema, "GET", path, client.get(path))
    created = client.post("/api/v1/rollouts", json={"rollout_id": "fuzz-r1", "bundle": bundle, "version": "9.9.9",
                                                    "target": {"device_ids": ["kiosk-files"]}})
    _fits(api_schema, "POST", "/api/v1/rollouts", created)
    _fits(api_schema, "GET", "/api/v1/rollouts", client.get("/api/v1/rollouts"))
    _fits(api_schema, "GET", "/api/v1/rollouts/{rollout_id}", client.get("/api/v1/rollouts/fuzz-r1"),
          rollout_id="fuzz-r1")
    _fits(api_schema, "POST", "/api/v1/rollouts/{rollout_id}/{action}", client.post("/api/v1/rollouts/fuzz-r1/pause"),
          rollout_id="fuzz-r1", action="pause")
    _fits(api_schema, "GET", "/api/v1/commands", client.get("/api/v1/commands"))
    _fits(api_schema, "GET", "/api/v1/fleet/devices", client.get("/api/v1/fleet/devices"))
    _fits(api_schema, "GET", "/api/v1/fleet/devices/{device_id}", client.get("/api/v1/fleet/devices/kiosk-files"),
          device_id="kiosk-files")
    _fits(api_schema, "GET", "/healthz", client.get("/healthz"))
