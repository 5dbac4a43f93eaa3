"""User administration through the API, and the login page of the web pages."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from fleet.auth.audit import entry as audit_entry
from fleet.auth.models import User
from tests.authn import login, login_as, make_user
from tests.fleet.auth.conftest import state_of
from tests.fleet.auth.world import build_world

SECRET = "bí-mật-không-được-lộ-42"


def test_user_administration_by_role(app_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """A province admin creates a district admin; the district admin creates a viewer in a commune
    of theirs. Tried and refused: a unit admin creating a province admin (403) or a user in another
    district (403), reading or changing a user outside (404), demoting themselves (409); a too-short
    password (422, not echoed); a unit admin without a unit (422). A disabled user's session stops at
    once. The password shows in no response, log line or table."""
    caplog.set_level(logging.DEBUG)
    build_world(app_client)
    login(app_client, role="province_admin")
    bodies: list[str] = []

    def post(json: dict[str, object], status: int) -> dict[str, object]:
        r = app_client.post("/api/v1/users", json=json)
        assert r.status_code == status, r.text
        bodies.append(r.text)
        return dict(r.json()) if isinstance(r.json(), dict) else {}

    district = post({"name": "lan", "password": SECRET, "role": "unit_admin", "unit_code": "991"}, 201)
    assert district == {"id": district["id"], "name": "lan", "role": "unit_admin", "unit_code": "991",
                        "disabled": False, "created_at": district["created_at"]}
    other = post({"name": "tu", "password": SECRET, "role": "viewer", "unit_code": "99004"}, 201)
    post({"name": "short", "password": "ngắn", "role": "viewer"}, 422)
    post({"name": "nounit", "password": SECRET, "role": "unit_admin"}, 422)
    post({"name": "ghost", "password": SECRET, "role": "viewer", "unit_code": "12345"}, 422)  # no such unit
    post({"name": "bad name!", "password": SECRET, "role": "viewer"}, 422)
    assert "ngắn" not in " ".join(bodies)

    app_client.headers.pop("Authorization")
    app_client.cookies.clear()
    login_as(app_client, "lan", SECRET)
    viewer = post({"name": "mai", "password": SECRET, "role": "viewer", "unit_code": "99002"}, 201)
    post({"name": "boss", "password": SECRET, "role": "province_admin"}, 403)
    post({"name": "far", "password": SECRET, "role": "viewer", "unit_code": "99004"}, 403)
    assert {u["name"] for u in app_client.get("/api/v1/users").json()} == {"lan", "mai"}
    outside = app_client.get(f"/api/v1/users/{other['id']}")
    assert (outside.status_code, outside.json()) == (404, app_client.get("/api/v1/users/999999").json())
    assert app_client.patch(f"/api/v1/users/{other['id']}", json={"disabled": True}).status_code == 404
    assert app_client.patch(f"/api/v1/users/{viewer['id']}", json={"unit_code": "99004"}).status_code == 403
    assert app_client.patch(f"/api/v1/users/{district['id']}", json={"role": "viewer"}).status_code == 409
    assert app_client.patch(f"/api/v1/users/{viewer['id']}", json={"extra": 1}).status_code == 422

    # The viewer logs in elsewhere; disabling them ends that session at once.
    with TestClient(app_client.app, client=("198.51.100.20", 1)) as elsewhere:
        login_as(elsewhere, "mai", SECRET)
        assert elsewhere.get("/api/v1/auth/me").status_code == 200
        assert app_client.patch(f"/api/v1/users/{viewer['id']}", json={"disabled": True}).json()["disabled"]
        assert elsewhere.get("/api/v1/auth/me").status_code == 401
        assert elsewhere.post("/api/v1/auth/login", json={"name": "mai", "password": SECRET}).status_code == 401
        # Re-enabled with a new password: the old one no longer works.
        r = app_client.patch(f"/api/v1/users/{viewer['id']}", json={"disabled": False, "password": SECRET + "-2"})
        assert r.status_code == 200 and SECRET not in r.text
        assert elsewhere.post("/api/v1/auth/login", json={"name": "mai", "password": SECRET}).status_code == 401
        login_as(elsewhere, "mai", SECRET + "-2")
        # The viewer changes their own password (a write any user may make); a wrong current one: 403.
        assert elsewhere.post("/api/v1/auth/password", json={"current_password": "nope",
                                                             "new_password": SECRET + "-3"}).status_code == 403
        assert elsewhere.post("/api/v1/auth/password", json={"current_password": SECRET + "-2",
                                                             "new_password": SECRET + "-3"}).status_code == 204
        assert elsewhere.get("/api/v1/auth/me").status_code == 200  # this session stays

    audit = app_client.get("/api/v1/audit", params={"action": "user.*", "limit": 100}).json()
    assert {(e["action"], e["actor"]) for e in audit} >= {("user.create", "lan"), ("user.update", "lan"),
                                                          ("user.password", "mai")}
    with state_of(app_client).sessions() as session:
        hashes = list(session.scalars(select(User.password_hash)))
        dump = " ".join(str(r) for t in ("users", "user_sessions", "audit_log")
                        for r in session.execute(text(f"SELECT * FROM {t}")))  # noqa: S608 - fixed names
    assert all(h.startswith("$argon2id$") for h in hashes)
    for secret in (SECRET, SECRET + "-2", SECRET + "-3"):
        assert secret not in dump and secret not in caplog.text and all(secret not in b for b in bodies)


def test_login_page_and_logout(app_client: TestClient) -> None:
    """The web pages send a browser without a session to /login and back where it was; tried: a
    wrong password (the form again, 401, in both languages), a `next` pointing to another site
    (ignored: back to /), logging out (the cookie no longer opens anything)."""
    from tests.authn import make_user

    make_user(state_of(app_client).sessions, name="hoa", password=SECRET, role="viewer")
    first = app_client.get("/fleet?device=kiosk-1", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Ffleet%3Fdevice%3Dkiosk-1"
    page = app_client.get(first.headers["location"])
    assert page.status_code == 200 and "Đăng nhập" in page.text and "Log in" in page.text
    assert 'value="/fleet?device=kiosk-1"' in page.text

    wrong = app_client.post("/login", data={"name": "hoa", "password": "sai", "next": "/fleet"},
                            follow_redirects=False)
    assert wrong.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu" in wrong.text and "Wrong" in wrong.text
    assert "sohoa_session" not in wrong.headers.get("set-cookie", "")

    ok = app_client.post("/login", data={"name": "hoa", "password": SECRET, "next": "/fleet?device=kiosk-1"},
                         follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/fleet?device=kiosk-1"
    assert "httponly" in ok.headers["set-cookie"].lower() and "samesite=strict" in ok.headers["set-cookie"].lower()
    home = app_client.get("/", follow_redirects=False)
    assert home.status_code == 200 and "hoa" in home.text and 'action="/logout"' in home.text

    away = app_client.post("/login", data={"name": "hoa", "password": SECRET, "next": "//evil.example/x"},
                           follow_redirects=False)
    assert away.headers["location"] == "/"

    # A browser's form post says where it comes from; the fleet refuses a cookie write without it.
    out = app_client.post("/logout", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert app_client.get("/", follow_redirects=False).status_code == 303
    assert app_client.get("/api/v1/auth/me").status_code == 401


def test_audit_is_scoped_by_actor_kind_and_device_ids_are_not_user_names(app_client: TestClient) -> None:
    """Bad input: a unit admin of district 991 creates a viewer named like the device of commune
    99004 (district 992): refused (409). A user of that name that exists anyway (made before the
    rule) does not make the device's audit entries, in the other district, visible to the unit
    admin; their own viewers' entries still are."""
    world = build_world(app_client)
    state = state_of(app_client)
    make_user(state.sessions, name="lan", password=SECRET, role="unit_admin", unit_code="991")
    with state.sessions() as session:
        session.add(audit_entry(at=state.now(), action="file.upload", actor=world.other.device_id,
                                actor_kind="device", target=f"file {world.other.sha256}", outcome="201"))
        session.commit()
    login_as(app_client, "lan", SECRET)
    refused = app_client.post("/api/v1/users", json={"name": world.other.device_id, "password": SECRET,
                                                     "role": "viewer", "unit_code": "99001"})
    assert refused.status_code == 409, refused.text
    assert app_client.post("/api/v1/users", json={"name": "mai", "password": SECRET, "role": "viewer",
                                                  "unit_code": "99001"}).status_code == 201
    make_user(state.sessions, name=world.other.device_id, password=SECRET, role="viewer", unit_code="99001")
    entries = app_client.get("/api/v1/audit", params={"limit": 1000}).json()
    assert not [e for e in entries if e["actor"] == world.other.device_id and e["action"] == "file.upload"]
    assert ("user.create", "lan") in {(e["action"], e["actor"]) for e in entries}
    with TestClient(app_client.app, client=("198.51.100.21", 1)) as viewer:
        login_as(viewer, "mai", SECRET)
    assert ("auth.login", "mai") in {(e["action"], e["actor"])
                                     for e in app_client.get("/api/v1/audit", params={"limit": 1000}).json()}
