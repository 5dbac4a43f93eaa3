"""One dossier document's PDF: the builder seam the session calls, the real builder over the
PDF writer (``device/dossier/pdf_writer.py``), and the step that turns a closed dossier's pages
into its named documents.

>>> builder = DossierPdfBuilder(unit="000.00.12.H10", device="kiosk-0001")
>>> builder.unit
'000.00.12.H10'
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from device.dossier.model import BuiltDocument, SessionPage
from device.dossier.naming import PlannedDocument
from device.dossier.numbering import DocumentKind

if TYPE_CHECKING:
    from device.dossier.config import PdfConfig

log = logging.getLogger(__name__)


class PdfBuilder(Protocol):
    """Builds one dossier component PDF (:class:`DossierPdfBuilder`) and returns its bytes."""

    def __call__(
        self, pages: Sequence[SessionPage], *, name: str, dossier_code: str | None, sequence: int, doctype: str | None,
        kind: DocumentKind = "component",
    ) -> bytes: ...


def build_documents(planned: Sequence[PlannedDocument], code: str | None, builder: PdfBuilder | None
                    ) -> tuple[BuiltDocument, ...]:
    """The planned documents' PDFs. A document whose PDF fails is left out (its pages still go: a
    PDF can be rebuilt, a page cannot); no builder, no documents."""
    if builder is None:
        log.warning("no PDF builder available; dossier handed over without PDFs")
        return ()
    documents: list[BuiltDocument] = []
    for plan in planned:
        try:
            pdf = builder(plan.pages, name=plan.name, dossier_code=code, sequence=plan.sequence, doctype=plan.doctype,
                          kind=plan.kind)
        except Exception as exc:  # the pages still go: a PDF can be rebuilt, a page cannot
            log.error("building document %s failed (%s); pages handed over without it", plan.sequence,
                      type(exc).__name__)
            continue
        documents.append(BuiltDocument(plan.name, plan.sequence, plan.doctype, tuple(p.page_id for p in plan.pages),
                                       pdf, plan.kind))
    return tuple(documents)


class DossierPdfBuilder:
    """A :class:`PdfBuilder` over the dossier PDF writer (:func:`device.dossier.pdf_writer.write_pdf`),
    imported on first use (it brings the PDF and OCR libraries).

    >>> session = DossierSession(pdf_builder=DossierPdfBuilder(unit="000.00.12.H10"))  # doctest: +SKIP
    """

    def __init__(self, pdf_config: PdfConfig | None = None, *, unit: str = "", device: str = "") -> None:
        self.pdf_config = pdf_config
        self.unit = unit
        self.device = device

    def __call__(
        self, pages: Sequence[SessionPage], *, name: str, dossier_code: str | None, sequence: int, doctype: str | None,
        kind: DocumentKind = "component",
    ) -> bytes:
        import tempfile
        from pathlib import Path

        from device.dossier.pdf_writer import DossierInfo, PdfPage, scratch_dir, write_pdf

        pdf_pages = [
            PdfPage(
                image=p.image,
                dpi=p.dpi,
                sha256=hashlib.sha256(p.encoded()[0]).hexdigest(),
                blank=False,
                doctype=p.verdict.doctype,
            )
            for p in pages
        ]
        info = DossierInfo(
            dossier_code=dossier_code or name.removesuffix(".pdf").rsplit(".", 1)[0].removesuffix(f"-KQ{sequence}"),
            sequence=sequence,
            document_type=doctype or "other",
            unit=self.unit,
            device=self.device,
            captured_at=min(p.captured_at for p in pages),
            kind=kind,
        )
        with tempfile.TemporaryDirectory(prefix="sohoa-dossier-", dir=scratch_dir()) as tmp:
            out = Path(tmp) / name
            write_pdf(pdf_pages, out, info, self.pdf_config)
            return out.read_bytes()
