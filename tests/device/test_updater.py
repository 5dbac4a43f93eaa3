"""The A/B updater against a real loopback HTTP server: good bundles install and pass the health
check; a failing check rolls back; tampered, unsigned, wrong-key, too-new and mislabelled bundles
are refused and never written to a slot; a download cut half-way resumes with Range."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.dossier.errors import UpdateInProgress
from device.dossier.session import DossierSession
from device.update_errors import BundleRefused
from device.update_slots import SlotStore, UpdateState
from device.updater import HealthCheck, Updater, offer_from
from images.bundle import build_bundle, generate_keys
from images.manifest import sha256_file
from protocol.commands import UpdateOffer
from protocol.messages import Command, UpdateProgress
from protocol.settings import MaintenanceWindow
from tests.images.device_harness import DEVICE_ID, FLEET_URL, Recorder, bootstrap, config, probe
from tests.images.helpers import RangeServer, ServedFile, app_bundle, flip_byte, make_wheel, range_server


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with range_server() as srv:
        yield srv


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keys(tmp_path / "keys")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "opt-sohoa"
    bootstrap(root, tmp_path)
    return root


def _serve(server: RangeServer, bundle: Path, name: str, *, cut_after: int | None = None) -> str:
    server.files[f"/{name}"] = ServedFile(bundle.read_bytes(), cut_after=cut_after)
    return f"{server.base_url}/{name}"


def _updater(
    root: Path, pub: Path, rec: Recorder, checks: Mapping[str, HealthCheck] | None = None, **cfg: object
) -> Updater:
    health = checks if checks is not None else {"smoke": lambda: probe(root) == ("0.2.0", True)}
    return Updater(
        config(root, pub, **cfg),
        device_id=DEVICE_ID,
        current_version="0.1.0",
        report=rec.report,
        restart=rec.restart,
        health_checks=health,
        fleet_url=FLEET_URL,
    )


def test_good_bundle_installs_switches_and_succeeds(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                                    server: RangeServer) -> None:
    bundle = app_bundle(tmp_path, keys[0], "0.2.0", min_previous_version="0.1.0")
    url = _serve(server, bundle, "b1")
    rec = Recorder()
    offer = UpdateOffer(rollout_id="r1", url=url, version="0.2.0", sha256=sha256_file(bundle))
    assert _updater(root, keys[1], rec).run(offer) == "succeeded"
    assert rec.states() == ["downloading", "verifying", "installing", "rebooting", "succeeded"]
    assert rec.restarts == 1
    store = SlotStore(root)
    assert store.active() == "b" and store.verify("b") == []
    assert probe(root) == ("0.2.0", True)
    info = store.info("b")
    assert info is not None and info.version == "0.2.0" and info.model_version == "1.0"  # model carried over
    assert store.load_state() is None
    assert all(r.rollout_id == "r1" and r.device_id == DEVICE_ID for r in rec.reports)


def test_download_cut_halfway_resumes_with_range(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                                 server: RangeServer) -> None:
    """Bad input: the server sends half the body then drops the connection."""
    filler = "# " + os.urandom(400_000).hex() + "\n"  # ~1.6 MB bundle: many reads before the cut
    bundle = app_bundle(tmp_path, keys[0], "0.2.0", body="OK = True\n" + filler)
    half = bundle.stat().st_size // 2
    url = _serve(server, bundle, "b2", cut_after=half)
    rec = Recorder()
    offer = UpdateOffer(rollout_id="r2", url=url, version="0.2.0", sha256=sha256_file(bundle))
    assert _updater(root, keys[1], rec).run(offer) == "succeeded"
    assert server.requests == [("/b2", None), ("/b2", f"bytes={half}-")]


def test_failing_health_check_rolls_back(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                         server: RangeServer) -> None:
    """Bad input: a bundle whose package says it is not OK (the pipeline smoke test fails)."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0", body="OK = False\n")
    url = _serve(server, bundle, "b3")
    rec = Recorder()
    checks = {"broker": lambda: True, "smoke": lambda: (probe(root) or ("", False))[1]}
    offer = UpdateOffer(rollout_id="r3", url=url, version="0.2.0")
    assert _updater(root, keys[1], rec, checks).run(offer) == "rolled_back"
    assert rec.states()[-2:] == ["rebooting", "rolled_back"]
    assert "smoke" in (rec.reports[-1].detail or "")
    assert rec.restarts == 2  # into the new slot, and back
    assert SlotStore(root).active() == "a" and probe(root) == ("0.1.0", True)


