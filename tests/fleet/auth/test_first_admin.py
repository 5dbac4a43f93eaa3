"""The first admin: `sohoa-fleet user add` and the `admin` that `serve` creates on an empty database."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from fleet.auth.cli import ensure_initial_admin
from fleet.auth.config import AuthConfig
from fleet.auth.models import User
from fleet.db import make_engine, session_factory
from tests.authn import login_as
from tests.fleet.auth.conftest import Clock, open_app
from tests.fleet.conftest import make_config


def test_serve_creates_admin_once_with_its_password_only_in_a_0600_file(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty database gets `admin` with a random password in a file only its owner reads; the
    log names the file, not the password; a second start (users exist) creates nothing."""
    caplog.set_level(logging.DEBUG)
    db = f"sqlite:///{tmp_path}/fleet.db"
    secret_file = tmp_path / "data" / "initial-admin-password"
    config = make_config(tmp_path, db).model_copy(update={"auth": AuthConfig(initial_admin_file=secret_file)})
    assert ensure_initial_admin(config) == secret_file
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    password = secret_file.read_text().strip()
    assert len(password) >= 16
    assert str(secret_file) in caplog.text and password not in caplog.text
    secret_file.unlink()
    assert ensure_initial_admin(config) is None and not secret_file.exists()

    with open_app(tmp_path, db, clock) as client:
        login_as(client, "admin", password)
        assert client.get("/api/v1/auth/me").json()["role"] == "province_admin"


def test_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    """`sohoa-fleet user add` with the password on stdin; bad input tried: a unit admin without
    a unit, a too-short password, a name taken: each refused with one line and exit status != 0."""
    db = f"sqlite:///{tmp_path}/fleet.db"
    config_file = tmp_path / "fleet.yaml"
    config_file.write_text(yaml.safe_dump({"database": {"url": db}}))

    def add(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleet", "user", "add", *args, "--config", str(config_file)],
                              input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    ok = add("hoa", "--role", "province_admin", stdin="một-mật-khẩu-dài\n")
    assert ok.returncode == 0, ok.stderr
    assert "một-mật-khẩu-dài" not in ok.stdout + ok.stderr
    assert add("lan", "--role", "unit_admin", stdin="một-mật-khẩu-dài\n").returncode != 0
    short = add("lan", "--role", "viewer", stdin="short\n")
    assert short.returncode != 0 and "at least" in short.stderr and len(short.stderr.strip().splitlines()) == 1
    taken = add("hoa", "--role", "viewer", stdin="một-mật-khẩu-dài\n")
    assert taken.returncode != 0 and "exists" in taken.stderr
    generated = add("minh", "--role", "viewer", "--generate", stdin="")
    assert generated.returncode == 0 and "password (shown only now): " in generated.stdout
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            users = {u.name: u for u in session.scalars(select(User))}
    finally:
        engine.dispose()
    assert set(users) == {"hoa", "minh"}
    assert users["hoa"].password_hash.startswith("$argon2id$") and users["hoa"].role == "province_admin"
    assert not (tmp_path / "var").exists()  # `user add` never creates the first-admin file
