"""An unreadable receipt slip is said so, with what to do next, never taken silently: at the
counter the session's fault (the light's attention, the screen's alert: scan the slip again or
type the code, the pages are kept); at the kiosk the code screen's notice, which tells a slip that
cannot be read from a QR that is not a slip's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from device.capture.config import FakeCameraConfig
from device.capture.fake_camera import FakeCamera
from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from tests.device.dossier.doubles import ListSource, RecordingSink, ScriptedPipeline, Verdict, page_image

CODE = "000.00.12.H10-260101-0042"
T = 30.0


def test_an_unreadable_slip_at_the_counter_is_a_fault_and_the_pages_stay() -> None:
    pipeline = ScriptedPipeline({1: Verdict(unreadable=True), 2: Verdict(), 3: Verdict(receipt=CODE)})
    faults: list[str | None] = []
    with DossierSession(processor=pipeline, sink=RecordingSink(), pdf_builder=None) as session:
        session.add_listener(lambda e: faults.append(e.fault) if e.kind == "fault" else None)
        session.open()
        session.capture(ListSource([page_image(1), page_image(2)]))
        snap = session.snapshot()
        assert snap.fault == "unreadable_dossier_code" and snap.dossier_code is None and len(snap.pages) == 2
        assert faults == ["unreadable_dossier_code"]
        session.capture(ListSource([page_image(3)]))  # the slip scanned again, flat: named, fault gone
        snap = session.snapshot()
        assert snap.dossier_code == CODE and snap.fault is None


def test_a_slip_whose_code_has_the_wrong_shape_is_a_fault_too() -> None:
    """A receipt QR read, its code with a '/' (it would become part of a file name): not taken."""
    pipeline = ScriptedPipeline({1: Verdict(receipt="H10/25-0001")})
    with DossierSession(processor=pipeline, sink=RecordingSink(), pdf_builder=None) as session:
        session.open()
        session.capture(ListSource([page_image(1)]))
        snap = session.snapshot()
        assert snap.fault == "unreadable_dossier_code" and snap.dossier_code is None
        assert session.name(CODE).fault is None  # the clerk typed it: said, then cleared


def test_an_unreadable_code_on_a_named_dossiers_page_is_no_fault() -> None:
    """A damaged QR on some later page (a CCCD's, a decision's) says nothing about the slip."""
    pipeline = ScriptedPipeline({1: Verdict(unreadable=True)})
    with DossierSession(processor=pipeline, sink=RecordingSink(), pdf_builder=None) as session:
        session.open(CODE)
        session.capture(ListSource([page_image(1)]))
        assert session.snapshot().fault is None


@pytest.fixture(scope="module")
def pipeline() -> Iterator[object]:
    from device.inference.pipeline import PagePipeline

    pipe = PagePipeline()
    try:
        yield pipe
    finally:
        pipe.close()


@pytest.mark.parametrize(("qr_text", "scale", "notice", "words"), [
    (f"{CODE}|1.000001|001234567890|Giấy tiếp nhận", 4, "unreadable_code", "nhập mã hồ sơ in trên giấy hẹn"),
    ("H10/25-0001|1.000001|001234567890|Giấy tiếp nhận", 6, "unreadable_code", "nhập mã hồ sơ in trên giấy hẹn"),
    ('{"ma_ho_so": "??"}', 6, "unreadable_code", "Không đọc được mã QR trên giấy hẹn"),
    ("https://example.org/thanh-toan", 6, "not_receipt", "không phải mã của giấy hẹn"),
])
def test_the_kiosk_says_what_to_do_next(pipeline: object, qr_text: str, scale: int, notice: str, words: str) -> None:
    """The real pipeline reads the fake camera's slip: a slip too small in the picture to decode
    (seen, not read), a code that cannot be a dossier's, a slip whose code is malformed, a QR that
    is not a slip's. No dossier is opened."""
    camera = FakeCamera(FakeCameraConfig(type="fake", width=320, height=240, still_scale=scale, empty_frames=1,
                                         slide_frames=1, blur_frames=0, retry_s=0, qr_text=qr_text))
    session = DossierSession(pdf_builder=None)
    app = KioskApp(KioskConfig(enabled=True, port=0, preview_fps=30, still_frames=2, qr_interval_s=0.1), session,
                   camera=camera, pipeline=pipeline)  # type: ignore[arg-type]
    server = KioskServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            http.post("/api/start", json={})
            state = app.wait_for(lambda s: s["notice"] is not None and s["notice"]["code"] != "no_qr", T)
            assert state["notice"]["code"] == notice and words in state["notice"]["vi"]
            assert state["notice"]["en"]
            assert session.state == "idle"
    finally:
        server.close()
        session.close()
