"""The review screen's type picker over real loopback HTTP: the state offers every class with
its Vietnamese label, ``POST /api/doctype`` re-types a page (by the citizen), and the dossier
closes into the real outbox with its ``doctype_corrected`` event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from device.inference.doctype import DOCTYPES, LABELS_VI
from device.kiosk import KioskApp, KioskConfig, KioskServer
from protocol.messages import DoctypeCorrected, PageCaptured, decode
from tests.browser import axe_serious, chromium, needs_chromium
from tests.device.dossier.doubles import ScriptedPipeline, page_image

outbox_mod = pytest.importorskip("device.delivery.outbox")

CODE = "000.00.12.H10-260101-0321"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, DossierSession, Any]]:
    """A kiosk without camera (pages come from the session directly) over the real outbox."""
    outbox = outbox_mod.Outbox(tmp_path / "state")
    session = DossierSession(processor=ScriptedPipeline(), sink=OutboxSink(outbox, "kiosk-0009"), pdf_builder=None)
    app = KioskApp(KioskConfig(enabled=True, port=0), session)
    server = KioskServer(app).start()
    http = httpx.Client(base_url=server.url, timeout=10)
    try:
        yield http, session, outbox
    finally:
        http.close()
        server.close()
        session.close()
        outbox.close()


def test_citizen_changes_a_page_type(served: tuple[httpx.Client, DossierSession, Any]) -> None:
    """Two pages typed application_form; the second is re-typed to land_certificate through the
    API. The screen's state shows the new type in Vietnamese and marks it as the citizen's."""
    http, session, outbox = served
    assert http.get("/api/state").json()["doctypes"] == []  # no dossier open: nothing to offer
    session.open(CODE, via="typed")
    session.add_image(page_image(1))
    session.add_image(page_image(2))
    state = http.get("/api/state").json()
    assert state["state"] == "review"
    assert [d["id"] for d in state["doctypes"]] == list(DOCTYPES)
    assert all(d["vi"] == LABELS_VI[d["id"]] for d in state["doctypes"])
    page_id = state["pages"][1]["id"]
    response = http.post("/api/doctype", json={"page_id": page_id, "doctype": "land_certificate"})
    assert response.status_code == 200, response.text
    page = response.json()["pages"][1]
    assert page["doctype"] == "land_certificate" and page["doctype_corrected"] is True
    assert page["doctype_vi"] == "Giấy chứng nhận quyền sử dụng đất"
    assert response.json()["pages"][0]["doctype_corrected"] is False
    assert http.post("/api/finish", json={}).status_code == 200
    messages = [decode(m.topic, m.payload).message for m in outbox.pending_messages(limit=100)]
    corrections = [m for m in messages if isinstance(m, DoctypeCorrected)]
    assert [(c.page_id, c.previous, c.doctype, c.by) for c in corrections] == [
        (page_id, "application_form", "land_certificate", "citizen")]
    captured = {m.page.page_id: m.page for m in messages if isinstance(m, PageCaptured)}
    assert captured[page_id].doctype == "land_certificate" and corrections[0].sha256 == captured[page_id].sha256


def test_bad_requests_are_refused(served: tuple[httpx.Client, DossierSession, Any]) -> None:
    """Tried: the Vietnamese label instead of the class id, an unknown id, a number, no doctype,
    no page id, an unknown page, and re-typing after the dossier closed. Each is refused with
    its status and the page keeps its type."""
    http, session, _outbox = served
    session.open(CODE, via="typed")
    session.add_image(page_image(1))
    page_id = session.pages()[0].page_id
    for bad in ("Giấy khai sinh", "passport", 3, None):
        response = http.post("/api/doctype", json={"page_id": page_id, "doctype": bad})
        assert response.status_code == 400 and response.json()["error"] == "bad_doctype", bad
        assert response.json()["vi"] == "Loại giấy tờ không hợp lệ"
    assert http.post("/api/doctype", json={"doctype": "other"}).json()["error"] == "page_id_required"
    assert http.post("/api/doctype", json={"page_id": "nope", "doctype": "other"}).status_code == 404
    assert session.pages()[0].verdict.doctype == "application_form"
    assert session.pages()[0].corrected_by is None
    http.post("/api/finish", json={})
    assert http.post("/api/doctype", json={"page_id": page_id, "doctype": "other"}).status_code == 409


@pytest.mark.browser
@needs_chromium
def test_type_picker_in_chromium_by_keyboard(served: tuple[httpx.Client, DossierSession, Any], artifacts: Path) -> None:
    """In real headless Chromium, keyboard only: the review card's "change type" button opens the
    picker (a modal dialog, the current type pressed and focused), Escape closes it unchanged,
    Enter on "Giấy khai sinh" re-types the page and the focus comes back to the card. axe-core
    finds nothing serious with the picker open. Bad input tried: none (see the API tests)."""
    from playwright.sync_api import expect

    http, session, _outbox = served
    session.open(CODE, via="typed")
    session.add_image(page_image(1))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1024})
        page.goto(str(http.base_url))
        change = page.get_by_role("button", name="Đổi loại giấy tờ của trang 1")
        expect(change).to_be_visible()
        expect(page.locator("#pages .type")).to_have_text(LABELS_VI["application_form"])
        change.focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Trang 1 là loại giấy tờ nào?")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button")).to_have_count(len(DOCTYPES) + 1)  # + "back"
        current = dialog.get_by_role("button", name=LABELS_VI["application_form"])
        expect(current).to_be_focused()
        expect(current).to_have_attribute("aria-pressed", "true")
        assert axe_serious(page) == []
        (artifacts / "kiosk").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=artifacts / "kiosk" / "08-type-picker.png")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert session.pages()[0].verdict.doctype == "application_form"
        change.focus()
        page.keyboard.press("Enter")
        choice = dialog.get_by_role("button", name=LABELS_VI["birth_certificate"])
        for _ in range(len(DOCTYPES) + 1):  # Tab through the options, as a keyboard user would
            if choice.evaluate("el => el === document.activeElement"):
                break
            page.keyboard.press("Tab")
        expect(choice).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#pages .type")).to_have_text(LABELS_VI["birth_certificate"] + " (bạn đã chọn)")
        assert session.pages()[0].verdict.doctype == "birth_certificate"
        assert session.pages()[0].corrected_by == "citizen"
        expect(page.get_by_role("button", name="Đổi loại giấy tờ của trang 1")).to_be_focused()
        assert axe_serious(page) == []
        page.screenshot(path=artifacts / "kiosk" / "09-type-corrected.png")
