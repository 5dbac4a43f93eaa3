"""Login, sessions and the login rate limit through the real API, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text

from fleet.auth.config import AuthConfig
from fleet.auth.models import AuditEntry, User, UserSession
from fleet.auth.sessions import token_hash
from tests.authn import make_user
from tests.fleet.auth.conftest import Clock, open_app, state_of

PASSWORD = "lúa-chín-vàng-2026"


def test_login_session_logout_and_no_secret_anywhere(
    tmp_path: Path, db_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong password, a session used after logout and after expiry are all refused; the password
    and the token appear in no response body but the login's, in no log line and in no table."""
    caplog.set_level(logging.DEBUG)
    with open_app(tmp_path, db_url, clock, AuthConfig(session_ttl_s=600)) as client:
        state = state_of(client)
        make_user(state.sessions, name="lan", password=PASSWORD, role="unit_admin", unit_code="01001")
        bodies: list[str] = []

        wrong = client.post("/api/v1/auth/login", json={"name": "lan", "password": "not-it"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        unknown = client.post("/api/v1/auth/login", json={"name": "nobody", "password": PASSWORD})
        assert unknown.status_code == 401 and unknown.json() == wrong.json()  # an unknown name looks the same
        # A malformed body is refused without echoing the password back.
        bad = client.post("/api/v1/auth/login", json={"name": "x" * 65, "password": PASSWORD})
        assert bad.status_code == 422
        missing = client.post("/api/v1/auth/login", json={"password": PASSWORD})
        assert missing.status_code == 422
        bodies += [wrong.text, unknown.text, bad.text, missing.text]

        ok = client.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD})
        assert ok.status_code == 200, ok.text
        token = ok.json()["token"]
        assert ok.json()["expires_at"].startswith("2026-11-25T09:10:00")
        cookie = ok.headers["set-cookie"].lower()
        assert "sohoa_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie

        bearer = {"Authorization": f"Bearer {token}"}
        client.cookies.clear()
        me = client.get("/api/v1/auth/me", headers=bearer)
        assert me.status_code == 200 and me.json() == {"id": me.json()["id"], "name": "lan", "role": "unit_admin",
                                                       "unit_code": "01001"}
        bodies.append(me.text)
        # The cookie alone works too (web pages).
        client.cookies.set("sohoa_session", token)
        assert client.get("/api/v1/auth/me").status_code == 200
        client.cookies.clear()
        # A wrong token and a token with a wrong scheme are refused.
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Basic {token}"}).status_code == 401

        # Expiry: 1 s before it the session works, at it not.
        clock.advance(599)
        assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200
        clock.advance(1)
        assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401

        # Logout ends the session at once.
        token2 = client.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD}).json()["token"]
        bearer2 = {"Authorization": f"Bearer {token2}"}
        assert client.post("/api/v1/auth/logout", headers=bearer2).status_code == 204
        assert client.get("/api/v1/auth/me", headers=bearer2).status_code == 401

        with state.sessions() as session:
            user = session.scalars(select(User).where(User.name == "lan")).one()
            assert user.password_hash.startswith("$argon2id$")
            stored = set(session.scalars(select(UserSession.token_hash)))
            assert token_hash(token2) not in stored  # logged out
            # Everything any table holds, as text: neither the password nor a token in it.
            dump = " ".join(
                str(row) for table in ("users", "user_sessions", "audit_log")
                for row in session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            )
            outcomes = [(e.actor, e.outcome, e.client_ip) for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "auth.login").order_by(AuditEntry.id))]
        assert outcomes == [("lan", "failed", "203.0.113.7"), ("nobody", "failed", "203.0.113.7"),
                            ("lan", "ok", "203.0.113.7"), ("lan", "ok", "203.0.113.7")]
        for secret in (PASSWORD, token, token2):
            assert secret not in dump
            assert secret not in caplog.text
            assert all(secret not in body for body in bodies)


