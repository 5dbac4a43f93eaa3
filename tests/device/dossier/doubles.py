"""Stand-ins for the session's collaborators that tests script: a page source that yields
given images (and can fault or wait mid-batch), a page pipeline whose verdicts are given in
advance, a PDF builder and an outbox sink that record what they got. The real pipeline, PDF
builder and outbox are exercised by their own tests and by the integration tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from device.dossier.model import ClosedDossier, SessionPage, Source
from device.dossier.numbering import DocumentKind
from device.dossier.sources import RawImage
from device.errors import OutboxFull


def page_image(value: int, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A small flat BGR image; ``value`` tells pages apart."""
    return np.full((size[0], size[1], 3), value, dtype=np.uint8)


class ListSource:
    """Yields ``images`` as one batch. ``fail_after=n`` raises ``fault`` after n pages (a jam,
    an unplugged cable); ``gate_after=n`` blocks after n pages until ``gate`` is set (so a test can
    act mid-batch) and sets ``reached`` when it gets there."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        source: Source = "scanner",
        dpi: int | None = 300,
        fail_after: int | None = None,
        fault: Exception | None = None,
        gate_after: int | None = None,
    ) -> None:
        self.images = list(images)
        self.source: Source = source
        self.dpi = dpi
        self.fail_after = fail_after
        self.fault = fault
        self.gate_after = gate_after
        self.gate = threading.Event()
        self.reached = threading.Event()
        self.yielded = 0
        self.saw_stop = False
        self.stopped = threading.Event()
        """Set when the session told the source to stop (a cancel)."""
        self.ended = threading.Event()
        """Set when the batch's generator has finished or been closed (the scanner's cleanup ran)."""

    def pages(self, stop: threading.Event) -> Iterator[RawImage]:
        try:
            yield from self._pages(stop)
        finally:
            self.ended.set()

    def _pages(self, stop: threading.Event) -> Iterator[RawImage]:
        for i, image in enumerate(self.images):
            if self.fail_after is not None and i >= self.fail_after:
                assert self.fault is not None
                raise self.fault
            if self.gate_after is not None and i == self.gate_after:
                self.reached.set()
                self.gate.wait(10)
            if stop.is_set():
                self.saw_stop = True
                return
            self.yielded += 1
            yield RawImage(image, self.source, self.dpi)
        if self.fail_after is not None and self.fail_after >= len(self.images) and self.fault is not None:
            raise self.fault

    def stop(self) -> None:
        self.stopped.set()


@dataclass
class Issue:
    code: str
    message_vi: str
    message_en: str


@dataclass
class Quality:
    ok: bool
    issues: list[Issue] = field(default_factory=list)


@dataclass
class Receipt:
    dossier_code: str
    procedure_code: str = "1.000001"


@dataclass
class Code:
    kind: str
    receipt: Receipt | None = None
    text: str | None = None

    @property
    def dossier_code(self) -> str | None:
        return self.receipt.dossier_code if self.receipt is not None else None


@dataclass
class Result:
    """Shaped like the page pipeline's PageResult, as far as the session reads it
    (``device.dossier.sources.ProcessedPage``)."""

    page: np.ndarray
    quality: Quality
    codes: list[Code]
    doctype: str | None
    confidence: float | None
    blank: bool = False


@dataclass
class Verdict:
    """What the scripted pipeline says about the page whose first pixel has ``value``."""

    ok: bool = True
    doctype: str | None = "application_form"
    receipt: str | None = None
    blank: bool = False
    raises: bool = False
    unreadable: bool = False
    """A code on the page that could not be read (damaged, covered)."""


class ScriptedPipeline:
    """Answers for each image according to ``verdicts[first pixel value]`` (default: good)."""

    def __init__(self, verdicts: dict[int, Verdict] | None = None) -> None:
        self.verdicts = verdicts or {}
        self.calls = 0
        self._lock = threading.Lock()

    def process(self, image_bgr: np.ndarray, *, source: Source, dpi: int | None) -> Result:
        with self._lock:
            self.calls += 1
        v = self.verdicts.get(int(image_bgr[0, 0, 0]), Verdict())
        if v.raises:
            raise ValueError("cannot read this image")
        issues = [] if v.ok else [Issue("blurry", "Ảnh bị mờ", "The photo is blurred")]
        codes = [Code("dossier_receipt", Receipt(v.receipt))] if v.receipt else []
        if v.unreadable:
            codes.append(Code("unreadable"))
        # the pipeline crops: the kept image is a copy, distinguishable from the raw one
        return Result(image_bgr[1:, 1:].copy(), Quality(v.ok, issues), codes, v.doctype, 0.9, v.blank)


class RecordingPdf:
    """A PDF builder that records its calls and returns small marked bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str | None]] = []

    def __call__(
        self, pages: Sequence[SessionPage], *, name: str, dossier_code: str | None, sequence: int, doctype: str | None,
        kind: DocumentKind = "component",
    ) -> bytes:
        self.calls.append((name, [p.page_id for p in pages], doctype))
        return b"%PDF-1.4 test " + name.encode()


class RecordingSink:
    """An outbox stand-in: keeps submitted dossiers; ``full=True`` refuses like a full disk."""

    def __init__(self) -> None:
        self.dossiers: list[ClosedDossier] = []
        self.full = False
        self.received = threading.Event()

    def submit_dossier(self, dossier: ClosedDossier) -> None:
        if self.full:
            raise OutboxFull("free disk space below the floor")
        self.dossiers.append(dossier)
        self.received.set()
