"""``sohoa-fleet`` as a user runs it: a real process, real ports, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from fleet.cli import main
from tests.authn import login_as
from tests.services import Mosquitto, free_port, wait_port


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_version_and_validate_config(tmp_path: Path, capsys: object) -> None:
    """Bad input tried: a config file with a mistyped key and an out-of-range port (each
    reported with its line), a database password in the file, a file that is not YAML."""
    good = tmp_path / "good.yaml"
    good.write_text("http:\n  port: 8080\n")
    assert main(["validate-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("database:\n  url: sqlite:///x.db\nhttp:\n  port: 99999\n  prot: 1\n")
    result = run("validate-config", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}:4: http.port" in result.stderr and f"{bad}:5: http.prot" in result.stderr
    assert "Traceback" not in result.stderr
    secret = tmp_path / "secret.yaml"
    secret.write_text("database:\n  url: postgresql+psycopg://fleet:hunter2@db/fleet\n")
    result = run("validate-config", str(secret), cwd=tmp_path)
    assert result.returncode == 1 and "SOHOA_FLEET_DATABASE_URL" in result.stderr and "hunter2" not in result.stderr
    junk = tmp_path / "junk.yaml"
    junk.write_text("http: [1,\n")
    assert run("validate-config", str(junk), cwd=tmp_path).returncode == 1
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("sohoa-fleet ")


def test_migrate_then_serve_and_stop_on_sigterm(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`migrate` creates the SQLite database under ./var/fleet by default; `serve` answers on
    its port with the ingest connected, and SIGTERM stops it cleanly (exit 0)."""
    result = run("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "fleet" / "fleet.db").is_file()
    port = free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(f"http:\n  port: {port}\nbroker:\n  port: {mosquitto.port}\n")
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            health = http.get("/healthz").json()
            assert health["database"] == "ok"
            # The first start created `admin`, its password only in a 0600 file under ./var/fleet.
            login_as(http, "admin", (tmp_path / "var/fleet/initial-admin-password").read_text().strip())
            assert http.get("/api/v1/devices").json() == []
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    """Bad input tried: a PostgreSQL URL where nothing listens. One line on stderr, exit 1,
    no traceback unless DEBUG=1."""
    url = f"postgresql+psycopg://fleet@127.0.0.1:{free_port()}/fleet"
    result = run("migrate", cwd=tmp_path, env={"SOHOA_FLEET_DATABASE_URL": url})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sohoa-fleet: cannot migrate"), result.stderr
    debug = run("migrate", cwd=tmp_path, env={"SOHOA_FLEET_DATABASE_URL": url, "DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_retention_pass_from_the_command_line(tmp_path: Path) -> None:
    """``sohoa-fleet retention`` as an admin runs it after an upgrade: three reports of one hour
    ten days ago and one from today → the hour keeps its first, today's stays. Bad input tried: an
    age limit inside the full-detail window (one line naming the key, exit 1, nothing deleted)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from fleet.db import make_engine, migrate, session_factory
    from fleet.models import Device, TelemetrySample

    url = f"sqlite:///{tmp_path}/fleet.db"
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    old = (now - timedelta(days=10)).replace(minute=5, second=0, microsecond=0)
    with session_factory(engine).begin() as session:
        session.add(Device(id="kiosk-1", first_seen=old, last_seen=now, status="online"))
        session.flush()
        for n, ts in enumerate([old, old + timedelta(minutes=20), old + timedelta(minutes=40), now]):
            session.add(TelemetrySample(id=f"0000000{n}", device_id="kiosk-1", ts=ts, data={}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"database:\n  url: {url}\nretention:\n  telemetry_full_days: 7\n  telemetry_keep_days: 5\n")
    result = run("retention", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 1 and "retention" in result.stderr and "Traceback" not in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(f"database:\n  url: {url}\n")
    result = run("retention", "--config", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "telemetry: 2 reports thinned" in result.stdout and "0 dropped for age, 1 devices" in result.stdout
    with session_factory(engine)() as session:
        assert list(session.scalars(select(TelemetrySample.id).order_by(TelemetrySample.id))) == ["00000000",
                                                                                                   "00000003"]
    engine.dispose()
