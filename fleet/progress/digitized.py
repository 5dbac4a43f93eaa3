"""Digitized dossiers as pages arrive: the ingest hands each batch's pages to :func:`record`,
which keeps, per dossier, its first accepted page (time, page, device, the page's unit) with an
upsert that only ever moves to an earlier page: pages may arrive late and in any order (devices
store and forward), and a page delivered twice changes nothing. :func:`rebuild` recomputes the
table from the pages (after a bulk load that bypassed the ingest).

>>> from datetime import UTC, datetime
>>> row = {"dossier_code": "H1", "dropped": False, "quality": {"ok": True, "issues": []}}
>>> accepted(row), accepted({**row, "quality": {"ok": False}}), accepted({**row, "dossier_code": None})
(True, False, False)
"""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, insert

from fleet.db import bulk_insert
from fleet.progress.models import DigitizedDossier
from fleet.progress.rates import first_accepted_pages


def accepted(page: dict[str, Any]) -> bool:
    """The rule of :func:`fleet.progress.rates.accepted_page` for a page row about to be stored."""
    if not page.get("dossier_code") or page.get("dropped"):
        return False
    quality = page.get("quality")
    return not isinstance(quality, dict) or quality.get("ok") is not False


def record(connection: Connection, pages: Iterable[dict[str, Any]]) -> int:
    """Fold a batch of page rows (as the ingest stores them) into the table; returns how many
    dossiers the batch touched."""
    first: dict[str, dict[str, Any]] = {}
    for page in pages:
        if not accepted(page):
            continue
        row = {"dossier_code": page["dossier_code"], "first_at": page["captured_at"], "page_id": page["page_id"],
               "device_id": page["device_id"], "unit_code": page.get("unit_code")}
        known = first.get(row["dossier_code"])
        if known is None or (row["first_at"], row["page_id"]) < (known["first_at"], known["page_id"]):
            first[row["dossier_code"]] = row
    if not first:
        return 0
    bulk_insert(connection, DigitizedDossier.__table__, sorted(first.values(), key=lambda r: r["dossier_code"]),
                on_conflict=_TOWARDS_EARLIER)
    return len(first)


def _towards_earlier() -> str:
    """The upsert's conflict clause: the kept row moves only to an earlier page (time, then page id)."""
    table = DigitizedDossier.__tablename__
    kept = ", ".join(f'"{c}" = excluded."{c}"' for c in ("first_at", "page_id", "device_id", "unit_code"))
    return (f'("dossier_code") DO UPDATE SET {kept} WHERE excluded."first_at" < "{table}"."first_at" '
            f'OR (excluded."first_at" = "{table}"."first_at" AND excluded."page_id" < "{table}"."page_id")')


_TOWARDS_EARLIER = _towards_earlier()


def rebuild(connection: Connection) -> None:
    """Recompute the table from every page (what the migration does once)."""
    first = first_accepted_pages(connection.dialect.name, with_page=True)
    connection.execute(delete(DigitizedDossier))
    connection.execute(insert(DigitizedDossier).from_select(
        ["dossier_code", "first_at", "page_id", "device_id", "unit_code"],
        first.select().with_only_columns(first.c.dossier, first.c.at, first.c.page_id, first.c.device_id,
                                         first.c.own_unit)))
