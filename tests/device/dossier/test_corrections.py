"""A clerk or citizen changes a page's document type: the session checks the class id, the page
carries the new type (PDF grouping, ``page_captured``), and closing the dossier into the real
outbox adds one ``doctype_corrected`` event per page whose type ended up different from the
pipeline's, naming the page file's sha256."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.dossier.errors import InvalidDoctype, InvalidSessionAction, UnknownPage
from device.dossier.model import SessionEvent
from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from protocol.messages import DoctypeCorrected, PageCaptured, decode
from tests.device.dossier.doubles import ListSource, RecordingPdf, ScriptedPipeline, Verdict, page_image

outbox_mod = pytest.importorskip("device.delivery.outbox")

CODE = "000.00.12.H10-260101-0042"


def _messages(outbox: object) -> list[object]:
    return [decode(m.topic, m.payload).message for m in outbox.pending_messages(limit=1000)]  # type: ignore[attr-defined]


def test_corrections_reach_the_outbox(tmp_path: Path) -> None:
    """Four pages typed application_form by the pipeline: page 1 re-typed once (citizen), page 2
    re-typed twice (clerk; the event goes from the pipeline's type to the last one), page 3
    re-typed and set back (no event), page 4 untouched (no event)."""
    outbox = outbox_mod.Outbox(tmp_path / "state")
    pdf = RecordingPdf()
    events: list[SessionEvent] = []
    try:
        session = DossierSession(processor=ScriptedPipeline({4: Verdict(doctype="receipt")}),
                                 sink=OutboxSink(outbox, "kiosk-0001"), pdf_builder=pdf)
        session.add_listener(events.append)
        session.open(CODE, via="typed")
        session.capture(ListSource([page_image(v) for v in (1, 2, 3, 4)]))
        ids = [p.page_id for p in session.pages()]
        view = session.set_doctype(ids[0], "birth_certificate", "citizen")
        assert view.doctype == "birth_certificate" and view.doctype_corrected and view.doctype_confidence is None
        session.set_doctype(ids[1], "receipt", "clerk")
        session.set_doctype(ids[1], "land_certificate", "clerk")
        session.set_doctype(ids[2], "id_card", "citizen")
        back = session.set_doctype(ids[2], "application_form", "citizen")
        assert not back.doctype_corrected and back.doctype_confidence == 0.9  # the pipeline's again
        retyped = [e for e in events if e.kind == "page_retyped"]
        assert len(retyped) == 5 and retyped[0].page is not None and retyped[0].page.page_id == ids[0]
        closed = session.finish()
        assert closed is not None
        messages = _messages(outbox)
        captured = {m.page.page_id: m for m in messages if isinstance(m, PageCaptured)}
        corrections = [m for m in messages if isinstance(m, DoctypeCorrected)]
        assert [captured[i].page.doctype for i in ids] == [
            "birth_certificate", "land_certificate", "application_form", "receipt"]
        assert sorted((c.page_id, c.previous, c.doctype, c.by) for c in corrections) == sorted([
            (ids[0], "application_form", "birth_certificate", "citizen"),
            (ids[1], "application_form", "land_certificate", "clerk"),
        ])
        for c in corrections:
            assert c.sha256 == captured[c.page_id].page.sha256 and c.device_id == "kiosk-0001"
            assert outbox.file_path(c.sha256).is_file()
        assert captured[ids[0]].page.doctype_confidence is None
        assert captured[ids[3]].page.doctype_confidence == 0.9
        # the PDFs follow the corrected types: one component per run of a type
        assert [doctype for _name, _pages, doctype in pdf.calls] == [
            "birth_certificate", "land_certificate", "application_form", "receipt"]
        # handing the same dossier over again (a retry after a full disk) stores nothing twice
        OutboxSink(outbox, "kiosk-0001").submit_dossier(closed)
        assert len([m for m in _messages(outbox) if isinstance(m, DoctypeCorrected)]) == 2
    finally:
        outbox.close()


def test_bad_class_ids_are_refused() -> None:
    """Tried: a Vietnamese label instead of the id, an upper-case id, an empty string, a path, a
    non-string, an unknown page id, an unknown role, and a correction after the dossier closed.
    Each is refused and the page keeps its type."""
    session = DossierSession(processor=ScriptedPipeline(), pdf_builder=None)
    session.open(CODE, via="typed")
    session.add_image(page_image(1))
    page_id = session.pages()[0].page_id
    for bad in ("Giấy khai sinh", "BIRTH_CERTIFICATE", "", "../other", 7):
        with pytest.raises(InvalidDoctype):
            session.set_doctype(page_id, bad, "clerk")  # type: ignore[arg-type]
    with pytest.raises(UnknownPage):
        session.set_doctype("no-such-page", "other", "clerk")
    with pytest.raises(ValueError, match="by must be"):
        session.set_doctype(page_id, "other", "mayor")  # type: ignore[arg-type]
    page = session.pages()[0]
    assert page.verdict.doctype == "application_form" and page.corrected_by is None and not page.view.doctype_corrected
    session.finish()
    with pytest.raises(InvalidSessionAction):
        session.set_doctype(page_id, "other", "clerk")
