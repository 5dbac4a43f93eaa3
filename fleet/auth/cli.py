"""``sohoa-fleet user ...`` and the first admin created by ``serve``.

    sohoa-fleet user add NAME --role province_admin [--unit CODE] [--config FILE]
        # the password from stdin (one line), or, with --generate, a random one printed once
"""

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.auth.models import User
from fleet.auth.passwords import generate_password, hash_password
from fleet.auth.principal import ROLES
from fleet.config import FleetConfig
from fleet.errors import FleetError
from provisioning.files import write_atomic

log = logging.getLogger(__name__)

INITIAL_ADMIN = "admin"


class UserExists(FleetError, ValueError):
    """A user with this name exists already."""


class BadPassword(FleetError, ValueError):
    """The password given is too short or empty."""


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    user = sub.add_parser("user", help="manage the admin users (the first province admin)")
    actions = user.add_subparsers(dest="user_command", required=True)
    add = actions.add_parser("add", help="create a user; the password is read from stdin or generated")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--unit", help="the user's unit code (required for a unit admin)")
    add.add_argument("--generate", action="store_true", help="generate a random password and print it once")
    add.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")


def _read_password(minimum: int) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise BadPassword("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if len(first) < minimum:
        raise BadPassword(f"a password needs at least {minimum} characters")
    return first


def create_user(session: Session, *, name: str, password: str, role: str, unit_code: str | None) -> User:
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserExists(f"a user named {name} exists already")
    user = User(name=name, password_hash=hash_password(password), role=role, unit_code=unit_code, disabled=False,
                created_at=datetime.now(UTC))
    session.add(user)
    session.commit()
    return user


def run(args: argparse.Namespace) -> int:
    """``sohoa-fleet user add``."""
    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory

    config = load(args.config)
    if args.role == "unit_admin" and not args.unit:
        print("sohoa-fleet: a unit admin needs --unit", file=sys.stderr)
        return 2
    password = generate_password() if args.generate else _read_password(config.auth.min_password_length)
    engine = make_engine(config.database.url)
    try:
        migrate(engine)
        with session_factory(engine)() as session:
            create_user(session, name=args.name, password=password, role=args.role, unit_code=args.unit)
    finally:
        engine.dispose()
    if args.generate:
        print(f"user {args.name} created; password (shown only now): {password}")
    else:
        print(f"user {args.name} created")
    return 0


def ensure_initial_admin(config: FleetConfig) -> Path | None:
    """When the database has no user at all, create ``admin`` (province admin) with a random
    password written to ``auth.initial_admin_file`` (mode 0600); returns that path, or None when
    there were users already. Only the path is logged, never the password."""
    from fleet.db import make_engine, migrate, one_node_at_a_time, session_factory

    engine = make_engine(config.database.url)
    try:
        if config.database.migrate_on_start:
            migrate(engine)
        with one_node_at_a_time(engine, "initial-admin"), session_factory(engine)() as session:
            if session.scalar(select(func.count()).select_from(User)):
                return None
            password = generate_password()
            path = config.auth.initial_admin_file
            write_atomic(path, f"{password}\n".encode(), 0o600)
            create_user(session, name=INITIAL_ADMIN, password=password, role="province_admin", unit_code=None)
    finally:
        engine.dispose()
    log.warning("no user existed: created %r (province admin); its password is in %s (mode 0600) - "
                "log in and change it", INITIAL_ADMIN, path)
    return path
