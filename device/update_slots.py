"""Two installation slots (A/B) and the ``current`` symlink that says which one runs.

Layout under the updater's root (``/opt/sohoa`` on a kiosk)::

    slots/a/  slots/b/        app/site-packages, app/wheels, app/requirements.lock, model/, slot.json
    current -> slots/a        switched atomically (new symlink, rename over, fsync the directory)
    update_state.json         the update in flight (installing / trial), fsynced
    version_floor             the highest signed floor of a bundle that passed its trial

A slot is complete only when its ``slot.json`` exists: it is written last, after every file was
fsynced. The agent runs ``current/app/site-packages`` (PYTHONPATH) and loads its classifier from
``current/model/``.

>>> # store = SlotStore(Path("/opt/sohoa")); store.active(); store.inactive()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.durable import atomic_write, fsync_dir
from device.update_errors import InstallFailed
from images.launcher import ROLLBACK_FILE as LAUNCHER_ROLLBACK_FILE
from images.manifest import version_at_least

log = logging.getLogger(__name__)

SlotName = Literal["a", "b"]
SLOTS: tuple[SlotName, SlotName] = ("a", "b")
SLOT_FILE = "slot.json"
VERSION_FLOOR_FILE = "version_floor"
"""The signed version floor the device keeps (see :meth:`SlotStore.version_floor`)."""


class SlotInfo(BaseModel):
    """What a complete slot holds (its ``slot.json``)."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(description="Agent version installed in the slot")
    model_version: str | None = Field(default=None, description="Classifier model version in the slot")
    installed_at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="When it was completed")
    files: dict[str, str] = Field(default_factory=dict, description="sha256 of every file, by path in the slot")


class UpdateState(BaseModel):
    """The update in flight, so that a restart or a power cut knows where it stopped."""

    model_config = ConfigDict(extra="forbid")
    phase: Literal["installing", "trial"] = Field(description="installing into to_slot, or running it on trial")
    rollout_id: str
    version: str
    kind: Literal["app", "model"]
    from_slot: SlotName
    to_slot: SlotName
    boots: int = Field(default=0, ge=0, description="Starts of the agent on the trial slot so far")
    version_floor: str | None = Field(
        default=None, description="The bundle's signed version floor, raised once the trial passes")
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (bottom-up), so a completed slot survives a cut."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def hash_tree(root: Path, *, skip: set[str] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in (skip or set()) and "__pycache__" not in rel:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    digest.update(chunk)
            out[rel] = digest.hexdigest()
    return out


