"""``sohoa-fleet signing ...``: the signing job by hand, and a demo organisation certificate.

    sohoa-fleet signing run [--config FILE]     # one signing pass now (as `serve` does every signing.interval_s)
    sohoa-fleet signing demo-cert --out DIR [--unit CODE ...]
        # a DEMO CA and a PKCS#12 file for the province (or one per unit), their passphrase in
        # DIR/p12-passphrase (0600): for `make demo` and trials, never for real documents

Exit 0 done, 1 on an error (one line on stderr), 3 when ``run`` left documents it could not sign.
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = ("signing",)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    signing = sub.add_parser("signing", help="sign closed documents now; make a demo signing certificate")
    actions = signing.add_subparsers(dest="signing_command", required=True)
    run = actions.add_parser("run", help="one signing pass now")
    run.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    demo = actions.add_parser("demo-cert", help="a DEMO CA and organisation certificate as PKCS#12 (not for real use)")
    demo.add_argument("--out", type=Path, required=True, help="folder for the CA certificate and the PKCS#12 files")
    demo.add_argument("--unit", action="append", default=[], metavar="CODE",
                      help="one PKCS#12 per unit code (repeat); none: one for the province")


def run(args: argparse.Namespace) -> int:
    if args.signing_command == "demo-cert":
        return _demo_cert(args.out, list(args.unit))
    return _run(args.config)


def _demo_cert(out: Path, units: list[str]) -> int:
    from fleet.signing.demo import make_demo_keys

    made = make_demo_keys(out, units)
    print(f"demo CA (DEMO, NOT FOR PRODUCTION): {made.ca_cert}")
    for unit, path in made.p12_files.items():
        print(f"{'unit ' + unit if unit else 'province'}: {path}")
    print(f"passphrase file: {made.passphrase_file}")
    return 0


def _run(config_path: Path | None) -> int:
    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory
    from fleet.errors import ConfigInvalid
    from fleet.signing.job import SigningJob, unsigned_backlog
    from fleet.signing.signer import Signer
    from fleet.storage import open_storage

    config = load(config_path)
    if config.signing.source is None:
        raise ConfigInvalid("signing has no key source configured (signing.source)")
    engine = make_engine(config.database.url)
    try:
        if config.database.migrate_on_start:
            migrate(engine)
        sessions = session_factory(engine)
        job = SigningJob(Signer(config.signing), sessions, open_storage(config.storage))
        try:
            done = job.run_once()
        finally:
            job.close()
        left = unsigned_backlog(sessions)
    finally:
        engine.dispose()
    print(f"signing: {done.signed} signed, {done.failed} failed, {done.waiting} waiting for their file, "
          f"{left} unsigned in all" + (f"; stopped: {done.stopped}" if done.stopped else ""))
    return 3 if done.failed or done.stopped else 0