def test_health_check_that_raises_rolls_back_with_its_reason(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                                             server: RangeServer) -> None:
    """Bad input: the scanner check raises (scanner does not answer after the restart)."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0")
    rec = Recorder()

    def scanner() -> bool:
        raise OSError("scanner does not answer")

    offer = UpdateOffer(rollout_id="r4", url=_serve(server, bundle, "b4"), version="0.2.0")
    assert _updater(root, keys[1], rec, {"scanner": scanner}).run(offer) == "rolled_back"
    assert "scanner does not answer" in (rec.reports[-1].detail or "")


@pytest.mark.parametrize("defect", ["flipped_payload", "flipped_manifest", "unsigned", "wrong_key"])
def test_bad_bundles_are_refused_and_never_installed(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                                     server: RangeServer, defect: str) -> None:
    """Bad input: a byte flipped in the wheel or in the manifest, no signature, another key's signature."""
    if defect == "wrong_key":
        bundle = app_bundle(tmp_path, generate_keys(tmp_path / "rogue")[0], "0.2.0")
    else:
        bundle = app_bundle(tmp_path, keys[0], "0.2.0", unsigned=defect == "unsigned")
    data = bundle.read_bytes()
    if defect == "flipped_payload":
        bundle = flip_byte(bundle, data.index(b"PK\x03\x04") + 40)
    elif defect == "flipped_manifest":
        bundle = flip_byte(bundle, data.index(b'"version"') + 3)
    rec = Recorder()
    offer = UpdateOffer(rollout_id="r5", url=_serve(server, bundle, "bad"), version="0.2.0")
    assert _updater(root, keys[1], rec).run(offer) == "failed"
    assert rec.states() == ["downloading", "verifying", "failed"]
    assert "refused" in (rec.reports[-1].detail or "")
    assert rec.restarts == 0
    store = SlotStore(root)
    assert store.active() == "a" and not store.slot_dir("b").exists() and store.load_state() is None
    assert probe(root) == ("0.1.0", True)


def test_refused_when_too_old_or_mislabelled(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                             server: RangeServer) -> None:
    """Bad input: a bundle needing at least 0.1.5 on a 0.1.0 device; a command announcing another version."""
    rec = Recorder()
    needy = app_bundle(tmp_path, keys[0], "0.2.0", min_previous_version="0.1.5")
    offer = UpdateOffer(rollout_id="r6", url=_serve(server, needy, "needy"), version="0.2.0")
    assert _updater(root, keys[1], rec).run(offer) == "failed"
    assert "at least 0.1.5" in (rec.reports[-1].detail or "")
    plain = app_bundle(tmp_path, keys[0], "0.2.0")
    offer = UpdateOffer(rollout_id="r7", url=_serve(server, plain, "plain"), version="0.3.0")
    assert _updater(root, keys[1], rec).run(offer) == "failed"
    assert "announced" in (rec.reports[-1].detail or "")
    assert not SlotStore(root).slot_dir("b").exists()