class SlotStore:
    """The A/B slots on disk. Not thread-safe: one updater owns it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.current_link = root / "current"
        self.state_path = root / "update_state.json"

    def slot_dir(self, slot: SlotName) -> Path:
        return self.root / "slots" / slot

    def active(self) -> SlotName:
        """The slot ``current`` points to (raises :class:`InstallFailed` before bootstrap)."""
        try:
            target = str(self.current_link.readlink())
        except OSError:
            raise InstallFailed(f"{self.current_link} is missing: the slots were never set up") from None
        name = Path(target).name
        if name not in SLOTS:
            raise InstallFailed(f"{self.current_link} points to {target!r}, not a slot")
        return name

    def inactive(self) -> SlotName:
        return "b" if self.active() == "a" else "a"

    def info(self, slot: SlotName) -> SlotInfo | None:
        """The slot's ``slot.json``, or None when the slot is empty or incomplete."""
        try:
            return SlotInfo.model_validate_json((self.slot_dir(slot) / SLOT_FILE).read_bytes())
        except (OSError, ValidationError):
            return None

    def verify(self, slot: SlotName) -> list[str]:
        """Files of a complete slot whose content differs from its ``slot.json`` (empty: intact)."""
        info = self.info(slot)
        if info is None:
            return ["slot.json missing"]
        now = hash_tree(self.slot_dir(slot), skip={SLOT_FILE})
        return sorted(p for p, h in info.files.items() if now.get(p) != h)

    def bootstrap(self, source: Path | None, *, version: str, model_version: str | None = None) -> None:
        """First setup (image build or first start): slot A from ``source`` (a prepared slot
        tree, or None for an empty one), ``current`` -> A. Does nothing if already set up."""
        if self.current_link.is_symlink():
            return
        (self.root / "slots").mkdir(parents=True, exist_ok=True)
        target = self.slot_dir("a")
        if target.exists():
            shutil.rmtree(target)
        if source is not None:
            shutil.copytree(source, target, symlinks=True)
        else:
            (target / "app").mkdir(parents=True)
            (target / "model").mkdir()
        self.complete("a", version=version, model_version=model_version)
        self.switch("a")

    def wipe(self, slot: SlotName) -> Path:
        """Empty a slot for writing (never the active one)."""
        if self.current_link.is_symlink() and slot == self.active():
            raise InstallFailed("refusing to wipe the active slot")
        path = self.slot_dir(slot)
        marker = path / SLOT_FILE
        if marker.exists():
            # Incomplete first, so a cut during the rmtree leaves a slot nobody trusts.
            marker.unlink()
            fsync_dir(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def complete(self, slot: SlotName, *, version: str, model_version: str | None) -> SlotInfo:
        """fsync the slot's files, then write ``slot.json`` (the completion mark)."""
        path = self.slot_dir(slot)
        fsync_tree(path)
        info = SlotInfo(version=version, model_version=model_version, files=hash_tree(path, skip={SLOT_FILE}))
        atomic_write(path / SLOT_FILE, info.model_dump_json(indent=2).encode())
        return info

    def switch(self, slot: SlotName) -> None:
        """Point ``current`` at ``slot`` atomically (a new symlink renamed over the old)."""
        if self.info(slot) is None:
            raise InstallFailed(f"slot {slot} is incomplete: not switching to it")
        tmp = self.root / f".current.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(Path("slots") / slot)
        tmp.replace(self.current_link)
        fsync_dir(self.root)
        log.info("current slot is now %s", slot)

    # --- the update in flight -----------------------------------------------------------------

    def load_state(self) -> UpdateState | None:
        try:
            return UpdateState.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.warning("update state unreadable (%s): ignored", type(exc).__name__)
            return None

    def save_state(self, state: UpdateState) -> None:
        atomic_write(self.state_path, state.model_dump_json().encode())

    def take_launcher_rollback(self, state: UpdateState) -> str | None:
        """The reason the launcher (``images/launcher.py``) switched back from ``state``'s trial
        slot, consuming its record; None when it did not."""
        path = self.root / LAUNCHER_ROLLBACK_FILE
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            record = None
        path.unlink(missing_ok=True)
        fsync_dir(self.root)
        if not isinstance(record, dict) or record.get("rollout_id") != state.rollout_id:
            return None
        if state.phase != "trial" or self.active() != state.from_slot:
            return None
        return str(record.get("reason") or "the new slot did not start")

    # --- the version floor -----------------------------------------------------------------------

    def version_floor(self) -> str | None:
        """The highest signed floor of any app bundle that passed its trial here: no app bundle
        older than this is installed again. None when no bundle set one."""
        try:
            text = (self.root / VERSION_FLOOR_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def raise_version_floor(self, floor: str) -> None:
        """Record ``floor`` (durably) unless a higher one is recorded already."""
        current = self.version_floor()
        if current is not None and version_at_least(current, floor):
            return
        atomic_write(self.root / VERSION_FLOOR_FILE, f"{floor}\n".encode())

    def clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
            fsync_dir(self.root)

    def describe(self) -> dict[str, Any]:
        """Slots and versions, for logs and the agent's status page."""
        out: dict[str, Any] = {"active": self.active()}
        for slot in SLOTS:
            info = self.info(slot)
            out[slot] = None if info is None else {"version": info.version, "model_version": info.model_version}
        return out
