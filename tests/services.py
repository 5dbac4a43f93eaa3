"""Real services the integration tests start on loopback: mosquitto, the SANE ``test``
backend (through its own SANE_CONFIG_DIR) and PostgreSQL. Nothing here touches system
configuration; every service lives in a temporary directory and dies with the test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/nonexistent"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on ``port`` (poll, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class Mosquitto:
    """A mosquitto broker on 127.0.0.1 with persistence, so it can be stopped and restarted
    in the middle of a test while keeping persistent sessions and queued QoS 1 messages."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "max_inflight_messages 100\n"
            "max_queued_messages 100000\n"
            "message_size_limit 0\n"
            # As root, mosquitto would switch to the `mosquitto` user, which cannot write our
            # temporary directory: no log, and no persistence across a restart.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """``kill -9``: no save, so whatever the broker held since its last save is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sane_config_dir(workdir: Path, **options: str) -> Path:
    """A SANE_CONFIG_DIR enabling only the ``test`` backend, with ``test.conf`` options
    (e.g. ``number_of_devices="1"``). Point SANE_CONFIG_DIR at it before ``sane.init()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dll.conf").write_text("test\n")
    conf = {"number_of_devices": "1", "mode": "Color", "depth": "8", "resolution": "75",
            "test-picture": '"Color pattern"', **options}
    (workdir / "test.conf").write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
    return workdir


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` user when we
    are root, since the server refuses to run as root)."""

    def __init__(self, workdir: Path) -> None:
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            # pytest's temporary directories are 0700 root: the server's user could not reach them.
            workdir = Path(tempfile.mkdtemp(prefix="sohoa-pg-"))
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.port = free_port()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise FileNotFoundError(f"PostgreSQL server binaries not found under {PG_BIN.parent}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
            self.workdir.chmod(0o700)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "sohoa",
                  "--no-sync", "-E", "UTF8")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-w", "-l", str(self.workdir / "pg.log"),
                  "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "sohoa", "sohoa")

    def stop(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop")
        if self.user is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://sohoa@127.0.0.1:{self.port}/sohoa"


@contextmanager
def postgres(workdir: Path) -> Iterator[Postgres]:
    pg = Postgres(workdir)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


class ConfiguredMosquitto:
    """mosquitto started with a configuration file written elsewhere (e.g. the TLS one from
    ``provisioning.broker``), with ``reload()`` = SIGHUP, waiting until the broker's log says it
    re-read its configuration."""

    def __init__(self, conf: Path, port: int, log: Path) -> None:
        self.conf, self.port, self.log = conf, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``needle`` appears ``count`` times in the log (poll, bounded)."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(needle) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} not seen {count} time(s) in {self.log} after {timeout}s")
            time.sleep(0.02)

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def reload(self) -> None:
        assert self.proc is not None
        before = self.log_text().count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("Reloading config", before + 1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        """A crash: SIGKILL, so nothing is saved on the way out."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> ConfiguredMosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def provisioned_mosquitto(workdir: Path, *ingest: str) -> Iterator[tuple[Path, ConfiguredMosquitto, Path]]:
    """(pki dir, mosquitto running the TLS configuration ``python -m provisioning init`` wrote, its
    pid file for the fleet's SIGHUP). ``ingest``: service identities to issue (default: its own)."""
    from provisioning.cli import main as provisioning_main

    pki, port = workdir / "pki", free_port()
    args = ["init", str(pki), "--tls-port", str(port), "--bind", "127.0.0.1"]
    for name in ingest:
        args += ["--ingest", name]
    if os.geteuid() == 0:
        args += ["--run-as", "root"]  # pytest's tmp dirs are 0700 root: the mosquitto user could not enter
    assert provisioning_main(args) == 0
    broker = ConfiguredMosquitto(pki / "broker" / "mosquitto.conf", port, pki / "broker" / "mosquitto.log")
    broker.start()
    try:
        assert broker.proc is not None
        pid_file = workdir / "mosquitto.pid"
        pid_file.write_text(f"{broker.proc.pid}\n")
        yield pki, broker, pid_file
    finally:
        broker.stop()


def stop_process(proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> int:
    """SIGTERM and wait for a clean exit (its return code); a process that ignores it is killed
    and the test fails: a clean stop is part of what the programs promise."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{what} did not stop within {timeout:.0f} s on SIGTERM") from None
    return int(proc.returncode)


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real, small file system that really fills up (``size`` as mount takes it, e.g. ``4m``).
    Skips the test where mounting is not allowed (not root, or a sandbox that refuses it)."""
    import pytest

    mount_point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs was refused here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
