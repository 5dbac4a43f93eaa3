"""The hand-off of a closed dossier: the sink seam the session calls and the real sink over
the outbox (pages with their ``page_captured`` events, PDFs with the ``dossier_closed`` event).

>>> session = DossierSession(sink=OutboxSink(outbox, "kiosk-0001"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.dossier.model import ClosedDossier, Image, SessionPage
from protocol.messages import derived_id

if TYPE_CHECKING:
    from protocol.messages import DoctypeCorrected, PageCaptured


class DossierSink(Protocol):
    """Takes a closed dossier (pages and PDFs) for delivery: the outbox. Raises
    :class:`~device.errors.OutboxFull` when it cannot take it; it must then keep nothing of it."""

    def submit_dossier(self, dossier: ClosedDossier) -> None: ...


class _PageStore(Protocol):
    def add_page(
        self, data: bytes, content_type: str, make_message: Callable[[str], tuple[str, bytes, str]]
    ) -> str: ...
    def add_message(self, topic: str, payload: bytes, message_id: str) -> None: ...


class OutboxSink:
    """A :class:`DossierSink` over ``device.delivery.outbox.Outbox``: each page's file with its
    ``page_captured`` event, then each PDF, the last one carrying the ``dossier_closed`` event.
    Message ids are derived from the page and session ids (:func:`protocol.messages.derived_id`):
    a retry after :class:`OutboxFull` stores nothing twice.

    >>> session = DossierSession(sink=OutboxSink(outbox, "kiosk-0001"))  # doctest: +SKIP
    """

    def __init__(self, outbox: _PageStore, device_id: str, *, drop_blank_pages: bool = True) -> None:
        self.outbox = outbox
        self.device_id = device_id
        self.drop_blank_pages = drop_blank_pages

    def submit_dossier(self, dossier: ClosedDossier) -> None:
        from protocol.messages import encode
        from protocol.topics import Channel, topic

        event_topic = topic(self.device_id, Channel.EVENT)
        for page in dossier.pages:
            data, content_type = page.encoded()

            def page_message(sha256: str, page: SessionPage = page, size: int = len(data), ctype: str = content_type
                             ) -> tuple[str, bytes, str]:
                event = self.page_event(page, dossier.page_code(page.page_id), sha256, size, ctype)
                return event_topic, encode(event), event.id

            sha256 = self.outbox.add_page(data, content_type, page_message)
            if page.corrected:
                correction = self.correction_event(page, sha256)
                self.outbox.add_message(event_topic, encode(correction), correction.id)
        closed = dossier.to_event(self.device_id).model_copy(
            update={"id": derived_id(dossier.session_id, "dossier_closed")})
        payload = encode(closed)
        if not dossier.documents:
            self.outbox.add_message(event_topic, payload, closed.id)
            return
        # The outbox stores a file together with one message: every PDF names the same
        # dossier_closed message (same id, stored once), so it is in the outbox with the first PDF.
        for document in dossier.documents:
            self.outbox.add_page(document.pdf, "application/pdf", lambda _sha: (event_topic, payload, closed.id))

    def correction_event(self, page: SessionPage, sha256: str) -> DoctypeCorrected:
        """The ``doctype_corrected`` event of a page a person re-typed: from the pipeline's type
        to the final one, with the page file's sha256 (the fleet's training label)."""
        from protocol.messages import DoctypeCorrected

        assert page.corrected_by is not None and page.verdict.doctype is not None
        return DoctypeCorrected(
            id=derived_id(page.page_id, "doctype_corrected"),
            device_id=self.device_id,
            page_id=page.page_id,
            sha256=sha256,
            previous=page.model_doctype,
            doctype=page.verdict.doctype,
            by=page.corrected_by,
        )

    def page_event(
        self, page: SessionPage, dossier_code: str | None, sha256: str, size: int, content_type: str
    ) -> PageCaptured:
        """The ``page_captured`` event of one of the dossier's pages (:func:`page_captured`)."""
        from device.delivery.page_event import PageFacts, page_captured

        height, width = page.image.shape[:2] if page.data is None else _png_size(page.data, page.image)
        facts = PageFacts(page_id=page.page_id, content_type=content_type, width=int(width), height=int(height),
                          dpi=page.dpi, source=page.source, batch_id=page.batch_id, sequence=page.batch_sequence,
                          side=page.side, captured_at=page.captured_at)
        return page_captured(self.device_id, facts, sha256=sha256, size=size, verdict=page.verdict,
                             dossier_code=dossier_code, drop_blank_pages=self.drop_blank_pages,
                             operator=page.operator)


def _png_size(data: bytes, image: Image) -> tuple[int, int]:
    """(height, width) of a PNG file from its header, else of the decoded image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    return int(image.shape[0]), int(image.shape[1])
