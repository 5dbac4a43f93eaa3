"""What a dossier session holds and reports: its pages, the views screens see, the closed
dossier handed to the sink, and the events listeners receive.

>>> PageView("p1", 1, "scanner", True, (), (), (), None, None, False).sequence
1
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from device.dossier.numbering import DocumentKind
from device.errors import ImageRejected
from device.inference.verdict import PageVerdict

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from protocol.messages import DossierClosed, Operator

    Image = npt.NDArray[np.uint8]
else:
    Image = Any

State = Literal["idle", "open", "capturing", "review", "closing", "closed"]
OpenedVia = Literal["qr", "typed", "walk_in"]
Source = Literal["scanner", "camera", "folder"]
Side = Literal["front", "back"]
EventKind = Literal[
    "state", "page_added", "page_replaced", "page_retyped", "page_removed", "named", "fault", "closed", "cancelled",
    "staff_card",
]
CardOutcome = Literal["signed_in", "signed_out", "wrong_card", "locked", "dossier_started", "no_operators"]
"""What a staff card fed as a page did: signed its clerk in, or out (the one signed in fed it
again); or nothing, because the card is no operator's of this device, signing in is locked, the
open dossier already holds another clerk's pages, or the device has no operator list yet."""
CorrectedBy = Literal["clerk", "citizen", "admin"]
"""Who changed a page's document type: a role, never a person."""

Fault = Literal[
    "scanner_jammed",
    "scanner_cover_open",
    "scanner_no_docs",
    "scanner_io_error",
    "scanner_gone",
    "camera_unavailable",
    "no_scanner",
    "scanner_busy",
    "capture_error",
    "disk_full",
    "outbox_error",
    "dossier_code_mismatch",
    "foreign_dossier_code",
    "unreadable_dossier_code",
    "too_many_pages",
]
"""Why the session needs a person's attention. Scanner faults keep the protocol's event names."""


