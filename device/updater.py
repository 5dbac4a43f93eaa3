"""The device's updater: signed bundles into the inactive of two slots, with a trial boot.

What happens for one ``update`` command (:meth:`Updater.run`):

1. wait for the maintenance window and for no open dossier, plus random jitter (reported as
   ``waiting`` with the reason);
2. download the bundle with resume (``device/update_download.py``); a fleet that withdrew the
   offer (cancelled or halted rollout) answers 410 and nothing is installed (asked again before
   installing when the device had to wait for the counter after the download);
3. verify the Ed25519 signature and every file's sha256 (``images/manifest.py``) BEFORE
   anything is written outside the download directory; refuse otherwise (never installed);
4. take the update lock (:class:`UpdateLock`: no dossier open, and none opens until the trial
   is over), install into the inactive slot (``device/update_slots.py``), fsync, mark it complete;
5. record a ``trial`` state, switch ``current`` atomically, call the agent's ``restart``;
6. run the agent's health checks (broker connected, scanner or camera answers, pipeline and
   model smoke test): all pass -> ``succeeded``; one fails -> switch back, ``rolled_back``.

If ``restart`` really restarts the process, the new agent calls :meth:`Updater.resume` at start:
it runs step 6 for a pending trial, and cleans up an install a power cut interrupted (the
``current`` slot was never switched, so the device runs its working slot).

Every step is reported as :class:`protocol.messages.UpdateProgress` through ``report``::

    updater = Updater(cfg, device_id="kiosk-0001", current_version=__version__,
                      report=emit_progress, restart=restart_agent, fleet_url="https://fleet.example",
                      health_checks={"broker": link.connected.is_set})
    updater.resume(lock=session)                       # at agent start; session: a DossierSession
    offer = offer_from(command)                        # Command(name="update")
    updater.run(offer, window=lambda: settings.current.maintenance_window, lock=session)
"""

from __future__ import annotations

import logging
import random
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from device.update_config import UpdaterConfig
from device.update_download import download, withdrawn
from device.update_errors import BundleRefused, DownloadFailed, InstallFailed, OfferWithdrawn, UpdateError
from device.update_slots import SlotName, SlotStore, UpdateState
from images.errors import BundleError
from images.manifest import Manifest, extract_payload, load_public_key, verify_bundle, version_at_least
from protocol.commands import UpdateOffer, error_fields
from protocol.messages import Command, UpdateProgress
from protocol.settings import MaintenanceWindow

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "rolled_back", "failed"]
ProgressState = Literal[
    "waiting", "downloading", "verifying", "installing", "rebooting", "succeeded", "rolled_back", "failed"
]
HealthCheck = Callable[[], bool]
"""Returns True when healthy; False or an exception is a failure (its text is the reason)."""
WAITING_REPORT_S = 1800
"""A device still waiting says so again this often (the fleet times out silent devices)."""


class UpdateLock(Protocol):
    """The counter's side of the update lock (:class:`device.dossier.session.DossierSession`)."""

    def hold_for_update(self) -> bool:
        """True when no dossier is open; none opens until :meth:`release_update_hold`."""
        ...

    def release_update_hold(self) -> None: ...

    def dossier_open(self) -> bool:
        """A dossier is being worked on (a check only; nothing is held)."""
        ...


def offer_from(command: Command) -> UpdateOffer:
    """The offer an ``update`` command carries; :class:`BundleRefused` names the fields that
    do not fit."""
    try:
        return UpdateOffer.model_validate(command.args)
    except ValidationError as exc:
        raise BundleRefused(f"update command arguments invalid: {error_fields(exc)}") from None


