"""The open dossier's pages, held on disk as they come and go (:meth:`Outbox.hold_page`): a
crash before the dossier closes loses none of them (the next start sends them as single pages).
When the dossier closes the session's sink stores them for delivery and the held copies are
released; when it is cancelled they are released and nothing is sent.

>>> held = HeldPages(outbox, sink, session)  # doctest: +SKIP
>>> session.add_listener(held.on_session)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from device.delivery.outbox import Outbox
from device.errors import OutboxFull
from protocol.messages import encode
from protocol.topics import Channel, topic

if TYPE_CHECKING:
    from device.dossier.model import SessionEvent, SessionPage
    from device.dossier.session import DossierSession
    from device.dossier.sink import OutboxSink

log = logging.getLogger(__name__)

_CHANGES = ("page_added", "page_replaced", "page_removed", "named", "page_retyped")


class HeldPages:
    """Mirrors the open dossier's pages in the outbox (held, not sent); a session listener."""

    def __init__(self, outbox: Outbox, sink: OutboxSink, session: DossierSession) -> None:
        self.outbox = outbox
        self.sink = sink
        self.session = session
        self._held: dict[str, set[str]] = {}
        """Page ids held in the outbox, by session id."""

    def on_session(self, event: SessionEvent) -> None:
        try:
            self._follow(event)
        except Exception:  # the page is still in memory; the dossier can still close
            log.exception("holding the open dossier's pages on disk failed")

    def _message(self, page: SessionPage, dossier_code: str | None, sha256: str, size: int,
                 content_type: str) -> tuple[str, bytes, str]:
        event = self.sink.page_event(page, dossier_code, sha256, size, content_type)
        return topic(self.sink.device_id, Channel.EVENT), encode(event), event.id

    def _follow(self, event: SessionEvent) -> None:
        snap = event.snapshot
        if event.kind == "closed" and snap.last_closed is not None:
            self._release(snap.last_closed.session_id)  # the sink stored them for delivery
            return
        if event.kind == "cancelled" and snap.session_id is not None:
            self._release(snap.session_id)
            return
        if event.kind not in _CHANGES or snap.session_id is None:
            return
        group = snap.session_id
        pages = {p.page_id: p for p in self.session.pages()}
        if self.session.snapshot().session_id != group:
            return
        held = self._held.setdefault(group, set())
        code = self.session.page_code()
        if event.kind in ("named", "page_retyped"):  # held messages carry the code, kind and types as they are now
            for page_id in held & set(pages):
                page = pages[page_id]

                def renamed(sha256: str, size: int, ctype: str, page: SessionPage = page) -> tuple[str, bytes, str]:
                    return self._message(page, code, sha256, size, ctype)

                self.outbox.update_held(page_id, renamed)
        gone = held - set(pages)
        if gone:
            self.outbox.release_held(group, gone)
            held -= gone
        for page_id, page in pages.items():
            if page_id in held:
                continue
            data, content_type = page.encoded()

            def message(sha256: str, page: SessionPage = page, size: int = len(data), ctype: str = content_type,
                        ) -> tuple[str, bytes, str]:
                return self._message(page, code, sha256, size, ctype)

            try:
                self.outbox.hold_page(group, page_id, data, content_type, message)
            except OutboxFull as exc:
                log.error("an open dossier's page could not be held on disk (%s); it stays in memory", exc)
                return
            held.add(page_id)

    def _release(self, group: str) -> None:
        self._held.pop(group, None)
        self.outbox.release_held(group)
