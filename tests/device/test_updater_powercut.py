"""Power cuts: the updater runs in a child process that is killed with SIGKILL at a chosen step
(half-way through writing the inactive slot; after the switch, before the health check). A fresh
updater then starts, as the agent would after the power returns, and the device runs a working
slot: the old one after a cut during install, the new one or the old one after a cut during the trial."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.update_slots import SlotStore
from device.updater import Updater
from images.bundle import generate_keys
from protocol.commands import UpdateOffer
from tests.images.device_harness import DEVICE_ID, FLEET_URL, Recorder, bootstrap, config, probe
from tests.images.helpers import RangeServer, ServedFile, app_bundle, range_server

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
from pathlib import Path
from device.updater import Updater
from device.update_config import UpdaterConfig
from protocol.commands import UpdateOffer

stop_at = sys.argv[3]

def report(message):
    sys.stdout.write(json.dumps({"state": message.state, "progress": message.progress}) + "\\n")
    sys.stdout.flush()
    if stop_at == "install" and message.state == "installing" and message.progress == 0.5:
        sys.stdin.readline()  # hold here, half-way through the slot, until killed

def restart():
    sys.stdout.write(json.dumps({"state": "restart"}) + "\\n")
    sys.stdout.flush()
    if stop_at == "trial":
        sys.stdin.readline()  # the "restart" never comes back: killed first

cfg = UpdaterConfig.model_validate_json(Path(sys.argv[1]).read_text())
offer = UpdateOffer.model_validate_json(Path(sys.argv[2]).read_text())
Updater(cfg, device_id="kiosk-0001", current_version="0.1.0", report=report, restart=restart,
        health_checks={}, fleet_url="http://127.0.0.1").run(offer)
"""


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with range_server() as srv:
        yield srv


def _run_and_kill(tmp_path: Path, root: Path, pub: Path, offer: UpdateOffer, stop_at: str) -> list[dict[str, object]]:
    """Start the child, read its reports until it holds at ``stop_at``, SIGKILL it."""
    (tmp_path / "cfg.json").write_text(config(root, pub).model_dump_json())
    (tmp_path / "offer.json").write_text(offer.model_dump_json())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "cfg.json"), str(tmp_path / "offer.json"), stop_at],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert child.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # A reader thread, not select(): the text wrapper may hold several lines already read from the pipe.
    stdout = child.stdout

    def read() -> None:
        for text in stdout:
            lines.put(text)

    threading.Thread(target=read, daemon=True).start()
    seen: list[dict[str, object]] = []
    try:
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(f"child silent; saw {seen}") from None
            seen.append(json.loads(line))
            last = seen[-1]
            if (stop_at == "install" and last == {"state": "installing", "progress": 0.5}) or (
                stop_at == "trial" and last["state"] == "restart"
            ):
                break
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return seen


def test_power_cut_during_install_comes_back_on_the_old_slot(tmp_path: Path, server: RangeServer) -> None:
    """Bad input: SIGKILL while the new slot's files are half written."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    bundle = app_bundle(tmp_path, private, "0.2.0")
    server.files["/b"] = ServedFile(bundle.read_bytes())
    offer = UpdateOffer(rollout_id="cut1", url=f"{server.base_url}/b", version="0.2.0")
    _run_and_kill(tmp_path, root, pub, offer, "install")
    store = SlotStore(root)
    assert store.active() == "a" and store.info("b") is None  # half-written, never marked complete
    assert probe(root) == ("0.1.0", True)

    rec = Recorder()
    updater = Updater(config(root, pub), device_id=DEVICE_ID, current_version="0.1.0", report=rec.report,
                      restart=rec.restart, fleet_url=FLEET_URL,
                      health_checks={"smoke": lambda: probe(root) == ("0.2.0", True)})
    assert updater.resume() == "failed"
    assert rec.reports[-1].state == "failed" and "interrupted" in (rec.reports[-1].detail or "")
    assert store.active() == "a" and store.verify("a") == [] and store.load_state() is None
    assert updater.resume() is None
    # The fleet asks again: the half-written slot is wiped and the update goes through.
    assert updater.run(offer) == "succeeded"
    assert probe(root) == ("0.2.0", True)


@pytest.mark.parametrize("healthy", [True, False])
def test_power_cut_after_switch_finishes_the_trial_at_next_start(tmp_path: Path, server: RangeServer,
                                                                 healthy: bool) -> None:
    """Bad input: SIGKILL after the switch, before the health check; then a new slot that passes
    its checks (kept) or fails them (rolled back)."""
    root = tmp_path / "opt"
    bootstrap(root, tmp_path)
    private, pub = generate_keys(tmp_path / "keys")
    bundle = app_bundle(tmp_path, private, "0.2.0", body="OK = True\n" if healthy else "OK = False\n")
    server.files["/b"] = ServedFile(bundle.read_bytes())
    offer = UpdateOffer(rollout_id="cut2", url=f"{server.base_url}/b", version="0.2.0")
    seen = _run_and_kill(tmp_path, root, pub, offer, "trial")
    assert [s["state"] for s in seen][-2:] == ["rebooting", "restart"]
    store = SlotStore(root)
    assert store.active() == "b"
    state = store.load_state()
    assert state is not None and state.phase == "trial"

    rec = Recorder()
    updater = Updater(config(root, pub), device_id=DEVICE_ID, current_version="0.2.0", report=rec.report,
                      restart=rec.restart, fleet_url=FLEET_URL,
                      health_checks={"smoke": lambda: (probe(root) or ("", False))[1]})
    outcome = updater.resume()
    assert outcome == ("succeeded" if healthy else "rolled_back")
    assert store.active() == ("b" if healthy else "a")
    assert probe(root) == (("0.2.0", True) if healthy else ("0.1.0", True))
    assert store.load_state() is None
