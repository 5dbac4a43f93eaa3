"""``sohoa-fleet token|enrollment|device ...``: enrollment administration on the fleet's host,
without the web API (preparing SD-card images, operations when the API is down). The same
actions as the API (:mod:`fleet.enroll.admin`), audited as ``cli:<os user>`` (actor kind
``system``); they need the fleet's config, database and CA key, so whoever runs them is a
province admin in effect.

    sohoa-fleet token issue --unit CODE [--ttl 7d] [--max-devices N] [--require-approval] [--out DIR]
        # the token text and CA pin printed ONCE; with --out: DIR/enrollment.token (0600, DIR 0700),
        # DIR/ca.crt and DIR/device-enrollment.yaml (the device config's identity/enrollment sections)
    sohoa-fleet token list [--json]                  # records only: no secret exists to show
    sohoa-fleet token revoke TOKEN_ID
    sohoa-fleet enrollment list [--state pending] [--json]
    sohoa-fleet enrollment accept|reject DEVICE_ID [--reason TEXT]
    sohoa-fleet device revoke DEVICE_ID              # CRL rewritten, broker SIGHUPed; the device shows "revoked"

Every one takes ``--config FILE`` (as ``serve``). Exit 0 done, 2 usage or refused (unknown id,
not pending, token lifetime above ``enrollment.max_token_ttl_h``, no CA), 1 other errors; one
line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet.config import FleetConfig
from fleet.enroll import admin
from fleet.enroll.runtime import EnrollRuntime
from fleet.errors import FleetError
from protocol.topics import DEVICE_ID_PATTERN
from provisioning.errors import ProvisioningError
from provisioning.files import write_atomic, write_public
from provisioning.identity import ca_pin
from provisioning.tokens import UNIT_CODE_PATTERN

COMMANDS = ("token", "enrollment", "device")

TOKEN_FILE = "enrollment.token"  # noqa: S105 - a file name, not a secret
CA_FILE = "ca.crt"
SNIPPET_FILE = "device-enrollment.yaml"
DEVICE_TOKEN_FILE = Path("/etc/sohoa/secrets/enrollment.token")
DEVICE_CA_FILE = Path("/etc/sohoa/ca.crt")
DEVICE_IDENTITY_DIR = Path("/var/lib/sohoa/identity")

_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "": 3600, "d": 86400, "w": 7 * 86400}


class Refused(FleetError, PermissionError):
    """The command cannot be done as asked (exit 2): unknown id, wrong state, no CA, ..."""


def parse_ttl(text: str) -> dt.timedelta:
    """``7d``, ``12h``, ``90m``, ``3600s``, ``2w``; a bare number is hours (as the API's ttl_hours).

    >>> parse_ttl("7d"), parse_ttl("1.5")
    (datetime.timedelta(days=7), datetime.timedelta(seconds=5400))
    >>> parse_ttl("9" * 20 + "w")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: '99999999999999999999w' is far longer than any token may live
    """
    match = _TTL.match(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a lifetime like 7d, 12h or 90m")
    try:
        return dt.timedelta(seconds=float(match.group(1)) * _UNITS_S[match.group(2)])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is far longer than any token may live") from None


def _pattern(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if not compiled.match(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}")
        return text

    return check


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of devices from 1 to 10000")
    return int(text)


_unit = _pattern(UNIT_CODE_PATTERN, "unit code (letters, digits, dots, dashes)")
_device_id = _pattern(DEVICE_ID_PATTERN, "device id (lower-case letters, digits, dashes)")
_token_id = _pattern(r"^[0-9a-f]{16}$", "token id (16 hex digits, from 'token list')")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
        return parser

    token = sub.add_parser("token", help="enrollment tokens: issue (text shown once), list, revoke")
    tokens = token.add_subparsers(dest="action", required=True)
    issue = config(tokens.add_parser("issue", help="issue a token for a unit; its text is printed or written ONCE"))
    issue.add_argument("--unit", type=_unit, required=True, help="the unit the devices will be installed in")
    issue.add_argument("--ttl", type=parse_ttl, default=dt.timedelta(hours=24),
                       help="how long it stays valid: 7d, 12h, 90m (default 24h; at most enrollment.max_token_ttl_h)")
    issue.add_argument("--max-devices", type=_count, default=1, metavar="N",
                       help="how many devices may enroll with it (default 1)")
    issue.add_argument("--require-approval", action="store_true",
                       help="each enrollment waits for 'enrollment accept'")
    issue.add_argument("--out", type=Path, metavar="DIR",
                       help=f"write {TOKEN_FILE} (0600), {CA_FILE} and {SNIPPET_FILE} there instead of printing")
    issue.add_argument("--device-token-file", type=Path, default=DEVICE_TOKEN_FILE,
                       help=f"where the image puts the token (the snippet's token_file; default {DEVICE_TOKEN_FILE})")
    issue.add_argument("--device-ca-file", type=Path, default=DEVICE_CA_FILE,
                       help=f"where the image puts ca.crt (the snippet's ca_file; default {DEVICE_CA_FILE})")
    issue.add_argument("--identity-dir", type=Path, default=DEVICE_IDENTITY_DIR,
                       help=f"the device's identity directory (default {DEVICE_IDENTITY_DIR})")
    listing = config(tokens.add_parser("list", help="the tokens, newest first (no secret: none is stored)"))
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    revoke = config(tokens.add_parser("revoke", help="withdraw a token (devices enrolled with it stay)"))
    revoke.add_argument("token_id", type=_token_id)

    enrollment = sub.add_parser("enrollment", help="enrollments: list, accept or reject pending ones")
    enrollments = enrollment.add_subparsers(dest="action", required=True)
    listing = config(enrollments.add_parser("list", help="enrollments, newest first"))
    listing.add_argument("--state", choices=("pending", "accepted", "rejected"), help="only those in this state")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    for action, text in (("accept", "accept a pending enrollment: its certificate is signed now"),
                         ("reject", "reject a pending enrollment: the device is told 'rejected'")):
        decide = config(enrollments.add_parser(action, help=text))
        decide.add_argument("device_id", type=_device_id)
        decide.add_argument("--reason", help="why (kept in the audit log; shown to admins)")

    device = sub.add_parser("device", help="devices: revoke")
    devices = device.add_subparsers(dest="action", required=True)
    revoke = config(devices.add_parser("revoke", help="revoke the device's certificates, rewrite the CRL, "
                                                      "reload the broker"))
    revoke.add_argument("device_id", type=_device_id)


def os_actor() -> str:
    """``cli:<user>`` of the process's real user (and the sudo caller's name when run with sudo)."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid{os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"cli:{name}" + (f"(sudo:{sudo})" if sudo and sudo != name else "")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Context:
    config: FleetConfig
    sessions: sessionmaker[Session]
    runtime: EnrollRuntime
    actor: str
    audit: admin.Auditor

    def refuse(self, action: str, reason: str, *, target: str | None = None, unit_code: str | None = None,
               message: str | None = None) -> Refused:
        """Audit a refused command (``reason``: a stable code); the exception to raise."""
        with self.sessions.begin() as session:
            self.audit(session, action=action, target=target, unit_code=unit_code, outcome="refused",
                       detail=f"reason={reason}")
        return Refused(message or f"{target or action}: {reason.replace('_', ' ')}")


