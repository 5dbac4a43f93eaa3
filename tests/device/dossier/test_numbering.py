"""Document numbers on the device: a dossier reopened (another visit, after a restart) goes on
numbering from its number book on disk; numbers are never handed back (a refused hand-off leaves
a gap); a book that cannot be written keeps the dossier open with its pages; a result is
numbered apart (``<code>-KQ<n>``) and its pages carry that code, held copies included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.dossier.errors import InvalidSessionAction
from device.dossier.numbering import NumberBook, NumberBookError
from device.dossier.session import DossierSession
from tests.device.dossier.doubles import ListSource, RecordingPdf, RecordingSink, ScriptedPipeline, Verdict, page_image

CODE = "000.00.12.H10-260101-0031"


def _close(session: DossierSession, doctypes: list[str], code: str = CODE, kind: str = "component") -> list[str]:
    pipeline = ScriptedPipeline({i + 1: Verdict(doctype=t) for i, t in enumerate(doctypes)})
    session._processor = pipeline  # the scripted verdicts of this visit's pages
    session.open(code, kind=kind)  # type: ignore[arg-type]
    session.capture(ListSource([page_image(i + 1) for i in range(len(doctypes))]))
    closed = session.finish()
    assert closed is not None
    return [d.name for d in closed.documents]


def test_a_reopened_dossier_goes_on_numbering_across_restarts(tmp_path: Path) -> None:
    book = tmp_path / "state" / "dossier_numbers.json"
    with DossierSession(pdf_builder=RecordingPdf(), numbering=NumberBook(book)) as first:
        assert _close(first, ["cccd", "application_form"]) == [f"{CODE}.1.pdf", f"{CODE}.2.pdf"]
        assert _close(first, ["cccd"], code=CODE.lower()) == [f"{CODE.lower()}.3.pdf"]  # same dossier, typed lower
    # the agent restarts: a new session, a new book read from disk
    with DossierSession(pdf_builder=RecordingPdf(), numbering=NumberBook(book)) as second:
        assert _close(second, ["land_certificate"]) == [f"{CODE}.4.pdf"]
        assert _close(second, ["decision"], kind="result") == [f"{CODE}-KQ1.pdf"]
        assert _close(second, ["decision"], kind="result") == [f"{CODE}-KQ2.pdf"]
    saved = json.loads(book.read_text())
    assert {k: v for k, v in saved[CODE.upper()].items() if k != "used"} == {"component": 4, "result": 2}


def test_numbers_are_never_handed_back(tmp_path: Path) -> None:
    """A full outbox refuses the dossier: it stays in review, and when it closes later it gets a
    new number (a gap, never the number another close may already have used)."""
    sink = RecordingSink()
    with DossierSession(pdf_builder=RecordingPdf(), sink=sink, numbering=NumberBook(tmp_path / "n.json")) as session:
        session.open(CODE)
        session.capture(ListSource([page_image(1)]))
        sink.full = True
        with pytest.raises(OSError):
            session.finish()
        assert session.state == "review" and len(session.pages()) == 1
        sink.full = False
        closed = session.finish()
        assert closed is not None and [d.name for d in closed.documents] == [f"{CODE}.2.pdf"]


def test_a_book_that_cannot_be_written_keeps_the_dossier(tmp_path: Path) -> None:
    """The book's folder is a file (a broken data partition): no number is given, the dossier
    stays in review with its page and says so."""
    (tmp_path / "state").write_text("not a folder")
    with DossierSession(pdf_builder=RecordingPdf(), numbering=NumberBook(tmp_path / "state" / "n.json")) as session:
        session.open(CODE)
        session.capture(ListSource([page_image(1)]))
        with pytest.raises(NumberBookError):
            session.finish()
        assert session.state == "review" and session.snapshot().fault == "outbox_error"
        assert len(session.pages()) == 1


def test_a_book_unreadable_on_disk_starts_again(tmp_path: Path) -> None:
    """Bad input: a damaged book file. The counter keeps working (the fleet renames a collision)."""
    path = tmp_path / "n.json"
    path.write_text("{not json")
    assert NumberBook(path).reserve(CODE, "component", 1) == 1
    with pytest.raises(ValueError):
        NumberBook().reserve(CODE, "component", -1)


def test_result_mode_names_and_page_codes() -> None:
    pdf, sink = RecordingPdf(), RecordingSink()
    pipeline = ScriptedPipeline({1: Verdict(doctype="decision"), 2: Verdict(doctype="decision", blank=True),
                                 3: Verdict(doctype="land_certificate")})
    with DossierSession(processor=pipeline, pdf_builder=pdf, sink=sink) as session:
        session.open(CODE, via="qr", kind="result")
        assert session.snapshot().kind == "result"
        session.capture(ListSource([page_image(v) for v in (1, 2, 3)]))
        assert session.page_code() == f"{CODE}-KQ1"  # what its held pages say meanwhile
        closed = session.finish()
        assert closed is not None and closed.kind == "result"
        assert [(d.name, d.kind, d.sequence) for d in closed.documents] == [
            (f"{CODE}-KQ1.pdf", "result", 1), (f"{CODE}-KQ2.pdf", "result", 2)]
        # each page carries the code of its result; the blank one goes with the first
        assert [closed.page_code(p.page_id) for p in closed.pages] == [f"{CODE}-KQ1", f"{CODE}-KQ1", f"{CODE}-KQ2"]
        assert closed.to_event("kiosk-1").dossier_code == CODE
        assert session.snapshot().kind == "component"  # the next dossier starts as input documents

        # switching an open dossier to a result (the clerk's gesture), and back
        session.reset()
        session.open(CODE)
        assert session.set_kind("result").kind == "result"
        assert session.set_kind("component").kind == "component"
        with pytest.raises(ValueError):
            session.set_kind("minutes")  # type: ignore[arg-type]
        session.cancel()
        with pytest.raises(InvalidSessionAction):
            session.set_kind("result")  # nothing open
        with pytest.raises(ValueError):
            session.open(CODE, kind="minutes")  # type: ignore[arg-type]
