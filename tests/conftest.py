"""Fixtures shared by the whole suite: one per real service, each cleaned up in ``finally``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import chromium
from tests.services import Mosquitto, Postgres, sane_config_dir, tmpfs

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SOHOA_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs real hardware; set SOHOA_HARDWARE=1")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker on a free loopback port, with persistence (stop()/start() keep sessions)."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def sane_dir(tmp_path: Path) -> Path:
    """A SANE_CONFIG_DIR with only the ``test`` backend enabled (pass it to the agent's env)."""
    return sane_config_dir(tmp_path / "sane")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for the whole session; its URL for SQLAlchemy."""
    pg = Postgres(tmp_path_factory.mktemp("pg"))
    pg.start()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one for the module (tests.browser)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def artifacts() -> Path:
    """Where tests save screenshots and files a person may want to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a disk that really fills up."""
    with tmpfs(tmp_path / "disk", "4m") as mount_point:
        yield mount_point


class _WorkerTallies:
    """With pytest-xdist each worker counts its own hostile inputs: the controller adds them up."""

    @staticmethod
    def pytest_testnodedown(node: Any, error: object) -> None:
        from tests.fuzzing import add_tally

        add_tally(getattr(node, "workeroutput", {}).get("fuzz_tally", {}))


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_WorkerTallies(), "sohoa-worker-tallies")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The bad-input suite's figures: hostile inputs tried per surface (written by the controller
    of a parallel run, from every worker's counts)."""
    from tests.fuzzing import tally, write_tally

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fuzz_tally"] = tally()
        return
    write_tally(Path(str(session.config.rootpath)) / "test-artifacts")