@contextmanager
def _context(config_path: Path | None) -> Iterator[_Context]:
    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory
    from fleet.enroll.runtime import open_runtime

    config = load(config_path)
    ca_dir = config.pki.ca_dir
    if ca_dir is None:
        raise Refused("enrollment is not configured: set pki.ca_dir in the fleet's config")
    if not (ca_dir / "ca.crt").is_file():
        raise Refused(f"no CA in {ca_dir}: run 'python -m provisioning init' or start 'sohoa-fleet serve' once")
    engine = make_engine(config.database.url)
    try:
        if config.database.migrate_on_start:
            migrate(engine)
        sessions = session_factory(engine)
        runtime = open_runtime(config, sessions, _now)
        assert runtime is not None  # ca_dir is set
        actor = os_actor()
        yield _Context(config, sessions, runtime, actor, admin.system_auditor(actor, _now))
    finally:
        engine.dispose()


def _snippet(ctx: _Context, args: argparse.Namespace, token_id: str, expires_at: dt.datetime) -> str:
    sections = {
        "identity": {"dir": str(args.identity_dir)},
        "enrollment": {"fleet_url": ctx.runtime.service.fleet_url, "unit_code": args.unit,
                       "token_file": str(args.device_token_file), "ca_file": str(args.device_ca_file)},
    }
    head = (f"# Enrollment for unit {args.unit}: token {token_id}, up to {args.max_devices} device(s), "
            f"expires {expires_at.isoformat(timespec='minutes')}.\n"
            f"# Put {TOKEN_FILE} at {args.device_token_file} (mode 0600) and {CA_FILE} at {args.device_ca_file}\n"
            "# on the image; add these sections to the device config (device_id and unit are per device).\n")
    return head + yaml.safe_dump(sections, sort_keys=False, allow_unicode=True)


