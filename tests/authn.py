"""Logging tests in: create a user in the fleet's database and log in through the real API.

>>> # with TestClient(create_app(config)) as client:
>>> #     login(client)                      # a province admin; client.headers carry the token
>>> #     login(client, role="unit_admin", unit_code="01001")
"""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.api.state import fleet_state
from fleet.auth.models import User
from fleet.auth.principal import Principal, Role
from fleet.auth.sessions import principal_of

if TYPE_CHECKING:
    from playwright.sync_api import Page

_names = itertools.count(1)

# Test users get a cheap argon2id hash (the parameters travel inside the hash, so the fleet
# verifies it as any other): a login then costs milliseconds, not a quarter second.
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

ADMIN_NAME = "test-admin"
ADMIN_PASSWORD = "test-admin-password-1"


def make_user(
    sessions: sessionmaker[Session],
    *,
    name: str,
    password: str,
    role: Role = "province_admin",
    unit_code: str | None = None,
) -> Principal:
    """Insert a user straight into the database (the fleet may run in another thread or process)."""
    with sessions() as session:
        user = User(name=name, password_hash=_cheap.hash(password), role=role, unit_code=unit_code,
                    disabled=False, created_at=datetime.now(UTC))
        session.add(user)
        session.commit()
        return principal_of(user)


def ensure_admin(sessions: sessionmaker[Session]) -> tuple[str, str]:
    """The suite's standard province admin (created once per database): (name, password), for
    a fleet served in a thread or subprocess and logged into with :func:`login_as` or
    :func:`browser_login`."""
    with sessions() as session:
        if session.scalar(select(User.id).where(User.name == ADMIN_NAME)) is None:
            session.add(User(name=ADMIN_NAME, password_hash=_cheap.hash(ADMIN_PASSWORD), role="province_admin",
                             unit_code=None, disabled=False, created_at=datetime.now(UTC)))
            session.commit()
    return ADMIN_NAME, ADMIN_PASSWORD


def login_as(client: Any, name: str, password: str) -> str:
    """Log in through ``POST /api/v1/auth/login`` and send the token on every later request of
    ``client`` (a TestClient or an httpx.Client); returns the token."""
    response = client.post("/api/v1/auth/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return token


def login(
    client: TestClient,
    *,
    role: Role = "province_admin",
    unit_code: str | None = None,
    name: str | None = None,
) -> Principal:
    """Create a user with ``role`` in the app's database and log ``client`` in as them.
    Call it inside ``with TestClient(app) as client:`` (the database is migrated on opening)."""
    state = fleet_state(client.app)
    name = name or f"{role.replace('_', '-')}-{next(_names)}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    principal = make_user(state.sessions, name=name, password=password, role=role, unit_code=unit_code)
    login_as(client, name, password)
    return principal


def browser_login(page: Page, base_url: str, name: str, password: str) -> None:
    """Log a Playwright page in through the /login form; returns once the session cookie is set."""
    page.goto(f"{base_url.rstrip('/')}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    cookies = page.context.cookies(base_url)
    assert any(c.get("name") == "sohoa_session" for c in cookies), "the login form did not log in"