@dataclass(frozen=True)
class SessionPage:
    """One page of the open dossier: the image kept (the pipeline's upright, cropped page when it
    gave one, else the captured image), its verdict and the full pipeline result."""

    page_id: str
    sequence: int
    batch_id: str
    batch_sequence: int
    source: Source
    dpi: int | None
    side: Side
    captured_at: datetime
    image: Image = field(repr=False)
    verdict: PageVerdict
    result: object | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)
    """The captured file as the source encoded it (None for camera frames)."""
    content_type: str | None = None
    corrected_by: CorrectedBy | None = None
    """Who last changed the page's type by hand (None: the type is the pipeline's)."""
    model_doctype: str | None = None
    """The type the pipeline gave, kept once a person changed it (:attr:`verdict` has the new one)."""
    model_confidence: float | None = None
    operator: Operator | None = None
    """Who captured it: the dossier's operator when the page came (the clerk or the citizen)."""

    @property
    def corrected(self) -> bool:
        """A person changed the page's type, and it now differs from the pipeline's."""
        return self.corrected_by is not None and self.verdict.doctype != self.model_doctype

    def encoded(self) -> tuple[bytes, str]:
        """The page's file for delivery: the source's own bytes when it gave some (scanner PNG,
        folder file), else the kept image as PNG."""
        if self.data is not None:
            return self.data, self.content_type or "application/octet-stream"
        import cv2

        ok, buffer = cv2.imencode(".png", self.image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise ImageRejected("the page image cannot be encoded as PNG")
        return bytes(buffer), "image/png"

    @cached_property
    def view(self) -> PageView:
        v = self.verdict
        return PageView(
            page_id=self.page_id,
            sequence=self.sequence,
            source=self.source,
            ok=v.ok,
            issues=v.issues,
            messages_vi=v.messages_vi,
            messages_en=v.messages_en,
            doctype=v.doctype,
            doctype_confidence=v.doctype_confidence,
            blank=v.blank,
            doctype_corrected=self.corrected,
        )


@dataclass(frozen=True, slots=True)
class PageView:
    """A page as listeners and screens see it: no image, no personal data."""

    page_id: str
    sequence: int
    source: Source
    ok: bool
    issues: tuple[str, ...]
    messages_vi: tuple[str, ...]
    messages_en: tuple[str, ...]
    doctype: str | None
    doctype_confidence: float | None
    blank: bool
    doctype_corrected: bool = False
    """A person set the type (``doctype_confidence`` is then None)."""


@dataclass(frozen=True, slots=True)
class BuiltDocument:
    """One dossier document's PDF: a component named ``<dossier code>.<sequence>.pdf`` or a result
    named ``<dossier code>-KQ<sequence>.pdf``."""

    name: str
    sequence: int
    doctype: str | None
    page_ids: tuple[str, ...]
    pdf: bytes = field(repr=False)
    kind: DocumentKind = "component"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()


@dataclass(frozen=True, slots=True)
class ClosedDossier:
    """What :meth:`DossierSession.finish` hands to the sink."""

    session_id: str
    dossier_code: str | None
    opened_via: OpenedVia
    opened_at: datetime
    closed_at: datetime
    pages: tuple[SessionPage, ...]
    documents: tuple[BuiltDocument, ...]
    reason: Literal["done", "shutdown"] = "done"
    kind: DocumentKind = "component"
    """What was digitized: the dossier's input documents, or the procedure's result."""
    page_codes: dict[str, str] = field(default_factory=dict)
    """Page id -> the code its event carries when not the dossier's own (a result's ``<code>-KQ<n>``)."""

    operator: Operator | None = None
    """Who digitized it: the clerk signed in when it was opened (or, a staff card being its first
    sheet, the clerk the card signed in), or the citizen at the kiosk."""

    def page_code(self, page_id: str) -> str | None:
        """The dossier code the page's ``page_captured`` event carries."""
        return self.page_codes.get(page_id, self.dossier_code)

    def to_event(self, device_id: str) -> DossierClosed:
        """The protocol's ``dossier_closed`` event for this dossier."""
        from protocol.messages import DossierClosed, DossierDocument

        return DossierClosed(
            device_id=device_id,
            dossier_code=self.dossier_code,
            session_id=self.session_id,
            page_ids=[p.page_id for p in self.pages],
            documents=[
                DossierDocument(sha256=d.sha256, name=d.name, doctype=d.doctype, pages=len(d.page_ids), size=len(d.pdf))
                for d in self.documents
            ],
            operator=self.operator,
        )


@dataclass(frozen=True, slots=True)
class ClosedSummary:
    """What the finish screen shows after a dossier is closed."""

    session_id: str
    dossier_code: str | None
    pages: int
    documents: int
    kind: DocumentKind = "component"


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """The whole visible state at one moment (immutable: safe to hand to another thread)."""

    state: State
    session_id: str | None
    dossier_code: str | None
    opened_via: OpenedVia | None
    pages: tuple[PageView, ...]
    fault: Fault | None
    capturing: Source | None
    last_closed: ClosedSummary | None
    update_held: bool = False
    """An update installs: no dossier can be opened (:meth:`DossierSession.hold_for_update`)."""
    kind: DocumentKind = "component"
    """What the open dossier digitizes: its input documents, or the procedure's result."""
    operator: Operator | None = None
    """Who the open dossier records as its operator (an opaque id and kind, never a name)."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened. ``kind="state"`` is a transition (``previous`` -> ``snapshot.state``);
    the others say what happened to a page, a name, a fault."""

    kind: EventKind
    previous: State
    snapshot: SessionSnapshot
    page: PageView | None = None
    fault: Fault | None = None
    card: CardOutcome | None = None
    """For ``kind="staff_card"``: what the card did (the token itself is never in an event)."""

    @property
    def state(self) -> State:
        return self.snapshot.state


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What one :meth:`DossierSession.capture` run did."""

    batch_id: str
    pages: tuple[PageView, ...]
    fault: Fault | None
    cancelled: bool


Listener = Callable[[SessionEvent], None]
