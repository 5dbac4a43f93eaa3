"""The guard on every route: anonymous callers, viewers writing, unit admins reaching outside
their units; and that each refusal is in the audit log with who, from where and the outcome."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fleet.auth.guard import READ_ONLY_POSTS, access
from fleet.auth.models import AuditEntry
from tests.authn import login
from tests.fleet.auth.conftest import state_of
from tests.fleet.auth.world import World, build_world

IP = "203.0.113.7"

# Everything a caller without a user session may reach; anything else found public is a hole.
EXPECTED_OPEN = {
    ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/login"), ("POST", "/login"),
    ("POST", "/api/v1/auth/login"),
    ("PUT", "/api/v1/files/{sha256}"), ("HEAD", "/api/v1/files/{sha256}"),
    ("POST", "/api/v1/devices/{device_id}/certificate"), ("POST", "/api/v1/devices/{device_id}/certificate/confirm"),
    ("GET", "/api/v1/bundles/{name}"),
    ("HEAD", "/api/v1/bundles/{name}"),
}
OPEN_TREES = ("/api/v1/enroll", "/api/v1/pki")
SHA = "0" * 64


def routes_of(client: TestClient) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app, as registered (a new route is included)."""
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if route.path and route.methods:
            for method in sorted(route.methods):
                yield method, route.path


def concrete(template: str) -> str:
    return re.sub(r"\{sha256\}", SHA, re.sub(r"\{(?!sha256)[^}]+\}", "x1", template))


def refusals(client: TestClient, **where: str) -> list[AuditEntry]:
    with state_of(client).sessions() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        for key, value in where.items():
            query = query.where(getattr(AuditEntry, key) == value)
        return list(session.scalars(query))


def test_every_route_needs_a_user_except_the_allowlist(app_client: TestClient) -> None:
    """Tried: every route of the app (enumerated, not listed by hand), with no session, with a
    made-up token and with a garbage cookie. API answers 401, web pages redirect to the login
    page with where they were; each refusal is audited with the address."""
    seen_open: set[tuple[str, str]] = set()
    checked = 0
    for method, template in routes_of(app_client):
        if access(method, template) != "user":
            seen_open.add((method, template))
            continue
        path = concrete(template)
        for headers in ({}, {"Authorization": "Bearer forged-token"}, {"Cookie": "sohoa_session=garbage"}):
            r = app_client.request(method, path, headers=headers, follow_redirects=False)
            if not path.startswith("/api/") and method in ("GET", "HEAD"):
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/login?next=%2F"), r.headers["location"]
            else:
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked > 40  # the app has dozens of routes: the enumeration did run
    unexpected = {(m, t) for m, t in seen_open if (m, t) not in EXPECTED_OPEN
                  and not any(t == tree or t.startswith(tree + "/") for tree in OPEN_TREES)}
    assert not unexpected, f"routes open without a user: {unexpected}"
    logged = refusals(app_client, outcome="401")
    assert len(logged) == checked
    assert all(e.client_ip == IP and e.actor_kind == "anonymous" and e.actor is None for e in logged)
    assert {e.target for e in logged} >= {"/api/v1/devices", "/api/v1/audit", "/api/v1/users", "/"}


def test_a_viewer_cannot_write(app_client: TestClient) -> None:
    """Tried: every write route of the app as a viewer (a province-wide one): 403 before the route
    runs, audited; reads work (the forms' dry-run check too: it stores nothing); logging out is
    the viewer's own business and is allowed."""
    viewer = login(app_client, role="viewer")
    writes = [(m, t) for m, t in routes_of(app_client)
              if m in ("POST", "PUT", "PATCH", "DELETE") and access(m, t) == "user"
              and t not in ("/api/v1/auth/logout", "/api/v1/auth/password", "/logout", *READ_ONLY_POSTS)]
    assert len(writes) > 8
    for method, template in writes:
        r = app_client.request(method, concrete(template), json={})
        assert r.status_code == 403, (method, template, r.status_code)
    assert app_client.get("/api/v1/devices").status_code == 200
    assert app_client.post("/api/v1/contract/check", json={"settings": {}}).status_code == 200
    logged = refusals(app_client, outcome="403")
    assert len(logged) == len(writes)
    assert {(e.actor, e.actor_kind, e.client_ip) for e in logged} == {(viewer.name, "user", IP)}
    assert {e.action for e in logged} == {f"{m} {t}" for m, t in writes}
    # The audit log itself is for admins.
    assert app_client.get("/api/v1/audit").status_code == 403


@pytest.fixture
def world(app_client: TestClient) -> World:
    return build_world(app_client)