def _prepare_out(directory: Path) -> None:
    """DIR (0700) ready for a new token: made here, or an existing one only its owner can enter
    (never chmod a directory someone else chose, /tmp say); a token written before is not replaced."""
    if directory.is_dir():
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            raise Refused(f"{directory} is open to other users (mode {mode:o}): give a new directory, it is made 0700")
        if (directory / TOKEN_FILE).exists():
            raise Refused(f"{directory / TOKEN_FILE} exists: choose another --out directory or delete it first")
        return
    directory.mkdir(mode=0o700, parents=True)
    directory.chmod(0o700)  # whatever the umask


def _issue(ctx: _Context, args: argparse.Namespace) -> int:
    if args.out is not None:
        _prepare_out(args.out)  # before issuing: no token is left orphaned by an unwritable directory
    try:
        text, token = admin.create_token(
            ctx.runtime, ctx.sessions, ctx.audit, unit_code=args.unit, ttl=args.ttl, max_devices=args.max_devices,
            require_approval=args.require_approval, created_by=ctx.actor,
            max_ttl_h=ctx.config.enrollment.max_token_ttl_h, now=_now())
    except admin.TokenTtlTooLong:
        limit = ctx.config.enrollment.max_token_ttl_h
        raise ctx.refuse("token.created", "ttl_too_long", unit_code=args.unit,
                         message=f"a token lives at most {limit:g} h (enrollment.max_token_ttl_h)") from None
    except ValueError as exc:  # a unit code or count issue_token refuses
        raise ctx.refuse("token.created", "invalid", unit_code=args.unit, message=str(exc)) from None
    print(f"token {token.token_id} for unit {token.unit_code}: up to {token.max_devices} device(s), "
          f"expires {token.expires_at.isoformat(timespec='minutes')}, "
          f"approval {'required' if token.require_approval else 'not required'}")
    if ctx.config.enrollment.public_url is None:
        print(f"sohoa-fleet: warning: enrollment.public_url is not set; devices are sent to "
              f"{ctx.runtime.service.fleet_url}", file=sys.stderr)
    if args.out is None:
        print(f"token (shown only now): {text.get_secret_value()}")
        print(f"ca_pin: {ca_pin(ctx.runtime.ca.certificate_pem)}")
        print(f"enroll_url: {ctx.runtime.service.fleet_url}/api/v1/enroll")
        return 0
    out: Path = args.out
    write_atomic(out / TOKEN_FILE, f"{text.get_secret_value()}\n".encode(), 0o600)
    write_public(out / CA_FILE, ctx.runtime.ca.certificate_pem)
    write_public(out / SNIPPET_FILE, _snippet(ctx, args, token.token_id, token.expires_at).encode())
    for name in (TOKEN_FILE, CA_FILE, SNIPPET_FILE):
        print(out / name)
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _when(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else "-"


def _list_tokens(ctx: _Context, args: argparse.Namespace) -> int:
    now = _now()
    tokens = ctx.runtime.store.tokens()
    if args.json:
        items: list[dict[str, Any]] = [{**t.model_dump(mode="json", exclude={"secret_hash"}),
                                        "state": admin.token_state(t, now)} for t in tokens]
        print(json.dumps(items, indent=1))
        return 0
    rows = [["TOKEN", "UNIT", "STATE", "USED", "EXPIRES", "APPROVAL", "CREATED BY"]]
    rows += [[t.token_id, t.unit_code, admin.token_state(t, now), f"{t.used}/{t.max_devices}", _when(t.expires_at),
              "yes" if t.require_approval else "no", t.created_by or "-"] for t in tokens]
    _table(rows)
    return 0


def _revoke_token(ctx: _Context, args: argparse.Namespace) -> int:
    revoked = admin.withdraw_token(ctx.runtime, ctx.sessions, ctx.audit, args.token_id, _now())
    if revoked is None:
        raise ctx.refuse("token.revoked", "no_such_token", target=f"token {args.token_id}")
    print(f"token {revoked.token_id} revoked (unit {revoked.unit_code}; {revoked.used} device(s) enrolled with it "
          "stay enrolled)")
    return 0


def _list_enrollments(ctx: _Context, args: argparse.Namespace) -> int:
    enrollments = ctx.runtime.store.enrollments(state=args.state)
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in enrollments], indent=1))
        return 0
    rows = [["DEVICE", "UNIT", "STATE", "REQUESTED", "TOKEN", "KEY SHA256", "DECIDED BY", "REASON"]]
    rows += [[e.device_id, e.unit_code, e.state, _when(e.requested_at), e.token_id, e.public_key_sha256[:16],
              e.decided_by or "-", e.reason or "-"] for e in enrollments]
    _table(rows)
    return 0


