"""The fleet's URLs are a contract (devices, scripts and the web pages call them): the app
answers exactly the (method, path) pairs in ``data/routes.txt``, generated from the app before
its routers were rearranged, and each path reaches its own route, not one declared before it."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

from fleet.api.app import create_app
from fleet.config import DatabaseConfig, FleetConfig, IngestConfig

EXPECTED = Path(__file__).parent / "data" / "routes.txt"


def _app() -> FastAPI:
    return create_app(FleetConfig(database=DatabaseConfig(url="sqlite://"), ingest=IngestConfig(enabled=False)))


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, in the order the app matches them."""
    return [(method, str(route.path)) for route in iter_route_contexts(app.router.routes)
            for method in sorted(route.methods or ())]


def test_the_app_answers_the_same_method_and_path_pairs() -> None:
    expected = {tuple(line.split(" ", 1)) for line in EXPECTED.read_text().splitlines() if line}
    actual = set(_routes(_app()))
    assert sorted(actual - expected) == [], "routes added"
    assert sorted(expected - actual) == [], "routes lost"


def test_each_path_reaches_its_own_route() -> None:
    routes = _routes(_app())
    table = [(method, template, compile_path(template)[0]) for method, template in routes]
    for method, template in routes:
        url = re.sub(r"\{[^}]+\}", "x1", template)
        first = next(t for m, t, regex in table if m == method and regex.match(url))
        assert first == template, f"{method} {url} goes to {first}, not {template}"
