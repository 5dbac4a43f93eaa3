"""Alembic environment: run by :func:`fleet.db.migrate` with the engine in ``config.attributes``
(or, for ``alembic`` on the command line, the URL in ``sqlalchemy.url``)."""

from alembic import context
from sqlalchemy import Engine, create_engine

import fleet.alerts.models  # registers the alerts table on Base
import fleet.auth.models  # registers the users, sessions and audit tables on Base
import fleet.delivery.models  # registers the delivery outbox on Base
import fleet.dossiers.models  # registers the dossier registry's tables on Base
import fleet.enroll.models  # registers the enrollment tables on Base
import fleet.leases  # registers the job leases table on Base
import fleet.operations.models  # registers the operations tables on Base
import fleet.operators.models  # registers the counter operators table on Base
import fleet.progress.models  # noqa: F401 - registers the progress tables on Base
from fleet.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url or run through `sohoa-fleet migrate`")
    return create_engine(url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `sohoa-fleet migrate`")
run_migrations_online()
