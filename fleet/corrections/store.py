"""Reading corrections from the events table (joined with devices, pages and files) and writing
the export zip.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     latest_corrections(session)
[]
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import Device, Event, Page, StoredFile
from fleet.storage import FileStorage, is_sha256

log = logging.getLogger(__name__)

EVENT_TYPE = "doctype_corrected"

CLASS_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""What a class id looks like (``id_card``, ``land_certificate``...). The fleet does not fix the
class list (a newer model may add classes); a correction naming anything else is not exported."""

LABEL_COLUMNS = ("sha256", "file", "doctype", "previous", "device", "unit", "corrected_at")
"""The columns of ``labels.csv``: ``file`` is the page file's path inside the zip."""

_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tif", "image/webp": ".webp"}
_CHUNK = 256 * 1024
_IN_CHUNK = 500  # page ids per IN (...) query


@dataclass(frozen=True, slots=True)
class Correction:
    """The latest correction of one page, with what the fleet knows of its file."""

    page_id: str
    sha256: str
    doctype: str
    previous: str | None
    by: str
    device_id: str
    unit: str | None
    corrected_at: datetime
    event_id: str
    content_type: str | None
    file_available: bool
    corrections: int
    """How many corrections this page had (the latest one is the one kept)."""

    @property
    def file_name(self) -> str:
        """The page file's path in the export: ``pages/<doctype>/<sha256><suffix>``."""
        return f"pages/{self.doctype}/{self.sha256}{_SUFFIX.get(self.content_type or '', '')}"


def _valid(payload: dict[str, Any]) -> bool:
    doctype, previous, sha256 = payload.get("doctype"), payload.get("previous"), payload.get("sha256")
    return (
        isinstance(payload.get("page_id"), str)
        and isinstance(sha256, str) and is_sha256(sha256)
        and isinstance(doctype, str) and CLASS_ID.fullmatch(doctype) is not None
        and (previous is None or (isinstance(previous, str) and CLASS_ID.fullmatch(previous) is not None))
    )


def latest_corrections(
    session: Session,
    *,
    device_id: str | None = None,
    unit: str | None = None,
    doctype: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    store: FileStorage | None = None,
) -> list[Correction]:
    """The latest correction of every corrected page, oldest correction first. ``since``/``until``
    select on the latest correction's time; ``store`` (when given) also checks the file is on disk.
    A correction naming something that is not a class id is left out (and logged, without it), and
    so is one whose page is not a page of the correcting device with that very file (or has not
    arrived yet: it counts once its ``page_captured`` event is in)."""
    query = select(Event).where(Event.type == EVENT_TYPE)
    if device_id is not None:
        query = query.where(Event.device_id == device_id)
    query = query.order_by(Event.ts, Event.received_at, Event.id)
    shaped: list[tuple[Event, dict[str, Any]]] = []
    refused = 0
    for event in session.scalars(query):
        payload = event.payload if isinstance(event.payload, dict) else {}
        if not _valid(payload):
            refused += 1
            continue
        shaped.append((event, payload))
    if refused:
        log.warning("%d correction events name no valid class id or page file; not exported", refused)
    named = list({payload["page_id"] for _, payload in shaped})
    pages: dict[str, Page] = {}
    for start in range(0, len(named), _IN_CHUNK):
        pages.update((p.page_id, p) for p in session.scalars(
            select(Page).where(Page.page_id.in_(named[start:start + _IN_CHUNK]))))
    latest: dict[str, tuple[Event, dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    foreign = 0
    for event, payload in shaped:
        page_id = payload["page_id"]
        page = pages.get(page_id)
        # A device corrects only its own pages, by their own file: anything else could pull
        # another unit's page into the export. A correction ahead of its page waits for it.
        if page is None or page.device_id != event.device_id or page.sha256 != payload["sha256"]:
            foreign += page is not None
            continue
        latest[page_id] = (event, payload)  # later in the order: replaces
        counts[page_id] = counts.get(page_id, 0) + 1
    if foreign:
        log.warning("%d correction events name a page of another device or another file; not exported", foreign)
    if not latest:
        return []
    devices = {d.id: d.unit_code for d in session.scalars(select(Device).where(
        Device.id.in_({e.device_id for e, _ in latest.values()})))}
    shas = {p["sha256"] for _, p in latest.values()}
    files = {f.sha256: f.content_type for f in session.scalars(select(StoredFile).where(StoredFile.sha256.in_(shas)))}
    out: list[Correction] = []
    for page_id, (event, payload) in latest.items():
        sha256 = payload["sha256"]
        page = pages.get(page_id)
        # The unit the page came in under (a device moved since keeps its history where it was);
        # the device's unit now only for a page without one.
        unit_code = page.unit_code if page is not None and page.unit_code is not None else devices.get(event.device_id)
        held = sha256 in files and (store is None or store.has(sha256))
        correction = Correction(
            page_id=page_id,
            sha256=sha256,
            doctype=payload["doctype"],
            previous=payload.get("previous"),
            by=str(payload.get("by", "")),
            device_id=event.device_id,
            unit=unit_code,
            corrected_at=event.ts,
            event_id=event.id,
            content_type=files.get(sha256) or (page.content_type if page is not None else None),
            file_available=held,
            corrections=counts[page_id],
        )
        if unit is not None and unit_code != unit:
            continue
        if doctype is not None and correction.doctype != doctype:
            continue
        if since is not None and correction.corrected_at < since:
            continue
        if until is not None and correction.corrected_at >= until:
            continue
        out.append(correction)
    out.sort(key=lambda c: (c.corrected_at, c.event_id))
    return out


def labels_csv(corrections: Iterable[Correction]) -> str:
    """``labels.csv`` for these corrections (UTF-8, a header row, ISO 8601 UTC times)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for c in corrections:
        writer.writerow([c.sha256, c.file_name, c.doctype, c.previous or "", c.device_id, c.unit or "",
                         c.corrected_at.isoformat()])
    return buffer.getvalue()


class _Chunks(io.RawIOBase):
    """An unseekable sink collecting what the zip writer writes, handed out chunk by chunk."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def export_zip(corrections: Iterable[Correction], store: FileStorage) -> Iterator[bytes]:
    """The training-set zip, produced as it is written (never whole in memory): every corrected
    page whose file is held, stored under :attr:`Correction.file_name`, then ``labels.csv`` listing
    exactly those. Pages whose file has not arrived yet are left out."""
    sink = _Chunks()
    exported: list[Correction] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:
        for c in corrections:
            if not c.file_available or not store.has(c.sha256):
                continue
            info = zipfile.ZipInfo(c.file_name, date_time=c.corrected_at.timetuple()[:6])
            with store.path(c.sha256).open("rb") as src, zf.open(info, "w") as dst:
                while block := src.read(_CHUNK):
                    dst.write(block)
                    yield sink.take()
            exported.append(c)
            yield sink.take()
        zf.writestr(zipfile.ZipInfo("labels.csv", date_time=(1980, 1, 1, 0, 0, 0)), labels_csv(exported),
                    compress_type=zipfile.ZIP_DEFLATED)
    yield sink.take()