def test_wrong_announced_sha256_is_refused(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                           server: RangeServer) -> None:
    """Bad input: the command's sha256 does not match the served file (a swapped file on the server)."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0")
    rec = Recorder()
    offer = UpdateOffer(rollout_id="r8", url=_serve(server, bundle, "x"), version="0.2.0", sha256="0" * 64)
    assert _updater(root, keys[1], rec).run(offer) == "failed"
    assert "sha256" in (rec.reports[-1].detail or "")


def test_model_bundle_keeps_the_app(tmp_path: Path, root: Path, keys: tuple[Path, Path], server: RangeServer) -> None:
    model = tmp_path / "m" / "doctype.tflite"
    model.parent.mkdir()
    model.write_bytes(b"TFL3 new model")
    (model.parent / "doctype_version.txt").write_text("2.0\n")
    bundle = build_bundle(kind="model", version="auto", key_path=keys[0], out_dir=tmp_path / "mo", model=model)
    rec = Recorder()
    offer = UpdateOffer(rollout_id="m1", url=_serve(server, bundle, "m"), version="2.0", kind="model")
    checks = {"app": lambda: probe(root) == ("0.1.0", True)}
    assert _updater(root, keys[1], rec, checks).run(offer) == "succeeded"
    store = SlotStore(root)
    info = store.info(store.active())
    assert info is not None and (info.version, info.model_version) == ("0.1.0", "2.0")
    assert (root / "current" / "model" / "doctype.tflite").read_bytes() == b"TFL3 new model"


def test_trial_that_keeps_crashing_is_rolled_back_without_a_check(tmp_path: Path, root: Path,
                                                                  keys: tuple[Path, Path]) -> None:
    """Bad input: the new agent dies before finishing its health check, start after start."""
    store = SlotStore(root)
    store.wipe("b")
    (store.slot_dir("b") / "app").mkdir()
    store.complete("b", version="0.2.0", model_version="1.0")
    store.save_state(UpdateState(phase="trial", rollout_id="r9", version="0.2.0", kind="app", from_slot="a",
                                 to_slot="b", boots=3))
    store.switch("b")
    rec = Recorder()
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    updater = _updater(root, keys[1], rec, {"never": never})
    assert updater.resume() == "rolled_back"
    assert calls == [] and store.active() == "a" and store.load_state() is None
    assert updater.resume() is None


def test_update_command_arguments() -> None:
    """Bad input: an update command without a URL."""
    deadline = datetime.now(UTC) + timedelta(hours=1)
    good = Command(device_id=DEVICE_ID, name="update", deadline=deadline,
                   args={"rollout_id": "r", "url": "http://127.0.0.1/x", "version": "0.2.0"})
    assert offer_from(good).kind == "app"
    with pytest.raises(BundleRefused, match="url"):
        offer_from(Command(device_id=DEVICE_ID, name="update", deadline=deadline,
                                         args={"rollout_id": "r", "version": "1"}))


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        return False


def test_waits_for_window_lock_and_jitter(root: Path, keys: tuple[Path, Path]) -> None:
    """Bad input: an update arriving at 10:00 local with a 01:00-05:00 window, while a dossier is
    open. Each reason to wait is reported once as ``waiting`` (not at every look)."""
    clock = FakeClock(datetime(2026, 3, 2, 3, 0, tzinfo=UTC))  # 10:00 in Hanoi (UTC+7)
    opened = {"dossier": True}
    looks: list[datetime] = []

    def locked() -> bool:
        looks.append(clock.now)
        if len(looks) == 3:
            opened["dossier"] = False  # the clerk closes the dossier at the third look
        return opened["dossier"]

    rec = Recorder()
    updater = Updater(
        config(root, keys[1], jitter_max_s=600, health_interval_s=30),
        device_id=DEVICE_ID, current_version="0.1.0", report=rec.report, restart=lambda: None, fleet_url=FLEET_URL,
        health_checks={}, clock=clock, sleep=clock.sleep, rng=random.Random(7),
    )
    window = MaintenanceWindow(start="01:00", end="05:00")
    offer = UpdateOffer(rollout_id="w1", url="http://127.0.0.1:9/x", version="0.2.0")
    assert updater.wait_for_turn(lambda: window, locked, offer=offer)
    assert 0 < clock.waits[0] <= 600  # the jitter
    assert window.is_open(clock.now)
    assert len(looks) == 3 and all(window.is_open(t) for t in looks)
    assert clock.now.astimezone(window.next_open(clock.now).tzinfo).hour == 1
    assert [r.state for r in rec.reports] == ["waiting", "waiting"]
    assert (rec.reports[0].detail or "").startswith("maintenance window opens 2026-03-03T01:00")
    assert rec.reports[1].detail == "a dossier is open at the counter"


@pytest.mark.parametrize("mode", ["strict", "warn"])
def test_dependency_lock_is_compared_with_the_device(tmp_path: Path, root: Path, keys: tuple[Path, Path],
                                                     server: RangeServer, mode: str) -> None:
    """Bad input: a lock pinning a pydantic version this device does not have."""
    work = tmp_path / "lockbuild"
    lock = work / "requirements.lock"
    work.mkdir()
    lock.write_text("pydantic==0.0.1\n# a comment\n-e git+https://example.invalid/x\n")
    bundle = build_bundle(kind="app", version="0.2.0", key_path=keys[0], out_dir=work / "out",
                          wheels=[make_wheel(work / "w", version="0.2.0")], lock=lock)
    rec = Recorder()
    offer = UpdateOffer(rollout_id="lock1", url=_serve(server, bundle, "lock"), version="0.2.0")
    outcome = _updater(root, keys[1], rec, lock_check=mode).run(offer)
    if mode == "strict":
        assert outcome == "failed" and "pydantic" in (rec.reports[-1].detail or "")
        assert not SlotStore(root).slot_dir("b").exists()
    else:
        assert outcome == "succeeded"
    assert not list((root / "downloads").glob("*.bundle")), "the bundle file is removed once used"


def test_no_dossier_opens_during_install_and_an_open_one_delays_it(
    tmp_path: Path, root: Path, keys: tuple[Path, Path], server: RangeServer
) -> None:
    """The update lock both ways, with a real dossier session. Bad input: a clerk opens a dossier
    while the bundle downloads (the install waits, reported ``waiting``, until it is closed), then
    tries to open one while the bundle installs (refused with UpdateInProgress); once the trial
    is over dossiers open again."""
    bundle = app_bundle(tmp_path, keys[0], "0.2.0")
    clock = FakeClock(datetime(2026, 3, 2, 20, 0, tzinfo=UTC))  # 03:00 in Hanoi: window open
    session = DossierSession(pdf_builder=None)
    events: list[str] = []
    rec = Recorder()

    def report(message: UpdateProgress) -> None:
        rec.report(message)
        if message.state == "downloading" and message.progress == 0.0:
            session.open()  # a citizen arrives while the bundle downloads
            events.append("dossier opened")
        if message.state == "installing" and message.progress == 0.0:
            with pytest.raises(UpdateInProgress):
                session.open()
            assert session.snapshot().update_held
            events.append("open refused")

    def sleep(seconds: float) -> bool:
        if seconds == 30 and session.state == "open":
            session.cancel()  # the clerk finishes with the citizen
            events.append("dossier closed")
        return clock.sleep(seconds)

    def restart() -> None:
        events.append("restart")
        rec.restart()

    updater = Updater(
        config(root, keys[1], jitter_max_s=600, health_interval_s=30),
        device_id=DEVICE_ID, current_version="0.1.0", report=report, restart=restart, fleet_url=FLEET_URL,
        health_checks={"smoke": lambda: probe(root) == ("0.2.0", True)}, clock=clock, sleep=sleep,
        rng=random.Random(3),
    )
    window = MaintenanceWindow(start="01:00", end="05:00")
    offer = UpdateOffer(rollout_id="lock2", url=_serve(server, bundle, "l2"), version="0.2.0")
    assert updater.run(offer, window=lambda: window, lock=session) == "succeeded"
    assert events == ["dossier opened", "dossier closed", "open refused", "restart"]
    assert len(clock.waits) == 2 and clock.waits[1] == 30  # one jitter, then one lock poll
    assert [r.detail for r in rec.reports if r.state == "waiting"] == ["a dossier is open at the counter"]
    assert rec.states() == ["downloading", "verifying", "waiting", "installing", "rebooting", "succeeded"]
    assert not session.snapshot().update_held
    assert session.open().state == "open"  # released after the trial
