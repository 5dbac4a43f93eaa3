"""The Python half of the OS image recipe (``images/build-image.sh`` is the other half).

    python -m images.recipe lock --out build/image/requirements.txt
        # the device's dependencies, pinned to this environment's versions (the agent's closure
        # of ``sohoa[device]``, without what Debian provides: python-sane)
    python -m images.recipe seed --bundle dist/sohoa-app-0.1.0.bundle --public-key keys/update_signing.pub \\
        --root build/image/data/app
        # slot A of the image from a signed app bundle, verified as a device would (current -> A)

The image runs the agent from its A/B slot (``device/update_slots.py``) with its dependencies
from the image's own environment (``/usr/lib/sohoa/venv``): the slot holds only the project's
wheel, as an update bundle does, so the first slot is made by the same builder and checks as
every later one.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from device.update_slots import SlotStore
from images.errors import BuildFailed, BundleError
from images.manifest import extract_payload, load_public_key, verify_bundle

log = logging.getLogger(__name__)

FROM_DEBIAN = frozenset({"python-sane"})
"""Dependencies the image takes from Debian's packages (compiled against its libsane)."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_lock(project: str = "sohoa", extras: tuple[str, ...] = ("device",)) -> list[str]:
    """``name==version`` for every package the device's code needs, from this environment."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(project, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (_canonical(name), wanted) in seen:
            continue
        seen.add((_canonical(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BuildFailed(f"{name} is not installed here: run 'make setup' first") from None
        if _canonical(name) != _canonical(project):
            pins[_canonical(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None:
                base = {key: str(value) for key, value in default_environment().items()}
                environments = [{**base, "extra": e} for e in (*wanted, "")]
                if not any(req.marker.evaluate(env) for env in environments):
                    continue
            if _canonical(req.name) in FROM_DEBIAN:
                continue
            todo.append((req.name, tuple(sorted(req.extras))))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def seed_slot(bundle: Path, public_key: Path, root: Path, python: str = sys.executable) -> str:
    """Verify ``bundle`` against ``public_key``, install its wheel(s) and model into slot A under
    ``root`` and point ``current`` at it. Returns the version installed."""
    try:
        manifest = verify_bundle(bundle, [load_public_key(public_key)])
    except BundleError as exc:
        raise BuildFailed(f"{bundle}: {exc}") from None
    if manifest.kind != "app":
        raise BuildFailed(f"{bundle} is a {manifest.kind} bundle; the image needs an app bundle")
    with tempfile.TemporaryDirectory(prefix="sohoa-seed-") as tmp_name:
        staging = Path(tmp_name) / "payload"
        for _entry, _path in extract_payload(bundle, manifest, staging):
            pass
        slot = Path(tmp_name) / "slot"
        (slot / "app").mkdir(parents=True)
        wheels = sorted((staging / "wheels").glob("*.whl"))
        cmd = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "-q",
               "--disable-pip-version-check", "--target", str(slot / "app" / "site-packages"), *map(str, wheels)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildFailed(f"pip install into the slot failed: {result.stderr.strip()[-400:]}")
        (staging / "wheels").rename(slot / "app" / "wheels")
        if (staging / "requirements.lock").exists():
            (staging / "requirements.lock").rename(slot / "app" / "requirements.lock")
        if (staging / "model").is_dir():
            (staging / "model").rename(slot / "model")
        else:
            (slot / "model").mkdir()
        store = SlotStore(root)
        if store.current_link.is_symlink():
            raise BuildFailed(f"{root} has slots already: the image's data partition starts empty")
        store.bootstrap(slot, version=manifest.version, model_version=manifest.model_version)
    return manifest.version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.recipe", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_lock = sub.add_parser("lock", help="the device's pinned dependencies, for the image's environment")
    p_lock.add_argument("--out", type=Path, required=True)
    p_seed = sub.add_parser("seed", help="slot A from a signed app bundle")
    p_seed.add_argument("--bundle", type=Path, required=True)
    p_seed.add_argument("--public-key", type=Path, required=True)
    p_seed.add_argument("--root", type=Path, required=True, help="the updater's root on the data partition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("DEBUG") == "1" else logging.INFO, format="%(message)s")
    try:
        if args.command == "lock":
            pins = device_lock()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("".join(f"{line}\n" for line in pins))
            sys.stdout.write(f"{args.out}: {len(pins)} packages\n")
        else:
            version = seed_slot(args.bundle, args.public_key, args.root)
            sys.stdout.write(f"slot a of {args.root}: {version}\n")
    except (BuildFailed, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
