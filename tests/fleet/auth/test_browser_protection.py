"""What the browser is told and what it may not do: security headers on every answer (pages, API,
errors), Secure cookies and HSTS over HTTPS, and cross-site writes riding on the session cookie
refused (wrong or missing Origin, a form's content type, a CSV import sent as text/plain)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from fleet.api.security import FILE_CSP
from tests.authn import make_user
from tests.fleet.auth.conftest import Clock, open_app, state_of
from tests.fleet.auth.test_guard import concrete, routes_of

PASSWORD = "mật-khẩu-đủ-dài-2026"
CSV = "code,name,tier,parent_code,valid_from,valid_to\n99,Tỉnh thử,province,,2025-07-01,\n"


def _cookie_session(client: TestClient) -> None:
    """Log in as a province admin the way the web pages do: only the httponly cookie remains."""
    make_user(state_of(client).sessions, name="lan", password=PASSWORD, role="province_admin")
    r = client.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD})
    assert r.status_code == 200 and "sohoa_session=" in r.headers["set-cookie"]


def test_every_answer_carries_the_security_headers(tmp_path: Path, clock: Clock) -> None:
    """Tried: every GET route of the app (enumerated), logged in, plus a 404 and a 401. Pages get
    a policy allowing exactly their own inline scripts; everything else the sandboxing one."""
    with open_app(tmp_path, f"sqlite:///{tmp_path}/fleet.db", clock) as client:
        _cookie_session(client)
        answers = [client.get(concrete(t), headers={"Origin": "http://testserver"}, follow_redirects=False)
                   for m, t in routes_of(client) if m == "GET"]
        answers.append(client.get("/api/v1/no-such-thing"))
        client.cookies.clear()
        answers.append(client.get("/api/v1/devices"))
        assert len(answers) > 30
        pages = 0
        for r in answers:
            where = (r.request.url.path, r.status_code)
            assert r.headers["x-content-type-options"] == "nosniff", where
            assert r.headers["x-frame-options"] == "DENY", where
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp, where
            assert "strict-transport-security" not in r.headers  # plain HTTP here
            if r.headers.get("content-type", "").startswith("text/html"):
                pages += 1
                for body in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", r.text, re.DOTALL):
                    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                    assert f"'sha256-{digest}'" in csp, where
                assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
            else:
                assert csp == FILE_CSP, where
        assert pages >= 4


def test_over_https_cookies_are_secure_and_hsts_is_sent(tmp_path: Path, clock: Clock) -> None:
    """``cookie_secure`` is off in the config, but the fleet serves TLS: the session cookie is
    Secure anyway and every answer carries Strict-Transport-Security."""
    with open_app(tmp_path, f"sqlite:///{tmp_path}/fleet.db", clock) as client:
        client.base_url = client.base_url.copy_with(scheme="https")
        make_user(state_of(client).sessions, name="lan", password=PASSWORD, role="province_admin")
        r = client.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD})
        assert r.status_code == 200
        assert "; secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_cross_site_writes_with_the_session_cookie_are_refused(tmp_path: Path, clock: Clock) -> None:
    """Bad input: cookie-authenticated writes with no Origin, another site's Origin, a sibling
    subdomain's, the fleet's host on another port or scheme, a ``null`` Origin, a foreign Referer;
    a form content type on an API write and a CSV import as text/plain (simple requests a page
    elsewhere can send). All 403 and nothing changes. The fleet's own Origin, or Referer, passes;
    a bearer token needs neither."""
    with open_app(tmp_path, f"sqlite:///{tmp_path}/fleet.db", clock) as client:
        _cookie_session(client)
        user = {"name": "mai", "password": PASSWORD, "role": "viewer"}
        for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "http://admin.testserver"},
                        {"Origin": "http://testserver:8443"}, {"Origin": "https://testserver"}, {"Origin": "null"},
                        {"Referer": "https://evil.example/testserver"}):
            r = client.post("/api/v1/users", json=user, headers=headers)
            assert r.status_code == 403, (headers, r.status_code)
        own = {"Origin": "http://testserver"}
        r = client.post("/api/v1/users", content=b'{"name": "mai"}', headers={**own, "Content-Type": "text/plain"})
        assert r.status_code == 403
        r = client.post("/api/v1/units/import", content=CSV.encode(), headers={**own, "Content-Type": "text/plain"})
        assert r.status_code == 403 and "text/csv" in r.text
        assert client.post("/api/v1/auth/logout", headers={"Origin": "https://evil.example"}).status_code == 403
        assert [u["name"] for u in client.get("/api/v1/users").json()] == ["lan"]
        assert client.post("/api/v1/users", json=user, headers=own).status_code == 201
        r = client.post("/api/v1/units/import", content=CSV.encode(), headers={**own, "Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        referer = {"Referer": "http://testserver/operations"}
        assert client.post("/api/v1/users", json={**user, "name": "tu"}, headers=referer).status_code == 201
        client.cookies.clear()
        token = client.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD}).json()["token"]
        client.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.post("/api/v1/users", json={**user, "name": "hoa"}, headers=bearer).status_code == 201
