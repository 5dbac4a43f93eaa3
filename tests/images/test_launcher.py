"""The launcher (``images/launcher.py``) as systemd runs it, a real process that execs the agent:
a real signed bundle whose code raises at import is installed by the updater, crashes at each
start, and after the allowed starts the launcher switches back to the working slot; the updater
of the next start reports ``rolled_back``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.update_slots import SlotStore
from device.updater import Updater
from images import launcher
from images.bundle import generate_keys
from images.manifest import sha256_file
from protocol.commands import UpdateOffer
from tests.images.device_harness import DEVICE_ID, FLEET_URL, Recorder, bootstrap, config, probe
from tests.images.helpers import RangeServer, ServedFile, app_bundle, range_server

LAUNCHER = Path(launcher.__file__)
AGENT = [sys.executable, "-c", "import sohoa_probe, os; print('started', os.getpid(), sohoa_probe.OK)"]


class ProcessReplaced(BaseException):
    """The agent's restart after the switch: the process ends there (systemd starts it again)."""


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with range_server() as srv:
        yield srv


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "opt-sohoa"
    bootstrap(root, tmp_path)
    return root


def start(root: Path, max_failed_starts: int = 3) -> subprocess.CompletedProcess[str]:
    """One start of the service: the launcher, which execs the agent."""
    return subprocess.run(
        [sys.executable, str(LAUNCHER), "--root", str(root), "--max-failed-starts", str(max_failed_starts), "--",
         *AGENT],
        capture_output=True, text=True, timeout=60, check=False,
    )


def updater(root: Path, pub: Path, rec: Recorder) -> Updater:
    def restart() -> None:
        rec.restart()
        raise ProcessReplaced

    return Updater(config(root, pub, max_trial_boots=3), device_id=DEVICE_ID, current_version="0.1.0",
                   report=rec.report, restart=restart, fleet_url=FLEET_URL,
                   health_checks={"smoke": lambda: probe(root) is not None})


def install_on_trial(tmp_path: Path, root: Path, server: RangeServer, body: str) -> tuple[Path, Recorder]:
    """The updater installs a real signed 0.2.0 bundle with module text ``body`` into slot B,
    switches to it and restarts the agent (which ends the process)."""
    private, public = generate_keys(tmp_path / "keys")
    bundle = app_bundle(tmp_path, private, "0.2.0", body=body)
    server.files["/b"] = ServedFile(bundle.read_bytes())
    offer = UpdateOffer(rollout_id="r-import", url=f"{server.base_url}/b", version="0.2.0",
                        sha256=sha256_file(bundle))
    rec = Recorder()
    with pytest.raises(ProcessReplaced):
        updater(root, public, rec).run(offer)
    assert rec.states() == ["downloading", "verifying", "installing", "rebooting"]
    assert SlotStore(root).active() == "b"
    return public, rec


def test_a_bundle_that_raises_at_import_is_rolled_back_by_the_launcher(
    tmp_path: Path, root: Path, server: RangeServer
) -> None:
    public, _ = install_on_trial(tmp_path, root, server, "raise ImportError('broken at import')\n")

    for n in (1, 2, 3):  # systemd's Restart=always starts it again after each crash
        run = start(root)
        assert run.returncode == 1, run.stderr
        assert "broken at import" in run.stderr
        assert f"slot on trial: counted {n}" in run.stderr
        assert SlotStore(root).active() == "b"
        assert json.loads((root / launcher.COUNT_FILE).read_text())["starts"] == n

    run = start(root)  # the 4th start: back to slot A, which starts
    assert "rolled back to a" in run.stderr
    assert run.returncode == 0 and run.stdout.startswith("started"), run.stderr
    assert run.stdout.split()[2] == "True"
    store = SlotStore(root)
    assert store.active() == "a" and store.verify("a") == []
    assert not (root / launcher.COUNT_FILE).exists()

    # The agent on slot A: its updater finds the launcher's record and tells the fleet.
    rec = Recorder()
    assert updater(root, public, rec).resume() == "rolled_back"
    assert rec.states() == ["rolled_back"]
    assert rec.reports[-1].rollout_id == "r-import" and rec.reports[-1].version == "0.2.0"
    assert "did not start properly in 3 starts" in (rec.reports[-1].detail or "")
    assert rec.restarts == 0  # already on the good slot
    assert store.load_state() is None and not (root / launcher.ROLLBACK_FILE).exists()
    assert probe(root) == ("0.1.0", True)

    run = start(root)  # later starts: no trial, nothing counted, nothing written
    assert run.returncode == 0 and "slot on trial" not in run.stderr
    assert not (root / launcher.COUNT_FILE).exists()


def test_a_good_trial_is_counted_once_then_forgotten(tmp_path: Path, root: Path, server: RangeServer) -> None:
    public, _ = install_on_trial(tmp_path, root, server, "OK = True\n")
    run = start(root)
    assert run.returncode == 0 and "counted 1" in run.stderr, run.stderr
    rec = Recorder()
    assert updater(root, public, rec).resume() == "succeeded"  # no restart: ProcessReplaced not raised
    assert rec.states() == ["succeeded"] and SlotStore(root).active() == "b"
    run = start(root)
    assert run.returncode == 0 and "slot on trial" not in run.stderr
    assert not (root / launcher.COUNT_FILE).exists()


def test_the_agent_keeps_the_launchers_process_id(root: Path) -> None:
    """systemd's main PID sends READY=1 and WATCHDOG=1: the launcher execs, it does not fork."""
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--root", str(root), "--", *AGENT], stdout=subprocess.PIPE, text=True
    )
    out, _ = process.communicate(timeout=60)
    assert out.split()[:2] == ["started", str(process.pid)]


def test_no_rollback_when_the_previous_slot_is_incomplete(root: Path) -> None:
    store = SlotStore(root)
    (root / "slots" / "b" / "app").mkdir(parents=True)
    store.complete("b", version="0.2.0", model_version=None)
    store.switch("b")
    store.wipe("a")  # nothing to go back to
    state = {"phase": "trial", "rollout_id": "r", "version": "0.2.0", "kind": "app", "from_slot": "a",
             "to_slot": "b", "boots": 0, "started_at": "2026-01-01T00:00:00Z"}
    (root / launcher.STATE_FILE).write_text(json.dumps(state))
    assert [launcher.count_start(root, 2) for _ in range(2)] == ["counted 1", "counted 2"]
    assert launcher.count_start(root, 2) == "counted 3; slot a is incomplete, nothing to switch back to"
    assert store.active() == "b"


def test_bad_invocations_are_one_line_errors(tmp_path: Path, root: Path) -> None:
    assert launcher.main(["--root", str(root)]) == 1
    assert launcher.main(["--root", str(tmp_path / "nothing"), "--", "true"]) == 1
    assert launcher.main(["--root", str(root), "--max-failed-starts", "0", "--", "true"]) == 1
    assert launcher.main(["--root", str(root), "--", str(tmp_path / "no-such-program")]) == 127