def test_a_unit_admin_sees_only_their_units(app_client: TestClient, world: World) -> None:
    """A unit admin of district 991 (communes 99001-99003). Tried: another unit's device, its
    events, page, page file and file by sha256 (404, the same answer as for nothing at all), and a
    list filtered on another unit (403). Every attempt is in the audit log, readable by the
    province admin with actor, address and outcome, and by the unit admin for their own."""
    district = login(app_client, role="unit_admin", unit_code="991")
    mine, other = world.mine, world.other

    assert [d["id"] for d in app_client.get("/api/v1/devices").json()] == [mine.device_id]
    assert [p["page_id"] for p in app_client.get("/api/v1/pages").json()] == [mine.page_id]
    assert [c["page_id"] for c in app_client.get("/api/v1/corrections").json()] == [mine.page_id]
    assert app_client.get(f"/api/v1/devices/{mine.device_id}").status_code == 200
    assert app_client.get(f"/api/v1/pages/{mine.page_id}/file").content == mine.content
    assert app_client.get(f"/api/v1/files/{mine.sha256}").content == mine.content
    assert app_client.get("/api/v1/devices", params={"unit": "99001"}).status_code == 200

    attempts = {
        f"/api/v1/devices/{other.device_id}": f"/api/v1/devices/{'nobody'}",
        f"/api/v1/devices/{other.device_id}/events": "/api/v1/devices/nobody/events",
        f"/api/v1/pages/{other.page_id}": "/api/v1/pages/nothing",
        f"/api/v1/pages/{other.page_id}/file": "/api/v1/pages/nothing/file",
        f"/api/v1/files/{other.sha256}": f"/api/v1/files/{'e' * 64}",
    }
    for theirs, missing in attempts.items():
        refused, absent = app_client.get(theirs), app_client.get(missing)
        assert refused.status_code == 404 == absent.status_code, theirs
        assert refused.json() == absent.json(), theirs  # existence does not leak
    for path in ("/api/v1/devices", "/api/v1/corrections", "/api/v1/corrections/export.zip"):
        assert app_client.get(path, params={"unit": other.unit}).status_code == 403, path
    assert other.content not in app_client.get("/api/v1/corrections/export.zip").content

    entries = refusals(app_client, actor=district.name)
    scoped = [e for e in entries if e.outcome == "404" and e.detail == "outside the user's units"]
    assert sorted(str(e.target) for e in scoped) == sorted(attempts)
    assert {e.unit_code for e in scoped} == {other.unit}
    forbidden = [e for e in entries if e.outcome == "403"]
    assert len(forbidden) == 3 and {e.unit_code for e in forbidden} == {other.unit}
    assert all(e.client_ip == IP and e.actor_kind == "user" for e in scoped + forbidden)
    # Looking for something that does not exist is not a refusal.
    assert not [e for e in entries if e.outcome == "404" and "nobody" in (e.target or "")]

    # The unit admin reads their own refusals through the API...
    own = app_client.get("/api/v1/audit", params={"actor": district.name, "limit": 1000}).json()
    assert {e["target"] for e in own if e["detail"] == "outside the user's units"} == set(attempts)
    # ...and the province admin reads them all, three at a time.
    province = login(app_client, role="province_admin")
    paged: list[dict[str, object]] = []
    params: dict[str, object] = {"actor": district.name, "limit": 3}
    while batch := app_client.get("/api/v1/audit", params=params).json():
        assert len(batch) <= 3
        paged += batch
        params["before_id"] = batch[-1]["id"]
    assert paged == own and len(own) == len(entries)
    assert all(e["client_ip"] == IP for e in paged)
    # The province admin's own download elsewhere is not in the district admin's audit view.
    assert app_client.get(f"/api/v1/files/{other.sha256}").status_code == 200
    login(app_client, role="unit_admin", unit_code="991", name="district-2")
    seen = app_client.get("/api/v1/audit", params={"limit": 1000}).json()
    assert province.name not in {e["actor"] for e in seen}


def test_writes_and_downloads_are_audited(app_client: TestClient, world: World) -> None:
    """Every download of a page file (by page and by sha256, and the corrections export) and every
    write lands in the audit log with actor, address and HTTP status; a failed write too."""
    admin = login(app_client, role="province_admin")
    assert app_client.get(f"/api/v1/pages/{world.mine.page_id}/file").status_code == 200
    assert app_client.get(f"/api/v1/files/{world.other.sha256}").status_code == 200
    assert app_client.get("/api/v1/corrections/export.zip").status_code == 200
    assert app_client.get("/api/v1/devices").status_code == 200  # a plain read: not audited
    created = app_client.post("/api/v1/users", json={"name": "thu", "password": "mật-khẩu-dài-đủ", "role": "viewer"})
    assert created.status_code == 201
    duplicate = app_client.post("/api/v1/users", json={"name": "thu", "password": "mật-khẩu-dài-đủ", "role": "viewer"})
    assert duplicate.status_code == 409
    entries = [(e.action, e.target, e.outcome) for e in refusals(app_client, actor=admin.name)
               if e.action != "auth.login"]
    assert entries == [
        ("download /api/v1/pages/{page_id}/file", f"/api/v1/pages/{world.mine.page_id}/file", "200"),
        ("download /api/v1/files/{sha256}", f"/api/v1/files/{world.other.sha256}", "200"),
        ("download /api/v1/corrections/export.zip", "/api/v1/corrections/export.zip", "200"),
        ("user.create", f"user {created.json()['id']} thu (viewer)", "201"),
        ("POST /api/v1/users", "/api/v1/users", "409"),
    ]
    with state_of(app_client).sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.client_ip != IP)) == 0
