"""The dossiers received per unit and month, counted once and kept (:class:`DossierCount`):
received, with a component digitized, with a result. Triggers on ``dossiers`` keep the table
exact as any writer changes a dossier (see the model); :func:`rebuild` recounts it from the
dossiers, the reference (the full recount calls it), and :func:`fresh` is that count, for
comparing.

>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.progress.units import import_units, sample_csv
>>> from fleet.dossiers.received import import_received, parse_csv
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> csv = "code,procedure_code,unit_code,received_date,due_date\\nH99-1,1.001,99001,2026-01-05,2026-01-20\\n"
>>> with session_factory(engine)() as session:
...     _ = import_units(session, sample_csv()); _ = import_received(session, parse_csv(csv))
...     kept(session.connection()) == fresh(session.connection()) == {("99001", "2026-01"): (1, 0, 0)}
True
"""

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from fleet.dossiers.models import Dossier, DossierCount

Counts = dict[tuple[str, str], tuple[int, int, int]]
"""{(receiving unit, month received): (received, digitized, results)}"""


def fresh_query() -> Any:
    """(unit_code, period, received, digitized, results) counted from the dossiers themselves."""
    t = Dossier.__table__.c
    return (select(t.received_unit, t.received_period, func.count(), func.count(t.component_at),
                   func.count(t.result_at))
            .where(t.received_unit.is_not(None), t.received_period.is_not(None))
            .group_by(t.received_unit, t.received_period))


def fresh(connection: Connection) -> Counts:
    """Counted from the dossiers now."""
    return {(u, p): (int(n), int(d), int(r)) for u, p, n, d, r in connection.execute(fresh_query())}


def kept(connection: Connection) -> Counts:
    """As the table holds them, without the rows of zeros left where dossiers moved away."""
    c = DossierCount.__table__.c
    query = select(c.unit_code, c.period, c.received, c.digitized, c.results).where(c.received != 0)
    return {(u, p): (int(n), int(d), int(r)) for u, p, n, d, r in connection.execute(query)}


def rebuild(connection: Connection) -> None:
    """Recount the table from the dossiers, in the caller's transaction.

    On PostgreSQL the table is locked against writers first: a writer that already added to it
    commits before the count is taken (so the count includes its dossiers), and one that
    would add waits until this transaction commits, then adds to the rebuilt rows (its dossiers
    were not in the count). Readers are not blocked."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"LOCK TABLE {DossierCount.__tablename__} IN EXCLUSIVE MODE")
    connection.execute(delete(DossierCount))
    connection.execute(insert(DossierCount).from_select(
        ["unit_code", "period", "received", "digitized", "results"], fresh_query()))
