"""How a closed dossier's pages become documents, and what each document is called.

Pages are grouped into documents where the document type changes (``group_by_doctype``), blank
pages left out (``drop_blank_pages``). A dossier's input documents (components) are named
``<code>.<n>``; the procedure's result, captured in result mode, ``<code>-KQ<n>`` (Decree 45/2020
art. 14), and its pages carry that code so the fleet keeps results apart everywhere. ``n`` comes
from the device's :class:`~device.dossier.numbering.NumberBook` (never reused for the dossier on
this device; the fleet renames a collision between devices). A dossier closed before anyone named
it is called ``<walk_in_prefix>-<8 hex of its session>`` and numbers from 1 (the name is its own).

>>> document_name("000.00.12.H10-260101-0001", 2)
'000.00.12.H10-260101-0001.2.pdf'
>>> document_name("000.00.12.H10-260101-0001", 1, "result")
'000.00.12.H10-260101-0001-KQ1.pdf'
>>> walk_in_base("0192f3a4-aaaa-7bbb-8ccc-000000000000", SessionConfig())
'WALKIN-0192f3a4'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from device.dossier.config import SessionConfig
from device.dossier.model import SessionPage
from device.dossier.numbering import DocumentKind, Numbering

Group = tuple[str | None, list[SessionPage]]
"""One document's pages and the document type they share (None: untyped)."""


def walk_in_base(session_id: str, config: SessionConfig) -> str:
    """The name a dossier closed without a code goes by."""
    return f"{config.walk_in_prefix}-{session_id[:8]}"


def document_label(base: str, sequence: int, kind: DocumentKind = "component") -> str:
    """What a document is called without its extension: ``<code>.<n>`` or ``<code>-KQ<n>``."""
    return f"{base}-KQ{sequence}" if kind == "result" else f"{base}.{sequence}"


def document_name(base: str, sequence: int, kind: DocumentKind = "component") -> str:
    """The file name of a dossier's document: ``<code>.<n>.pdf`` or ``<code>-KQ<n>.pdf``."""
    return document_label(base, sequence, kind) + ".pdf"


@dataclass(frozen=True, slots=True)
class PlannedDocument:
    """One document of a closing dossier, numbered, before its PDF is built."""

    name: str
    sequence: int
    kind: DocumentKind
    doctype: str | None
    pages: tuple[SessionPage, ...]
    page_code: str | None
    """The dossier code its pages' events carry: the dossier's, or ``<code>-KQ<n>`` for a result."""


def plan_documents(
    pages: Sequence[SessionPage],
    code: str | None,
    session_id: str,
    config: SessionConfig,
    kind: DocumentKind,
    numbering: Numbering,
) -> tuple[PlannedDocument, ...]:
    """The dossier's documents, numbered: a named dossier's numbers are taken from ``numbering``
    (never given again, even if the hand-off then fails), a walk-in's start at 1."""
    groups = group_pages(pages, config)
    if not groups:
        return ()
    base = code or walk_in_base(session_id, config)
    first = numbering.reserve(code.upper(), kind, len(groups)) if code is not None else 1
    planned = []
    for offset, (doctype, members) in enumerate(groups):
        sequence = first + offset
        page_code = None if code is None else (document_label(code, sequence, kind) if kind == "result" else code)
        planned.append(PlannedDocument(document_name(base, sequence, kind), sequence, kind, doctype,
                                       tuple(members), page_code))
    return tuple(planned)


def page_codes(pages: Sequence[SessionPage], planned: Sequence[PlannedDocument]) -> dict[str, str]:
    """Page id -> the code its event carries, where that is not the dossier's own (a result's
    pages; a result page left out of every document, a blank one, goes with the first result)."""
    found = {p.page_id: d.page_code for d in planned if d.kind == "result" and d.page_code for p in d.pages}
    if found:
        first = planned[0].page_code
        assert first is not None
        found.update({p.page_id: first for p in pages if p.page_id not in found})
    return found


def group_pages(pages: Sequence[SessionPage], config: SessionConfig) -> list[Group]:
    """The dossier's pages cut into documents, in order: a new document where the type changes
    (untyped pages join the document they follow, or take the first type seen)."""
    groups: list[Group] = []
    for page in pages:
        if config.drop_blank_pages and page.verdict.blank:
            continue
        doctype = page.verdict.doctype
        if groups:
            current, members = groups[-1]
            if not config.group_by_doctype or doctype is None or doctype == current:
                members.append(page)
                continue
            if current is None:  # untyped pages so far take the first type seen
                groups[-1] = (doctype, [*members, page])
                continue
        groups.append((doctype if config.group_by_doctype else None, [page]))
    return groups