class Updater:
    """A/B updater. One per device; :meth:`run` blocks (call it from a worker thread)."""

    def __init__(
        self,
        config: UpdaterConfig,
        *,
        device_id: str,
        current_version: str,
        report: Callable[[UpdateProgress], None],
        restart: Callable[[], None],
        health_checks: Mapping[str, HealthCheck],
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        sleep: Callable[[float], bool] | None = None,
        http_auth: httpx.Auth | None = None,
        http_verify: ssl.SSLContext | bool = True,
        fleet_url: str | None = None,
    ) -> None:
        self.config = config
        self.fleet_url = fleet_url
        """The fleet this device belongs to: offers are downloaded from its host only."""
        self.http_auth = http_auth
        """Given to the download's HTTP client (the device's request signing, once enrolled)."""
        self.http_verify = http_verify
        """How the download's client checks the fleet's certificate (the fleet's CA, once enrolled)."""
        self.device_id = device_id
        self.current_version = current_version
        self._report = report
        self._restart = restart
        self._health_checks = dict(health_checks)
        self._stop = stop or threading.Event()
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep or self._stop.wait
        """Waits up to the given seconds; True when stopped (tests pass one that moves their clock)."""
        self.slots = SlotStore(config.root)
        self.downloads = config.root / "downloads"
        self.busy = threading.Event()
        """Set while an update is being installed or tried: the agent refuses new dossiers then."""
        self._trusted: list[Ed25519PublicKey] | None = None
        self.waited = False
        """The last :meth:`wait_for_turn` had to wait (window closed or a dossier open)."""

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> Updater:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- reporting ------------------------------------------------------------------------

    def _progress(
        self, offer_or_state: UpdateOffer | UpdateState, state: ProgressState, *, progress: float | None = None,
        detail: str | None = None,
    ) -> None:
        message = UpdateProgress(
            device_id=self.device_id,
            rollout_id=offer_or_state.rollout_id,
            version=offer_or_state.version,
            state=state,
            progress=progress,
            detail=None if detail is None else detail[:512],
        )
        try:
            self._report(message)
        except Exception:  # a reporting failure must not stop an install half-way
            log.exception("reporting update progress failed")

    # --- waiting for the right moment ------------------------------------------------------------

    def allowed_now(self, window: Callable[[], MaintenanceWindow] | None, is_locked: Callable[[], bool] | None) -> bool:
        """The window is open and no dossier holds the update lock."""
        return (window is None or window().is_open(self._clock())) and (is_locked is None or not is_locked())

    def wait_for_turn(
        self,
        window: Callable[[], MaintenanceWindow] | None,
        is_locked: Callable[[], bool] | None,
        *,
        jitter: bool = True,
        offer: UpdateOffer | None = None,
        hold: UpdateLock | None = None,
    ) -> bool:
        """Block until the maintenance window is open and no dossier is open, after a random
        jitter. With ``hold``, the update lock is taken atomically at the end (no dossier can
        open after the check). Returns False if stopped. The window is read each time (settings
        change). With ``offer``, each new reason to wait is reported as ``waiting``."""
        jitter_s = self._rng.uniform(0, self.config.jitter_max_s) if jitter and self.config.jitter_max_s else 0.0
        if jitter_s and self._sleep(jitter_s):
            return False
        said: tuple[str, float] | None = None
        self.waited = False

        def waiting(why: str) -> None:
            nonlocal said
            self.waited = True
            now_s = time.monotonic()
            if offer is not None and (said is None or said[0] != why or now_s - said[1] >= WAITING_REPORT_S):
                said = (why, now_s)
                self._progress(offer, "waiting", detail=why)

        while not self._stop.is_set():
            now = self._clock()
            if window is not None:
                opens = window().next_open(now)
                if opens > now:
                    log.info("update waits for the maintenance window (opens %s)", opens.isoformat())
                    waiting(f"maintenance window opens {opens.isoformat(timespec='minutes')}")
                    # Wake up at least every 5 minutes: the window may be changed by settings.
                    if self._sleep(min((opens - now).total_seconds(), 300)):
                        return False
                    continue
            locked = (is_locked is not None and is_locked()) or (hold is not None and not hold.hold_for_update())
            if locked:
                waiting("a dossier is open at the counter")
                if self._sleep(self.config.health_interval_s):
                    return False
                continue
            return True
        return False

    # --- the whole update ------------------------------------------------------------------------

    def run(
        self,
        offer: UpdateOffer,
        *,
        window: Callable[[], MaintenanceWindow] | None = None,
        is_locked: Callable[[], bool] | None = None,
        lock: UpdateLock | None = None,
    ) -> Outcome:
        """Carry out one update; returns its outcome (also reported). Never raises for a bad
        bundle or a failed health check: that is an outcome. ``lock`` (the dossier session) is
        held from the install to the end of the trial: no dossier opens meanwhile."""
        # Downloading does not disturb the counter: only checked here, held from the install on.
        free = is_locked if is_locked is not None or lock is None else lock.dossier_open
        if not self.wait_for_turn(window, free, offer=offer):
            self._progress(offer, "failed", detail="stopped while waiting for the maintenance window")
            return "failed"
        self.busy.set()
        held = False
        try:
            try:
                self._check_source(offer)
                bundle = self._download(offer)
                try:
                    manifest = self._verify(offer, bundle)
                    # Installing and restarting disturb the counter: window and lock again, held.
                    if not self.wait_for_turn(window, is_locked, jitter=False, offer=offer, hold=lock):
                        self._progress(offer, "failed", detail="stopped before installing")
                        return "failed"
                    held = lock is not None
                    if self.waited:  # the wait may have been long: was the offer withdrawn meanwhile?
                        self._still_offered(offer)
                    to_slot = self._install(offer, bundle, manifest)
                finally:
                    bundle.unlink(missing_ok=True)  # installed or refused: either way not needed again
            except UpdateError as exc:
                log.warning("update %s %s failed: %s", offer.rollout_id, offer.version, exc)
                self._progress(offer, "failed", detail=str(exc))
                return "failed"
            state = UpdateState(
                phase="trial",
                rollout_id=offer.rollout_id,
                version=offer.version,
                kind=manifest.kind,
                from_slot=self.slots.active(),
                to_slot=to_slot,
                version_floor=manifest.version_floor if manifest.kind == "app" else None,
            )
            self.slots.save_state(state)
            self.slots.switch(to_slot)
            self._progress(offer, "rebooting", detail=f"switched to slot {to_slot}")
            self._restart()
            # An in-process restart returns here; a real one continues in resume() of the new process.
            return self._trial(state)
        finally:
            if held and lock is not None:
                lock.release_update_hold()
            self.busy.clear()

    def resume(self, lock: UpdateLock | None = None) -> Outcome | None:
        """Call once at agent start. Finishes a trial (health check), cleans an interrupted
        install. Returns the outcome, or None when no update was in flight. ``lock`` is held
        during the trial (a dossier interrupted by the restart was handed over already)."""
        state = self.slots.load_state()
        if state is None:
            return None
        active = self.slots.active()
        launcher = self.slots.take_launcher_rollback(state)
        if launcher is not None:
            # The new slot never got this far (it failed at import, say): the launcher switched back.
            log.warning("update %s rolled back by the launcher: %s", state.version, launcher)
            self.slots.clear_state()
            self._progress(state, "rolled_back", detail=launcher)
            return "rolled_back"
        if state.phase == "installing" or active != state.to_slot:
            # Power cut before the switch: current still names the working slot.
            log.warning("update %s was interrupted before the switch; staying on slot %s", state.version, active)
            self.slots.clear_state()
            if state.to_slot != active:
                self.slots.wipe(state.to_slot)  # half written, or complete but never tried
            self._progress(state, "failed", detail=f"interrupted before completion; running slot {active}")
            return "failed"
        state.boots += 1
        self.slots.save_state(state)
        if state.boots > self.config.max_trial_boots:
            return self._rollback(state, f"the new slot did not pass its checks in {state.boots - 1} starts")
        self.busy.set()
        held = lock is not None and lock.hold_for_update()
        try:
            return self._trial(state)
        finally:
            if held and lock is not None:
                lock.release_update_hold()
            self.busy.clear()

    # --- steps ------------------------------------------------------------------------------------

    def _check_source(self, offer: UpdateOffer) -> None:
        """Refuse an offer served from anywhere but the fleet's own host over HTTPS: a signature
        keeps a foreign bundle out, not a foreign server's stream of bytes (nor the device's
        request signature, sent with every download, away from a host that would collect it)."""
        if self.fleet_url is None:
            raise BundleRefused("no fleet URL on this device: update offers cannot be checked")
        try:
            url, fleet = httpx.URL(offer.url), httpx.URL(self.fleet_url)
        except (httpx.InvalidURL, TypeError):
            raise BundleRefused("the offer's URL is not a URL") from None
        schemes = {"https", "http"} if self.config.allow_http else {"https"}
        if url.scheme not in schemes:
            raise BundleRefused(f"update offers must use HTTPS, not {url.scheme or 'no scheme'}")
        if not url.host or url.host != fleet.host or url.userinfo:
            raise BundleRefused("the offer's URL is not on this device's fleet")

    def _download(self, offer: UpdateOffer) -> Path:
        self._progress(offer, "downloading", progress=0.0)
        dest = self.downloads / f"{offer.rollout_id}.bundle"
        last = [-1.0]

        def on_progress(done: int, total: int | None) -> None:
            if total:
                fraction = round(done / total, 1)
                if fraction > last[0]:
                    last[0] = fraction
                    self._progress(offer, "downloading", progress=min(fraction, 1.0))

        client = self._client()
        try:
            return download(
                offer.url,
                dest,
                expected_sha256=offer.sha256,
                attempts=self.config.download_attempts,
                timeout_s=self.config.download_timeout_s,
                retry_min_s=self.config.retry_min_s,
                retry_max_s=self.config.retry_max_s,
                on_progress=on_progress,
                stop=self._stop,
                client=client,
                max_bytes=self.config.max_bundle_bytes,
            )
        except DownloadFailed:
            raise
        except OSError as exc:
            raise DownloadFailed(f"cannot write the download: {exc}") from None
        finally:
            client.close()

    def _client(self) -> httpx.Client:
        # No redirects: the fleet serves its bundles itself, and a redirect could leave its origin.
        return httpx.Client(timeout=self.config.download_timeout_s, follow_redirects=False, auth=self.http_auth,
                            verify=self.http_verify)

    def _still_offered(self, offer: UpdateOffer) -> None:
        with self._client() as client:
            reason = withdrawn(offer.url, client)
        if reason is not None:
            raise OfferWithdrawn(f"the fleet withdrew this update offer: {reason}")

    def trusted_keys(self) -> list[Ed25519PublicKey]:
        if self._trusted is None:
            try:
                self._trusted = [load_public_key(p) for p in self.config.public_keys]
            except BundleError as exc:
                raise BundleRefused(str(exc)) from None
        return self._trusted

    def _verify(self, offer: UpdateOffer, bundle: Path) -> Manifest:
        self._progress(offer, "verifying")
        try:
            manifest = verify_bundle(bundle, self.trusted_keys())
        except BundleError as exc:
            bundle.unlink(missing_ok=True)
            raise BundleRefused(f"bundle refused: {exc}") from None
        if manifest.version != offer.version or manifest.kind != offer.kind:
            raise BundleRefused(
                f"bundle is {manifest.kind} {manifest.version}, the command announced {offer.kind} {offer.version}"
            )
        info = self.slots.info(self.slots.active())
        running = self.current_version if manifest.kind == "app" else (info.model_version if info else None)
        if running is not None and not version_at_least(manifest.version, running):
            if not offer.allow_downgrade:
                raise BundleRefused(f"{manifest.version} is older than the running {running} (no downgrade asked)")
            if not manifest.allows_downgrade:
                raise BundleRefused(f"{manifest.version} is older than the running {running} and its signed "
                                    "manifest does not allow a downgrade")
        floor = self.slots.version_floor()
        if manifest.kind == "app" and not version_at_least(manifest.version, floor):
            raise BundleRefused(f"{manifest.version} is below this device's version floor {floor}")
        if not version_at_least(running, manifest.min_previous_version):
            raise BundleRefused(f"needs at least {manifest.min_previous_version}; this device runs {running}")
        if manifest.kind == "app":
            self._check_lock(bundle, manifest)
        return manifest

    def _check_lock(self, bundle: Path, manifest: Manifest) -> None:
        if self.config.lock_check == "off" or not manifest.by_role("lock"):
            return
        entry = manifest.by_role("lock")[0]
        with tarfile.open(bundle, mode="r:") as tar:
            stream = tar.extractfile(f"payload/{entry.path}")
            text = stream.read().decode() if stream is not None else ""
        missing = lock_mismatches(text)
        if missing:
            message = f"{len(missing)} locked dependencies differ from this device, e.g. {missing[0]}"
            if self.config.lock_check == "strict":
                raise BundleRefused(message)
            log.warning("%s", message)

    def _install(self, offer: UpdateOffer, bundle: Path, manifest: Manifest) -> SlotName:
        active = self.slots.active()
        to_slot: SlotName = "b" if active == "a" else "a"
        needed = 3 * sum(f.size for f in manifest.files)  # payload, pip's copy, and headroom
        free = shutil.disk_usage(self.config.root).free
        if free < needed:
            raise InstallFailed(f"not enough disk space: {free} bytes free, {needed} needed")
        self.slots.save_state(
            UpdateState(
                phase="installing",
                rollout_id=offer.rollout_id,
                version=offer.version,
                kind=manifest.kind,
                from_slot=active,
                to_slot=to_slot,
            )
        )
        self._progress(offer, "installing", progress=0.0, detail=f"into slot {to_slot}")
        try:
            target = self.slots.wipe(to_slot)
            staging = target / ".payload"
            for _entry, _path in extract_payload(bundle, manifest, staging):
                pass
            self._progress(offer, "installing", progress=0.5, detail="payload written")
            source = self.slots.slot_dir(active)
            app, model = target / "app", target / "model"
            if manifest.kind == "app":
                app.mkdir()
                shutil.move(staging / "wheels", app / "wheels")
                if (staging / "requirements.lock").exists():
                    shutil.move(staging / "requirements.lock", app / "requirements.lock")
                self._pip_install(sorted((app / "wheels").glob("*.whl")), app / "site-packages")
            else:
                shutil.copytree(source / "app", app, symlinks=True)
            if (staging / "model").is_dir():
                shutil.move(staging / "model", model)
            elif (source / "model").is_dir():
                shutil.copytree(source / "model", model, symlinks=True)
            else:
                model.mkdir()
            shutil.rmtree(staging)
            previous = self.slots.info(active)
            version = manifest.version if manifest.kind == "app" else (previous.version if previous else "unknown")
            model_version = manifest.model_version or (previous.model_version if previous else None)
            self.slots.complete(to_slot, version=version, model_version=model_version)
        except BundleError as exc:
            self.slots.clear_state()
            raise BundleRefused(f"bundle refused during install: {exc}") from None
        except OSError as exc:
            self.slots.clear_state()
            raise InstallFailed(f"install into slot {to_slot} failed: {exc}") from None
        self._progress(offer, "installing", progress=1.0, detail=f"slot {to_slot} complete")
        return to_slot

    def _pip_install(self, wheels: list[Path], target: Path) -> None:
        if not wheels:
            raise InstallFailed("an app bundle without a wheel")
        cmd = [self.config.python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "-q",
               "--disable-pip-version-check", "--target", str(target), *map(str, wheels)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InstallFailed(f"pip install failed: {result.stderr.strip()[-300:]}")

    def _trial(self, state: UpdateState) -> Outcome:
        failure = self.health_check()
        if failure is not None:
            return self._rollback(state, failure)
        if state.version_floor is not None:
            self.slots.raise_version_floor(state.version_floor)
        self.slots.clear_state()
        log.info("update %s succeeded on slot %s", state.version, state.to_slot)
        self._progress(state, "succeeded", detail=f"running slot {state.to_slot}")
        return "succeeded"

    def health_check(self) -> str | None:
        """Run every check until it passes or the time is up; the first failure's reason, or None."""
        deadline = time.monotonic() + self.config.health_timeout_s
        for name, check in self._health_checks.items():
            while True:
                try:
                    ok, why = bool(check()), "answered no"
                except Exception as exc:  # a check may fail any way it likes: that is the point
                    ok, why = False, f"{type(exc).__name__}: {str(exc)[:200]}"
                if ok:
                    break
                if time.monotonic() >= deadline or self._sleep(self.config.health_interval_s):
                    return f"health check {name!r} failed: {why}"
        return None

    def _rollback(self, state: UpdateState, reason: str) -> Outcome:
        log.warning("update %s rolled back: %s", state.version, reason)
        if self.slots.info(state.from_slot) is None:
            # Nothing to go back to: stay, and say so loudly.
            self.slots.clear_state()
            self._progress(state, "failed", detail=f"{reason}; previous slot unusable, staying")
            return "failed"
        self.slots.switch(state.from_slot)
        self.slots.clear_state()
        self._progress(state, "rolled_back", detail=reason)
        self._restart()
        return "rolled_back"

    def status(self) -> dict[str, Any]:
        out = self.slots.describe()
        state = self.slots.load_state()
        out["in_flight"] = None if state is None else state.model_dump(mode="json")
        return out


def lock_mismatches(lock_text: str) -> list[str]:
    """Pins of a ``pip freeze`` lock that the running environment does not satisfy exactly."""
    out: list[str] = []
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "==" not in line or line.startswith("-"):
            continue
        name, _, pinned = line.partition("==")
        try:
            installed = metadata.version(name.strip())
        except metadata.PackageNotFoundError:
            out.append(f"{name.strip()} missing")
            continue
        if installed != pinned.strip():
            out.append(f"{name.strip()} {installed} != {pinned.strip()}")
    return out
