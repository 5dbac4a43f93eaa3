"""``sohoa-device``: the device agent's command line.

    sohoa-device run --config device.yaml
    sohoa-device enroll --config device.yaml
    sohoa-device validate-config device.yaml
    sohoa-device firstboot [--boot /boot/firmware] [--data /var/lib/sohoa]
    sohoa-device inspect page1.jpg page2.png --pdf dossier.pdf
"""

import argparse
import logging
import os
import signal
import sys

from device import __version__
from device.errors import SohoaError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sohoa-device", description="Sohoa device agent")
    parser.add_argument("--version", action="version", version=f"sohoa-device {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", required=True, help="YAML config file")
    enr = sub.add_parser("enroll", help="enroll with the fleet now (waits through an admin's approval)")
    enr.add_argument("--config", required=True, help="YAML config file with identity and enrollment sections")
    val = sub.add_parser("validate-config", help="check a config file; exit 1 on any error")
    val.add_argument("file")
    first = sub.add_parser("firstboot", help="take the enrollment files from the boot partition (the image runs it)")
    first.description = "options: --boot DIR --data DIR --base-config FILE (see device/firstboot.py)"
    ins = sub.add_parser("inspect", help="run the page pipeline on image files, one JSON line each")
    ins.add_argument("files", nargs="+")
    ins.add_argument("--pdf", help="also write the pages as one PDF")
    ins.add_argument("--config", help="YAML config file (quality thresholds, model)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "firstboot":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = os.environ.get("DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "validate-config":
            from device.config import validate_config_main

            return validate_config_main(args.file)
        if args.command == "enroll":
            from device.enroll import enroll_main

            return enroll_main(args.config)
        if args.command == "firstboot":
            from device.firstboot import main as firstboot_main

            return firstboot_main(extra)
        if args.command == "inspect":
            from device.inspect import inspect_main

            return inspect_main(args.files, pdf=args.pdf, config=args.config)
        # Block the stop signals before the agent's imports start threads (numpy's BLAS pool, ...):
        # threads inherit the mask, so SIGTERM can only reach the main thread's sigtimedwait and
        # never a library thread where its default action would end the agent without a clean stop.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGPIPE})
        # multiprocessing's resource tracker, started by the first child process (the SANE driver's,
        # from the scan thread), *unblocks* SIGINT and SIGTERM in the thread that starts it (CPython
        # 3.11 resource_tracker.ensure_running): a stop arriving while that thread went on spawning
        # the child ended the agent by SIGTERM's default action, without its clean stop. Start the
        # tracker here, before any other thread exists, and block them again: later children find
        # it running and leave their thread's mask alone.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGPIPE})
        from device.service import run_main

        return run_main(args.config)
    except SohoaError as exc:
        if debug:
            raise
        sys.stderr.write(f"sohoa-device: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
