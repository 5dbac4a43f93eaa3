"""Result mode on the kiosk: the start screen's second choice ("Số hóa kết quả giải quyết")
opens the next dossier as the procedure's result; it closes into the real outbox as
``<code>-KQ<n>`` with its pages carrying that code. Over loopback HTTP, then in Chromium (axe on
the screens that show the mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from device.kiosk import KioskApp, KioskConfig, KioskServer
from protocol.messages import DossierClosed, PageCaptured, decode
from tests.browser import axe_serious, chromium, needs_chromium
from tests.device.dossier.doubles import RecordingPdf, ScriptedPipeline, page_image

outbox_mod = pytest.importorskip("device.delivery.outbox")

CODE = "000.00.12.H10-260101-0654"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[KioskServer, DossierSession, Any]]:
    outbox = outbox_mod.Outbox(tmp_path / "state")
    session = DossierSession(processor=ScriptedPipeline(), sink=OutboxSink(outbox, "kiosk-0011"),
                             pdf_builder=RecordingPdf())
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session)).start()
    try:
        yield server, session, outbox
    finally:
        server.close()
        session.close()
        outbox.close()


def test_the_result_choice_over_http(served: tuple[KioskServer, DossierSession, Any]) -> None:
    """Bad input first: an unknown kind is refused and changes nothing."""
    server, session, outbox = served
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/api/start", json={"kind": "minutes"}).status_code == 400
        assert http.get("/api/state").json()["kind"] == "component"
        assert http.post("/api/start", json={"kind": "result"}).json()["kind"] == "result"
        assert http.post("/api/home", json={}).json()["kind"] == "component"  # changed their mind
        http.post("/api/start", json={"kind": "result"})
        state = http.post("/api/open", json={"code": CODE}).json()
        assert (state["state"], state["kind"]) == ("open", "result")
        session.add_image(page_image(1))
        closed = http.post("/api/finish", json={}).json()
        assert closed["last_closed"]["kind"] == "result" and closed["kind"] == "component"
    messages = [decode(m.topic, m.payload).message for m in outbox.pending_messages(limit=100)]
    [end] = [m for m in messages if isinstance(m, DossierClosed)]
    assert end.dossier_code == CODE and [d.name for d in end.documents] == [f"{CODE}-KQ1.pdf"]
    assert [m.page.dossier_code for m in messages if isinstance(m, PageCaptured)] == [f"{CODE}-KQ1"]


@needs_chromium
def test_the_result_choice_in_chromium(served: tuple[KioskServer, DossierSession, Any]) -> None:
    from playwright.sync_api import expect

    server, session, _outbox = served
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1024})
        page.goto(server.url)
        page.get_by_role("button", name="Số hóa kết quả giải quyết").click()
        expect(page.get_by_role("heading", name="Mã hồ sơ")).to_be_visible()
        line = page.locator('section[data-screen="code"] [data-kind-line]')
        expect(line).to_have_text("Đang số hóa: kết quả giải quyết hồ sơ")
        assert axe_serious(page) == []
        page.get_by_label("Nhập mã hồ sơ").fill(CODE)
        page.get_by_role("button", name="Tiếp tục").click()
        expect(page.locator('section[data-screen="place"] [data-kind-line]')).to_be_visible()
        snap = session.snapshot()
        assert (snap.dossier_code, snap.kind) == (CODE, "result")
        assert axe_serious(page) == []
        page.get_by_role("button", name="Hủy hồ sơ").click()
        expect(page.get_by_role("button", name="Bắt đầu")).to_be_visible()
        page.get_by_role("button", name="Bắt đầu").click()  # the next citizen: the dossier itself
        expect(page.get_by_role("heading", name="Mã hồ sơ")).to_be_visible()
        expect(line).to_be_hidden()
