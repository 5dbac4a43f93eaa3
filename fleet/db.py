"""Database engine, sessions and migrations. SQLite by default (WAL, foreign keys on),
PostgreSQL by URL. Migrations are Alembic's, shipped inside the package and run
programmatically (``sohoa-fleet migrate`` and on start).

>>> engine = make_engine("sqlite://")
>>> migrate(engine)
>>> current_revision(engine) == head_revision()
True
"""

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Date, Engine, create_engine, event, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from fleet.errors import FleetError
from fleet.progress.periods import SQLITE_LOCAL_TIME, sqlite_local_time

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DatabaseError(FleetError, ConnectionError):
    """The database cannot be reached or migrated."""


_RUN_AGAIN = ("40P01", "40001")
"""PostgreSQL's deadlock victim and serialization failure: the transaction was undone and may
simply be run again."""


def run_again(exc: BaseException) -> bool:
    """Whether ``exc`` says the database undid the transaction to break a deadlock (or a
    serialization conflict), so running it again is the answer, not an error."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RUN_AGAIN


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``; creates the SQLite file's directory when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if parsed.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: indexes stay in memory as tables grow
    # The ingest checkpoints from a thread of its own (WalCheckpointer); this is the safety
    # net, so that a writer seldom pays for a checkpoint's fsync inside its commit.
    cur.execute("PRAGMA wal_autocheckpoint=20000")
    cur.close()
    dbapi_conn.create_function(SQLITE_LOCAL_TIME, 2, sqlite_local_time, deterministic=True)


class WalCheckpointer:
    """Copies SQLite's write-ahead log into the database file every ``interval`` seconds,
    from its own thread and connection (PASSIVE: never blocks the writer). The checkpoint's
    fsync then happens beside the ingest's commits instead of inside one of them.

    >>> import tempfile
    >>> engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/x.db")
    >>> with WalCheckpointer(engine, interval=0.05):
    ...     pass
    """

    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        import threading

        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # a busy or vanished database: try again next time
                log.debug("checkpoint skipped (%s)", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> "WalCheckpointer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@contextlib.contextmanager
def one_node_at_a_time(engine: Engine, what: str) -> Iterator[None]:
    """Run the block on one fleet node at a time (a PostgreSQL advisory lock named ``what``, held on
    a connection of its own): two nodes started together must not both migrate the schema or both
    create the first admin. Nothing to do on SQLite, which one node uses alone."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(hashtext(:what))"), {"what": f"sohoa:{what}"})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:what))"), {"what": f"sohoa:{what}"})
            conn.commit()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), one fleet node at a time."""
    from alembic import command

    try:
        with one_node_at_a_time(engine, "migrate"):
            command.upgrade(_alembic_config(engine), revision)
    except Exception as exc:
        if isinstance(exc, FleetError):
            raise
        detail = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot migrate {where}: {detail}") from exc


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class RawJSON(str):
    """JSON text already serialized (and validated): stored as is, not encoded again."""

    __slots__ = ()


class _SqliteTime:
    """Aware datetime -> SQLAlchemy's SQLite text (naive UTC, always microseconds, so it
    compares correctly as text). Remembers the last value: a batch shares its received time."""

    __slots__ = ("_last", "_text")

    def __init__(self) -> None:
        self._last: Any = None
        self._text: str | None = None

    def __call__(self, value: Any) -> str | None:
        if value is None:
            return None
        if value is not self._last:
            # value - utcoffset is the UTC wall time (still labelled with its zone, cut off by [:26]).
            self._text = (value - value.utcoffset()).isoformat(" ", "microseconds")[:26]
            self._last = value
        return self._text


def _converter(column_type: Any, dialect: str) -> Callable[[Any], Any] | None:
    """How one column's Python value goes to the driver, without SQLAlchemy's per-value
    machinery (the ingest writes thousands of rows a second)."""
    from fleet.models import UTCDateTime

    if isinstance(column_type, UTCDateTime):
        return _SqliteTime() if dialect == "sqlite" else None
    if isinstance(column_type, JSON):
        if dialect == "sqlite":
            return lambda v: v if v is None or isinstance(v, RawJSON) else json.dumps(v, separators=(",", ":"))
        from psycopg.types.json import Jsonb

        return lambda v: v if v is None or isinstance(v, RawJSON) else Jsonb(v)
    if isinstance(column_type, Boolean) and dialect == "sqlite":
        return lambda v: None if v is None else int(v)
    if isinstance(column_type, Date) and dialect == "sqlite":  # SQLAlchemy's SQLite text: YYYY-MM-DD
        return lambda v: None if v is None else v.isoformat()
    return None


def bulk_insert(connection: Connection, table: Any, rows: Sequence[dict[str, Any]],
                on_conflict: str = "DO NOTHING") -> int:
    """``INSERT ... ON CONFLICT <on_conflict>`` of many rows in one driver ``executemany``, with
    values converted once per column (see :func:`_converter`), without SQLAlchemy's per-value
    machinery. Rows share their keys. Returns the rows the database reports written (inserted, or
    updated by an upsert): for the default ``DO NOTHING``, the rows that were not there yet.

    ``on_conflict`` is SQL from our own code (e.g. ``("id") DO UPDATE SET ...``), never from input:
    the same text works on SQLite and PostgreSQL when it quotes names and uses ``excluded``.

    (Multi-row ``VALUES`` statements on SQLite, tried to spare the GIL hand-off around each row's
    statement step, made the in-process ingest no cheaper in bench_ingest: executemany stays.)"""
    if not rows:
        return 0
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
    names = list(rows[0])
    marker = "?" if dialect == "sqlite" else "%s"
    columns = ", ".join(f'"{n}"' for n in names)
    placeholders = ", ".join([marker] * len(names))
    # Table and column names come from our own metadata, values go as parameters.
    sql = f'INSERT INTO "{table.name}" ({columns}) VALUES ({placeholders}) ON CONFLICT {on_conflict}'  # noqa: S608
    converters = [(i, conv) for i, n in enumerate(names) if (conv := _converter(table.c[n].type, dialect))]
    params: list[tuple[Any, ...]] = []
    for row in rows:
        values = [row[n] for n in names]
        for i, conv in converters:
            values[i] = conv(values[i])
        params.append(tuple(values))
    # Both drivers sum an executemany's row counts (sqlite3's changes(), psycopg's command tuples).
    return int(connection.exec_driver_sql(sql, params).rowcount)


def insert_ignore(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the dialect: idempotent writes on message ids.
    Execute it with a list of row dicts."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise DatabaseError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


def hour_bucket(column: Any, dialect: str) -> Any:
    """The hour a time column falls in, as an SQL expression (what counts a device's hours of
    availability, and what telemetry thinning keeps one sample of)."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H", column)
    return func.date_trunc("hour", column)
