"""``sohoa-fleet``: serve the fleet manager, check a config file, migrate the database.

    sohoa-fleet serve [--config FILE]     # API + web page + MQTT ingest
    sohoa-fleet validate-config FILE      # every error with file:line, exit 1 on any
    sohoa-fleet migrate [--config FILE]   # bring the database schema up to date
    sohoa-fleet ingest [--config FILE] [--client-id ID]   # one more ingest worker, no HTTP
    sohoa-fleet retention [--config FILE]  # one telemetry retention pass now (e.g. after an upgrade)
    sohoa-fleet deliver [--config FILE] [--drain]   # the delivery worker alone (or: deliver what is due, exit)
    sohoa-fleet user add NAME --role ROLE [--unit CODE]   # an admin user; password from stdin
    sohoa-fleet token issue|list|revoke, enrollment list|accept|reject, device revoke   # see fleet/enroll/cli.py
    sohoa-fleet signing run | demo-cert --out DIR [--unit CODE]   # see fleet/signing/cli.py
    sohoa-fleet --version
"""

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from fleet import __version__
from fleet.auth import cli as auth_cli
from fleet.enroll import cli as enroll_cli
from fleet.errors import FleetError
from fleet.signing import cli as signing_cli
from protocol.configfile import ConfigError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sohoa-fleet", description="The Sohoa fleet manager.")
    parser.add_argument("--version", action="version", version=f"sohoa-fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API, the web page and the MQTT ingest")
    serve.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    check = sub.add_parser("validate-config", help="check a config file; every error with its line")
    check.add_argument("file", type=Path)
    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    ingest = sub.add_parser(
        "ingest", help="run one more MQTT ingest worker without HTTP (workers share the load through the broker)"
    )
    ingest.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    ingest.add_argument("--client-id", help="this worker's MQTT client id, unique and fixed per worker")
    retention = sub.add_parser(
        "retention", help="thin and drop old telemetry now, as `serve` does every retention.interval_s")
    retention.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    deliver = sub.add_parser(
        "deliver", help="run the delivery worker without HTTP (serve runs one too; several share the outbox)")
    deliver.add_argument("--config", type=Path, help="YAML config file (default: built-in settings)")
    deliver.add_argument("--drain", action="store_true",
                         help="deliver until nothing is due or under way, then exit (2 when time ran out)")
    deliver.add_argument("--timeout", type=float, default=3600.0, help="with --drain: give up after this many seconds")
    auth_cli.add_parser(sub)
    enroll_cli.add_parsers(sub)
    signing_cli.add_parser(sub)
    return parser


def _ingest(config_path: Path | None, client_id: str | None) -> int:
    import threading

    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory
    from fleet.ingest import Ingest
    from fleet.metrics import FleetMetrics

    config = load(config_path)
    if client_id:
        config = config.model_copy(update={"broker": config.broker.model_copy(update={"client_id": client_id})})
    engine = make_engine(config.database.url, pool_size=config.database.pool_size)
    if config.database.migrate_on_start:
        migrate(engine)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    worker = Ingest(config, session_factory(engine), FleetMetrics())
    worker.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        worker.stop()
        engine.dispose()
    log.info("ingest worker %s stopped", config.broker.client_id)
    return 0


def _deliver(config_path: Path | None, drain: bool, timeout_s: float) -> int:
    import threading

    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory
    from fleet.delivery.worker import DeliveryWorker
    from fleet.metrics import FleetMetrics
    from fleet.storage import open_storage

    config = load(config_path)
    if not config.delivery.targets:
        print("sohoa-fleet: no delivery targets configured (delivery.targets)", file=sys.stderr)
        return 1
    engine = make_engine(config.database.url, pool_size=config.database.pool_size)
    if config.database.migrate_on_start:
        migrate(engine)
    store = open_storage(config.storage)
    worker = DeliveryWorker(config.delivery, session_factory(engine), store, metrics=FleetMetrics())
    try:
        if drain:
            done = worker.drain(timeout_s)
            print("delivery: drained" if done else "delivery: backlog left after the timeout")
            return 0 if done else 2
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())
        worker.start()
        stop.wait()
    finally:
        worker.close()
        engine.dispose()
    log.info("delivery worker stopped")
    return 0


def _serve(config_path: Path | None) -> int:
    import uvicorn

    from fleet.api.app import create_app
    from fleet.config import load
    from fleet.db import make_engine, migrate

    config = load(config_path)
    if config.database.migrate_on_start:
        # Here rather than only in the app's startup: a database error is then one clear line.
        engine = make_engine(config.database.url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
    from fleet.enroll.server import https_files

    tls = https_files(config)  # http.tls_cert/tls_key, or issued from the fleet CA, or None: plain HTTP
    auth_cli.ensure_initial_admin(config)  # no user at all: `admin`, its password in a 0600 file
    app = create_app(config)
    log.info("fleet on %s://%s:%s, broker %s:%s", "https" if tls else "http", config.http.host, config.http.port,
             config.broker.host, config.broker.port)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.http.host, port=config.http.port, log_config=None, access_log=False,
                       timeout_graceful_shutdown=10, ssl_certfile=str(tls[0]) if tls else None,
                       ssl_keyfile=str(tls[1]) if tls else None)
    )
    # uvicorn handles SIGINT and SIGTERM: it stops accepting, finishes requests, then the app's
    # lifespan stops the ingest (writes and acknowledges what it holds) before we return. It
    # then re-raises the signal to the handler it found: ours makes that a clean exit 0.
    stopped_by: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopped_by.append(signum))
    server.run()
    if not server.started:
        print("sohoa-fleet: the server did not start (see the log above)", file=sys.stderr)
        return 1
    log.info("fleet stopped%s", f" ({signal.Signals(stopped_by[0]).name})" if stopped_by else "")
    return 0


def _migrate(config_path: Path | None) -> int:
    from fleet.config import load
    from fleet.db import current_revision, make_engine, migrate

    config = load(config_path)
    engine = make_engine(config.database.url)
    try:
        migrate(engine)
        print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def _retention(config_path: Path | None) -> int:
    from datetime import UTC, datetime

    from fleet.config import load
    from fleet.db import make_engine, migrate, session_factory
    from fleet.retention import run_retention

    config = load(config_path)
    engine = make_engine(config.database.url)
    try:
        if config.database.migrate_on_start:
            migrate(engine)
        done = run_retention(session_factory(engine), config.retention, datetime.now(UTC))
    finally:
        engine.dispose()
    until = done.thinned_until.isoformat() if done.thinned_until else "-"
    print(f"telemetry: {done.thinned} reports thinned (one per device-hour before {until}), "
          f"{done.dropped} dropped for age, {done.devices} devices, {done.seconds:.1f} s")
    return 0


def _validate(path: Path) -> int:
    from fleet.config import load

    load(path)
    print(f"{path}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = os.environ.get("DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request's URL at INFO: a delivery's URL names its dossier (personal data).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not debug:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if args.command in enroll_cli.COMMANDS:  # their output is what they print
            logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args.config)
        if args.command == "migrate":
            return _migrate(args.config)
        if args.command == "ingest":
            return _ingest(args.config, args.client_id)
        if args.command == "retention":
            return _retention(args.config)
        if args.command == "deliver":
            return _deliver(args.config, args.drain, args.timeout)
        if args.command == "user":
            return auth_cli.run(args)
        if args.command in enroll_cli.COMMANDS:
            return enroll_cli.run(args)
        if args.command in signing_cli.COMMANDS:
            return signing_cli.run(args)
        return _validate(args.file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    except (FleetError, OSError) as exc:
        if debug:
            raise
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"sohoa-fleet: {first_line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