def _decide(ctx: _Context, args: argparse.Namespace) -> int:
    accept = args.action == "accept"
    current = ctx.runtime.store.enrollment(args.device_id)
    if current is None:
        raise ctx.refuse("enrollment.refused", "no_enrollment", target=args.device_id)
    try:
        decided = admin.decide(ctx.runtime, ctx.sessions, ctx.audit, args.device_id, accept=accept, by=ctx.actor,
                               reason=args.reason, now=_now())
    except ProvisioningError as exc:  # not pending any more
        raise ctx.refuse("enrollment.refused", exc.reason, target=args.device_id,
                         unit_code=current.unit_code) from None
    print(f"{decided.device_id} {decided.state} (unit {decided.unit_code})"
          + (": its certificate is signed; the device gets it on its next poll" if accept else ""))
    return 0


def _revoke_device(ctx: _Context, args: argparse.Namespace) -> int:
    known, unit = admin.device_unit(ctx.runtime, ctx.sessions, args.device_id)
    if not known:
        raise ctx.refuse("certificate.revoked", "not_enrolled", target=args.device_id, unit_code=unit)
    serials, published = admin.revoke_device(ctx.runtime, ctx.sessions, ctx.audit, args.device_id, unit=unit,
                                             by=ctx.actor, now=_now())
    print(f"{args.device_id} revoked: "
          + (f"certificate(s) {', '.join(serials)}" if serials else "already revoked, no certificate left")
          + f"; CRL lists {published.revoked}" + (f", written to {published.written}" if published.written else ""))
    if ctx.config.pki.broker_pid_file is not None and not published.broker_reloaded:
        print(f"sohoa-fleet: warning: the broker was not reloaded (pki.broker_pid_file {ctx.config.pki.broker_pid_file}"
              "): it refuses the device from its next reload", file=sys.stderr)
    return 0


_ACTIONS: dict[tuple[str, str], Callable[[_Context, argparse.Namespace], int]] = {
    ("token", "issue"): _issue, ("token", "list"): _list_tokens, ("token", "revoke"): _revoke_token,
    ("enrollment", "list"): _list_enrollments, ("enrollment", "accept"): _decide, ("enrollment", "reject"): _decide,
    ("device", "revoke"): _revoke_device,
}


def run(args: argparse.Namespace) -> int:
    """Run one ``token|enrollment|device`` command; 2 with one line on stderr when refused."""
    try:
        with _context(args.config) as ctx:
            return _ACTIONS[(args.command, args.action)](ctx, args)
    except Refused as exc:
        print(f"sohoa-fleet: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        origin = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
        print(f"sohoa-fleet: database error: {(origin or [type(exc).__name__])[0]}", file=sys.stderr)
        return 1
