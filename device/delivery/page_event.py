"""The one builder of the ``page_captured`` event, for every path a page takes: a batch from the
scanner or the folder (:mod:`device.scanning`), a dossier's page handed over or held on disk
while the dossier is open (:class:`device.dossier.sink.OutboxSink`).

The message id is derived from the page id (:func:`protocol.messages.derived_id`): describing
the same page again (a held page renamed, a dossier handed over again after a full disk) gives
the same message, which the outbox stores once and the fleet deduplicates.

>>> from datetime import UTC, datetime
>>> from device.inference.verdict import PageVerdict
>>> from protocol.messages import new_id
>>> event = page_captured(
...     "kiosk-0001", PageFacts(page_id=new_id(), content_type="image/png", width=2480, height=3508, dpi=300,
...                             source="scanner", batch_id="b1", sequence=1, side="front",
...                             captured_at=datetime.now(UTC)),
...     sha256="0" * 64, size=1234, verdict=PageVerdict(doctype="cccd", doctype_confidence=1.02))
>>> event.page.doctype_confidence, event.severity
(1.0, 'info')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from device.inference.verdict import PageVerdict
from protocol.messages import Operator, Page, PageCaptured, QualityVerdict, derived_id

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class PageFacts:
    """What is known of a page from its capture, before any verdict."""

    page_id: str
    content_type: str
    width: int
    height: int
    dpi: int | None
    source: Literal["scanner", "camera", "folder"]
    batch_id: str
    sequence: int
    side: Literal["front", "back"]
    captured_at: datetime


def page_captured(
    device_id: str,
    facts: PageFacts,
    *,
    sha256: str,
    size: int,
    verdict: PageVerdict | None = None,
    dossier_code: str | None = None,
    drop_blank_pages: bool = True,
    operator: Operator | None = None,
) -> PageCaptured:
    """The event describing one stored page file. ``verdict`` None: the pipeline did not say (the
    page goes without a type or quality verdict). A verdict that does not fit the contract (an
    odd label from a swapped model) is left out rather than losing the page."""
    fields: dict[str, Any] = {
        "page_id": facts.page_id,
        "sha256": sha256,
        "size": size,
        "content_type": facts.content_type,
        "width": facts.width,
        "height": facts.height,
        "dpi": facts.dpi,
        "source": facts.source,
        "batch_id": facts.batch_id,
        "sequence": facts.sequence,
        "side": facts.side,
        "captured_at": facts.captured_at,
        "dossier_code": dossier_code,
        "operator": operator,
    }
    analysed: dict[str, Any] = {}
    if verdict is not None:
        confidence = verdict.doctype_confidence
        analysed = {
            "doctype": verdict.doctype,
            "doctype_confidence": None if confidence is None else min(1.0, max(0.0, confidence)),
            "quality": QualityVerdict(ok=verdict.ok, issues=list(verdict.issues)),
            "dropped": verdict.blank and drop_blank_pages,
        }
    try:
        record = Page(**fields, **analysed)
    except ValidationError:
        log.warning("page %s: the pipeline's result does not fit the event; sent without it", facts.sequence)
        record = Page(**fields)
    ok = verdict is None or verdict.ok
    return PageCaptured(
        id=derived_id(facts.page_id, "page_captured"),
        device_id=device_id,
        page=record,
        severity="info" if ok else "warning",
    )
