"""What the page pipeline said about a page, in the terms the rest of the device uses: ok or
not, issue codes with their messages, the document type, blank or not, a receipt slip's dossier
code. No personal data: the CCCD fields and the full codes stay in the pipeline's result.

:func:`verdict_of` reads a :class:`PipelineResult`, the shape of
``device.inference.pipeline.PageResult`` (tests script results of the same shape).

>>> from device.inference.quality import Issue, Verdict
>>> class Result:  # shaped like PageResult
...     quality = Verdict([Issue.of("blurry")])
...     codes = []
...     doctype, confidence, blank = "cccd", 0.93, False
>>> v = verdict_of(Result())
>>> v.ok, v.issues, v.doctype
(False, ('blurry',), 'cccd')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class IssueLike(Protocol):
    """One quality issue (``device.inference.quality.Issue``)."""

    @property
    def code(self) -> str: ...
    @property
    def message_vi(self) -> str: ...
    @property
    def message_en(self) -> str: ...


class QualityLike(Protocol):
    """The quality verdict (``device.inference.quality.Verdict``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def issues(self) -> Sequence[IssueLike]: ...


class CodeLike(Protocol):
    """A code read on the page (``device.inference.codes.Code``)."""

    @property
    def dossier_code(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str | None: ...


class PipelineResult(Protocol):
    """What :func:`verdict_of` reads of ``device.inference.pipeline.PageResult``."""

    @property
    def quality(self) -> QualityLike: ...
    @property
    def codes(self) -> Sequence[CodeLike]: ...
    @property
    def doctype(self) -> str | None: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def blank(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PageVerdict:
    """What the pipeline said about a page, in the session's terms."""

    ok: bool = True
    issues: tuple[str, ...] = ()
    messages_vi: tuple[str, ...] = ()
    messages_en: tuple[str, ...] = ()
    doctype: str | None = None
    doctype_confidence: float | None = None
    blank: bool = False
    dossier_code: str | None = None
    """The dossier code of a receipt-slip QR on the page, when there is one."""
    code_unreadable: bool = False
    """A code was seen on the page but could not be read (damaged, partly hidden, or a receipt's
    code of the wrong shape), and no receipt code was: an unreadable slip, when the dossier
    still waits for its code."""


UNCHECKED = PageVerdict()
"""No pipeline ran (none configured)."""
PROCESSING_FAILED = PageVerdict(
    ok=False,
    issues=("processing_failed",),
    messages_vi=("Không xử lý được ảnh này, vui lòng quét lại",),
    messages_en=("This image could not be processed, please scan it again",),
)
"""The pipeline failed on the page: it is kept, and the clerk is asked to scan it again."""


def receipt_code(codes: Sequence[CodeLike]) -> tuple[str | None, bool]:
    """The first receipt slip's dossier code among ``codes``, and whether, lacking one, a code
    was seen but could not be read."""
    receipt = next((c.dossier_code.strip() for c in codes if c.dossier_code and c.dossier_code.strip()), None)
    return receipt, receipt is None and any(c.kind == "unreadable" for c in codes)


def verdict_of(result: PipelineResult) -> PageVerdict:
    """The :class:`PageVerdict` of one pipeline result; the first receipt slip's code names the dossier."""
    quality = result.quality
    receipt, unreadable = receipt_code(result.codes)
    return PageVerdict(
        ok=quality.ok,
        issues=tuple(str(i.code) for i in quality.issues),
        messages_vi=tuple(i.message_vi for i in quality.issues),
        messages_en=tuple(i.message_en for i in quality.issues),
        doctype=result.doctype,
        doctype_confidence=result.confidence,
        blank=result.blank,
        dossier_code=receipt,
        code_unreadable=unreadable,
    )