def test_login_rate_limit_per_name_and_address(tmp_path: Path, db_url: str, clock: Clock) -> None:
    """Five wrong passwords for one name from one address: the sixth try, even with the right
    password, gets 429 with Retry-After; another address is not blocked; after the window the
    right password works and the counter starts again."""
    auth = AuthConfig(login_max_failures=5, login_window_s=900)
    with open_app(tmp_path, db_url, clock, auth) as client:
        make_user(state_of(client).sessions, name="minh", password=PASSWORD, role="viewer")
        for i in range(5):
            clock.advance(10)
            r = client.post("/api/v1/auth/login", json={"name": "minh", "password": f"guess-{i}"})
            assert r.status_code == 401, i
        clock.advance(10)
        blocked = client.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD})
        assert blocked.status_code == 429
        # The first failure (50 s ago) leaves the 900 s window in 850 s.
        assert blocked.headers["retry-after"] == "850"
        assert "token" not in blocked.json()

    # Another address may still log in as minh (same database).
    with open_app(tmp_path, db_url, clock, auth, address="198.51.100.9") as elsewhere:
        assert elsewhere.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD}).status_code == 200

    with open_app(tmp_path, db_url, clock, auth) as client:
        clock.advance(849)
        assert client.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD}).status_code == 429
        clock.advance(1)
        assert client.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD}).status_code == 200
        # After a success the count starts again: four failures do not block.
        for _ in range(4):
            assert client.post("/api/v1/auth/login", json={"name": "minh", "password": "nope"}).status_code == 401
        assert client.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD}).status_code == 200
        with state_of(client).sessions() as session:
            limited = session.scalars(select(AuditEntry).where(AuditEntry.outcome == "rate_limited")).all()
        assert [(e.actor, e.client_ip) for e in limited] == [("minh", "203.0.113.7"), ("minh", "203.0.113.7")]


def test_login_rate_limit_per_address_across_names_and_per_name_across_addresses(
        tmp_path: Path, db_url: str, clock: Clock) -> None:
    """Bad input: one address guessing a different name each time (never two failures for one
    name), then many addresses guessing one name (never two failures from one address). Each
    pattern is refused (429, right password included) once over its own limit; other names and
    other addresses are not held by it."""
    auth = AuthConfig(login_max_failures=5, login_max_failures_per_address=8, login_max_failures_per_name=6,
                      login_window_s=900)
    with open_app(tmp_path, db_url, clock, auth) as client:
        sessions = state_of(client).sessions
        for name in ("minh", "lan", "hoa"):
            make_user(sessions, name=name, password=PASSWORD, role="viewer")
        for i in range(8):
            clock.advance(1)
            assert client.post("/api/v1/auth/login", json={"name": f"guess-{i}", "password": "x"}).status_code == 401
        blocked = client.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) == 900 - 7
    with open_app(tmp_path, db_url, clock, auth, address="198.51.100.9") as elsewhere:
        assert elsewhere.post("/api/v1/auth/login", json={"name": "minh", "password": PASSWORD}).status_code == 200

    for i in range(6):
        clock.advance(1)
        with open_app(tmp_path, db_url, clock, auth, address=f"192.0.2.{10 + i}") as spread:
            assert spread.post("/api/v1/auth/login", json={"name": "lan", "password": "x"}).status_code == 401
    with open_app(tmp_path, db_url, clock, auth, address="192.0.2.99") as fresh:
        assert fresh.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD}).status_code == 429
        assert fresh.post("/api/v1/auth/login", json={"name": "hoa", "password": PASSWORD}).status_code == 200
    clock.advance(900)
    with open_app(tmp_path, db_url, clock, auth, address="192.0.2.99") as later:
        assert later.post("/api/v1/auth/login", json={"name": "lan", "password": PASSWORD}).status_code == 200


def test_login_rate_limit_holds_under_simultaneous_guesses(tmp_path: Path, db_url: str, clock: Clock) -> None:
    """Bad input: 16 wrong passwords for one name from one address sent at the same moment. The
    limit is 5: exactly 5 are checked (401; never more, and never none, which a check counting
    tries still in progress that started after its own once allowed on PostgreSQL), every other one
    is refused (429) before its password is looked at, and no try is left counted as in progress."""
    auth = AuthConfig(login_max_failures=5, login_window_s=900)
    with open_app(tmp_path, db_url, clock, auth) as client:
        make_user(state_of(client).sessions, name="minh", password=PASSWORD, role="viewer")
        start = threading.Barrier(16)

        def guess(i: int) -> int:
            start.wait(10)
            return int(client.post("/api/v1/auth/login", json={"name": "minh", "password": f"guess-{i}"}).status_code)

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(guess, range(16)))
        assert codes.count(401) == 5 and codes.count(429) == 11, codes
        with state_of(client).sessions() as session:
            outcomes = session.scalars(select(AuditEntry.outcome).where(AuditEntry.action == "auth.login")).all()
        assert sorted(set(outcomes)) == ["failed", "rate_limited"]
