"""How a closed dossier's pages become documents, and what each document is called.

Pages are grouped into components where the document type changes (``group_by_doctype``), blank
pages left out (``drop_blank_pages``); each group is one document named ``<code>.<n>``. A dossier
closed before anyone named it is called ``<walk_in_prefix>-<8 hex of its session>``.

>>> document_name("000.00.12.H10-260101-0001", 2)
'000.00.12.H10-260101-0001.2.pdf'
>>> walk_in_base("0192f3a4-aaaa-7bbb-8ccc-000000000000", SessionConfig())
'WALKIN-0192f3a4'
"""

from __future__ import annotations

from collections.abc import Sequence

from device.dossier.config import SessionConfig
from device.dossier.model import SessionPage

Group = tuple[str | None, list[SessionPage]]
"""One document's pages and the document type they share (None: untyped)."""


def walk_in_base(session_id: str, config: SessionConfig) -> str:
    """The name a dossier closed without a code goes by."""
    return f"{config.walk_in_prefix}-{session_id[:8]}"


def document_name(base: str, sequence: int) -> str:
    """The file name of a dossier's ``sequence``-th component document."""
    return f"{base}.{sequence}.pdf"


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
