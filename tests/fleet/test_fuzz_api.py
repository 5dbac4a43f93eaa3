"""Bad input: schemathesis over the fleet API's whole OpenAPI, stateless, as a signed-in province
admin (bearer token), against the app from its factory with a CA and the sample unit tree, on
SQLite. Every operation gets generated requests (valid and invalid by its schema); no answer may be
a 5xx, and every 2xx answer must match the schema the operation declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from fleet.api.app import create_app
from tests.authn import login
from tests.devices import with_pki
from tests.fleet.conftest import make_config
from tests.fleet.dossiers.conftest import load_units
from tests.fuzzing import LONG, fuzz_settings, tried

pytestmark = pytest.mark.fuzz

SKIPPED = frozenset({"/api/v1/auth/logout", "/api/v1/auth/password"})
"""Would end the session the pass runs under (each is tested on its own elsewhere)."""
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


def test_no_operation_answers_5xx_or_outside_its_schema(admin_api: TestClient) -> None:
    schema = schemathesis.openapi.from_dict(admin_api.app.openapi())  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) > 50
    failures: list[str] = []
    for operation in operations:
        if operation.path in SKIPPED or (not LONG and operation.path.endswith(HEAVY)):
            continue

        @given(operation.as_strategy())
        @fuzz_settings(1)
        def call(case: Any) -> None:
            response = _send(admin_api, case.as_transport_kwargs(base_url="http://testserver"))
            tried("fleet_api")
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif 200 <= response.status_code < 300:
                try:
                    case.validate_response(response, checks=[response_schema_conformance])
                except (AssertionError, FailureGroup) as exc:
                    failures.append(f"{where}: answer outside its schema: {str(exc)[:300]}")

        call()
    assert not failures, "\n".join(failures[:20])


FOUND = [
    ("GET", "/api/v1/pages?offset=319996035530253991936", None),
    ("GET", "/api/v1/dossiers/chase?offset=1009168200899851257867403264", None),
    ("GET", "/api/v1/alerts/-1926508446817413276631040", None),
    ("GET", "/api/v1/users/1926508446817413276631040", None),
    ("GET", "/api/v1/audit?before_id=99999999999999999999", None),
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
