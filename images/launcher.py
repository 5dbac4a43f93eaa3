"""The agent's launcher: counts starts of a slot on trial, outside the slots, and switches back.

The updater's own trial counter (``Updater.resume``) lives in the agent, so a bundle whose code
fails at import never reaches it and the kiosk would crash-loop on the new slot. This launcher is
what systemd starts (``images/rootfs/etc/systemd/system/sohoa-agent.service``); it runs with the
system's Python from the root file system, imports nothing from the project (standard library
only), and then ``exec``s the agent from the ``current`` slot, so the agent keeps its process id
(systemd's main PID, which its ``READY=1`` and ``WATCHDOG=1`` must come from).

At each start, while ``update_state.json`` says a slot is on trial and ``current`` points to it:

1. the start is counted in ``launch_count.json`` (fsynced) beside the slots;
2. past ``--max-failed-starts`` starts, ``current`` is switched back to the slot the update came
   from (atomically: new symlink renamed over the old, directory fsynced), and
   ``launcher_rollback.json`` records why; the agent's updater finds it at its next start and
   reports ``rolled_back`` to the fleet.

A trial that passes removes ``update_state.json`` (the updater does), and the next start forgets
the count. Outside a trial the launcher writes nothing: the card is not written at every boot.

    python3 /usr/lib/sohoa/launcher.py --root /opt/sohoa --max-failed-starts 3 -- \\
        /usr/lib/sohoa/venv/bin/python -m device run --config /etc/sohoa/device.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "update_state.json"
COUNT_FILE = "launch_count.json"
ROLLBACK_FILE = "launcher_rollback.json"
SLOTS = ("a", "b")


class LaunchError(Exception):
    """The launcher cannot start the agent (no slot set up, nothing to run)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Replace ``path`` so that a power cut leaves the old or the new content, never a mix."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def active_slot(root: Path) -> str | None:
    try:
        name = (root / "current").readlink().name
    except OSError:
        return None
    return name if name in SLOTS else None


def switch(root: Path, slot: str) -> None:
    """Point ``current`` at ``slot`` as the updater does: a new link renamed over the old."""
    tmp = root / f".current.launcher.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path("slots") / slot)
    tmp.replace(root / "current")
    _fsync_dir(root)


def count_start(root: Path, max_failed_starts: int) -> str | None:
    """Count this start when a slot is on trial; switch back past the limit. Returns what was
    done, for the log: None (no trial), ``"counted N"`` or ``"rolled back to X"``."""
    count_path = root / COUNT_FILE
    state = _read_json(root / STATE_FILE)
    if state is None or state.get("phase") != "trial":
        if count_path.exists():
            count_path.unlink()
            _fsync_dir(root)
        return None
    to_slot, from_slot = state.get("to_slot"), state.get("from_slot")
    if active_slot(root) != to_slot or from_slot not in SLOTS:
        return None  # switched back already, or a cut before the switch: the updater sorts it out
    trial = f"{state.get('rollout_id')}:{to_slot}:{state.get('started_at')}"
    counted = _read_json(count_path) or {}
    starts = (counted.get("starts", 0) if counted.get("trial") == trial else 0) + 1
    if starts <= max_failed_starts:
        _write_json(count_path, {"trial": trial, "starts": starts})
        return f"counted {starts}"
    if not (root / "slots" / str(from_slot) / "slot.json").is_file():
        _write_json(count_path, {"trial": trial, "starts": starts})
        return f"counted {starts}; slot {from_slot} is incomplete, nothing to switch back to"
    reason = f"the new slot did not start properly in {starts - 1} starts"
    _write_json(root / ROLLBACK_FILE, {"rollout_id": state.get("rollout_id"), "version": state.get("version"),
                                       "from_slot": from_slot, "to_slot": to_slot, "reason": reason})
    switch(root, str(from_slot))
    count_path.unlink()
    _fsync_dir(root)
    return f"rolled back to {from_slot}: {reason}"


def agent_environment(root: Path, environ: dict[str, str]) -> dict[str, str]:
    """The agent's environment: the slot's packages first on ``PYTHONPATH``, resolved now so a
    switch while it runs does not mix two slots' modules."""
    current = (root / "current").resolve()
    site = str(current / "app" / "site-packages")
    rest = environ.get("PYTHONPATH")
    return dict(environ, PYTHONPATH=site if not rest else f"{site}{os.pathsep}{rest}", SOHOA_SLOT=current.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sohoa-launcher", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path("/opt/sohoa"), help="the updater's root (slots, current)")
    parser.add_argument("--max-failed-starts", type=int, default=3, metavar="N",
                        help="starts of a slot on trial before switching back (default 3)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the agent's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if not command:
            raise LaunchError("no agent command given after --")
        if args.max_failed_starts < 1:
            raise LaunchError("--max-failed-starts must be at least 1")
        if active_slot(args.root) is None:
            raise LaunchError(f"{args.root / 'current'} does not point to a slot: the image was not set up")
        done = count_start(args.root, args.max_failed_starts)
    except (LaunchError, OSError) as exc:
        sys.stderr.write(f"sohoa-launcher: {exc}\n")
        return 1
    if done is not None:
        sys.stderr.write(f"sohoa-launcher: slot on trial: {done}\n")
    sys.stderr.flush()
    env = agent_environment(args.root, dict(os.environ))
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - replacing ourselves with the agent is the point
    except OSError as exc:
        sys.stderr.write(f"sohoa-launcher: cannot start {command[0]}: {exc}\n")
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    raise SystemExit(main())
