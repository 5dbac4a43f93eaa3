"""Staff sign-in on the screen, over real loopback HTTP: a clerk signs in with their operator id
and PIN, the dossiers opened on the screen record them, and after signing out the citizen again;
five wrong PINs lock signing in for five minutes, the screen says so in Vietnamese, and a restart
does not lift the lock; a staff card's QR held to the camera signs in, a refused card counts one
failure however long it stays there, and a QR that is not a card counts none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.capture.config import FakeCameraConfig
from device.capture.fake_camera import FakeCamera
from device.dossier.session import DossierSession, StaffCardPage
from device.inference import synthetic
from device.kiosk import KioskApp, KioskConfig, KioskServer
from device.kiosk.staff import StaffDesk
from device.operators.book import OperatorBook, StaffOperator
from device.operators.cards import ScannedCards
from device.operators.signin import SignIn
from protocol.messages import Operator
from protocol.secrets import hash_secret
from tests.device.dossier.doubles import RecordingSink, page_image

CODE = "000.00.12.H10-260101-0321"
PIN = "246810"
CARD = "5e" * 16
T = 30.0
BOOK = [StaffOperator("op-3fa2c1d9e0", "postal_staff", pin_hash=hash_secret(PIN), card_hash=hash_secret(CARD)),
        StaffOperator("op-0000000001", "unit_staff", pin_hash=hash_secret("13579135"))]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Counter:
    app: KioskApp
    server: KioskServer
    session: DossierSession
    sink: RecordingSink
    http: httpx.Client
    clock: Clock

    def post(self, action: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/api/{action}", json=body)

    def staff(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/api/state").json()["staff"]
        return data


def _counter(state_dir: Path, clock: Clock, camera: FakeCamera | None = None, pipeline: Any = None) -> Counter:
    book = OperatorBook(state_dir / "operators.json")
    if len(book) == 0:
        book.replace(BOOK, version=1)
    desk = StaffDesk(SignIn(book, state_dir / "signin.json", clock=clock), clock=clock)
    sink = RecordingSink()
    session = DossierSession(sink=sink, pdf_builder=None, processor=pipeline,
                             cards=ScannedCards(desk.sign_in) if pipeline is not None else None)
    app = KioskApp(KioskConfig(enabled=True, port=0, preview_fps=30, still_frames=2, qr_interval_s=0.1), session,
                   camera=camera, pipeline=pipeline, staff=desk)
    server = KioskServer(app).start()
    return Counter(app, server, session, sink, httpx.Client(base_url=server.url, timeout=10), clock)


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    c = _counter(tmp_path, Clock())
    try:
        yield c
    finally:
        _close(c)


def _close(c: Counter) -> None:
    c.http.close()
    c.server.close()
    c.session.close()


def _dossier(c: Counter) -> Any:
    """A dossier opened on the screen, one page, finished: what it recorded."""
    assert c.post("start").status_code == 200
    assert c.post("open", code=CODE).status_code == 200
    c.session.add_image(page_image(1), source="camera")
    c.post("review")
    assert c.post("finish").status_code == 200
    closed = c.sink.dossiers[-1]
    c.post("home")
    return closed.operator


def test_pin_sign_in_records_the_clerk_until_sign_out(counter: Counter) -> None:
    assert counter.staff() == {"available": True, "operator": None, "locked_for_s": None, "lock_notice": None}
    assert counter.post("staff").json()["step"] == "signin"
    wrong = counter.post("signin", operator_id="op-3fa2c1d9e0", pin="000000")
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_credentials"
    assert wrong.json()["vi"] == ("Mã cán bộ hoặc mã PIN không đúng, vui lòng nhập lại "
                                  "(còn 4 lần thử trước khi tạm khóa)")
    missing = counter.post("signin", operator_id="op-3fa2c1d9e0", pin=246810)  # a number, not text
    assert missing.status_code == 400 and missing.json()["error"] == "signin_missing"
    ok = counter.post("signin", operator_id=" op-3fa2c1d9e0 ", pin=PIN).json()
    assert ok["staff"]["operator"] == {"id": "op-3fa2c1d9e0", "kind": "postal_staff"} and ok["step"] == "start"
    assert ok["notice"] is None
    operator = _dossier(counter)
    assert (operator.kind, operator.id) == ("postal_staff", "op-3fa2c1d9e0")
    assert counter.post("signout").json()["staff"]["operator"] is None
    operator = _dossier(counter)
    assert (operator.kind, operator.id) == ("citizen", None)


@pytest.mark.parametrize("typed", ["OP-3FA2C1D9E0", "3fa2c1d9e0", "op 3fa2 c1d9 e0"])
def test_the_id_the_admin_page_shows_is_taken_as_a_clerk_types_it(counter: Counter, typed: str) -> None:
    """The fleet's id (``op-`` and 10 hex digits, the admin page's "Mã cán bộ (nhập ở máy)"),
    typed with capitals, without its ``op-`` or in groups, signs in as that operator."""
    counter.post("staff")
    ok = counter.post("signin", operator_id=typed, pin=PIN)
    assert ok.status_code == 200 and ok.json()["staff"]["operator"] == {"id": "op-3fa2c1d9e0", "kind": "postal_staff"}


def test_an_id_of_no_operators_form_is_said_so_and_counts_no_try(counter: Counter) -> None:
    """A name or a staff number typed for the id can be no operator's: the screen says what an
    id looks like, and the five tries before the lock are all still there."""
    counter.post("staff")
    for typed in ("nguyen.van.a", "BĐ-07", "op-3fa2c1d9e"):
        answer = counter.post("signin", operator_id=typed, pin=PIN)
        assert answer.status_code == 400 and answer.json()["error"] == "operator_id_form"
        assert answer.json()["vi"] == ("Mã cán bộ gồm 'op-' và 10 chữ số hoặc chữ cái a–f, ví dụ op-3fa2c1d9e0, "
                                       "như trong danh sách cán bộ của quản trị viên")
        assert counter.app.state()["notice"]["code"] == "operator_id_form"
    unknown = counter.post("signin", operator_id="op-9999999999", pin=PIN)  # the right form, nobody's
    assert unknown.status_code == 403 and "còn 4 lần thử" in unknown.json()["vi"]
    assert counter.staff()["operator"] is None


def test_no_sign_in_while_a_dossier_is_open(counter: Counter) -> None:
    """One clerk per dossier: while one is open the screen says why there is no sign-in and how
    to hand over; once it is finished the other clerk signs in."""
    counter.post("start")
    counter.post("open", code=CODE)
    refused = counter.post("staff")
    assert refused.status_code == 409 and refused.json()["error"] == "signin_dossier_open"
    said = ("Đang có hồ sơ mở, hồ sơ được ghi cho cán bộ đã mở nó. Bấm “Hoàn tất” để gửi hồ sơ "
            "(hoặc “Hủy hồ sơ”), rồi cán bộ khác đăng nhập")
    assert refused.json()["vi"] == said and counter.app.state()["notice"]["vi"] == said
    assert counter.post("signin", operator_id="op-3fa2c1d9e0", pin=PIN).status_code == 409
    assert counter.staff()["operator"] is None
    counter.session.add_image(page_image(1), source="camera")
    counter.post("review")
    assert counter.post("finish").status_code == 200
    closed = counter.sink.dossiers[-1].operator
    assert closed is not None and closed.kind == "citizen"
    assert counter.post("staff").status_code == 200
    assert counter.post("signin", operator_id="op-3fa2c1d9e0", pin=PIN).status_code == 200


def test_five_wrong_pins_lock_for_five_minutes_across_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    c = _counter(tmp_path, clock)
    try:
        c.post("staff")
        answers = [c.post("signin", operator_id="op-0000000001", pin="11111111") for _ in range(5)]
        assert [a.status_code for a in answers] == [403, 403, 403, 403, 423]
        assert answers[-1].json()["vi"] == ("Đăng nhập tạm khóa do nhập sai quá nhiều lần, "
                                            "vui lòng thử lại sau 5 phút")
        right = c.post("signin", operator_id="op-0000000001", pin="13579135")  # right, but locked
        assert right.status_code == 423 and c.staff()["operator"] is None
    finally:
        _close(c)
    clock.now += 120
    c = _counter(tmp_path, clock)  # the agent restarted: still locked, three minutes to go
    try:
        staff = c.staff()
        assert staff["locked_for_s"] == 180 and "3 phút" in staff["lock_notice"]["vi"]
        c.post("staff")
        assert c.post("signin", operator_id="op-0000000001", pin="13579135").status_code == 423
        clock.now += 181
        assert c.staff()["lock_notice"] is None
        assert c.post("signin", operator_id="op-0000000001", pin="13579135").status_code == 200
    finally:
        _close(c)


def test_without_a_desk_or_a_list_there_is_no_sign_in(tmp_path: Path) -> None:
    session = DossierSession(pdf_builder=None)
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/api/state").json()["staff"] is None
            assert http.post("/api/staff", json={}).status_code == 404
    finally:
        server.close()
        session.close()
    empty = StaffDesk(SignIn(OperatorBook()))  # the fleet's list has not come yet
    assert empty.state()["available"] is False


def _wait_looks(c: Counter, looks: int) -> None:
    """Until the camera loop has looked for a code ``looks`` times."""
    c.app.wait_for(lambda _: c.app.looks >= looks, T)


def _camera(qr_text: str) -> FakeCamera:
    return FakeCamera(FakeCameraConfig(type="fake", width=320, height=240, still_scale=6, empty_frames=1,
                                       slide_frames=1, blur_frames=0, retry_s=0, qr_text=qr_text))


def test_a_staff_card_at_the_camera_signs_in(tmp_path: Path, pipeline: Any) -> None:
    c = _counter(tmp_path, Clock(), _camera(CARD), pipeline)
    try:
        c.post("staff")
        state = c.app.wait_for(lambda s: s["staff"]["operator"] is not None and s["step"] == "start", T)
        assert state["staff"]["operator"] == {"id": "op-3fa2c1d9e0", "kind": "postal_staff"}
    finally:
        _close(c)


def test_a_refused_card_counts_once_and_other_codes_not_at_all(tmp_path: Path, pipeline: Any) -> None:
    """A retired card held up for many looks: one failure, a notice; a receipt slip shown on the
    sign-in screen: none."""
    c = _counter(tmp_path, Clock(), _camera("a1" * 16), pipeline)
    try:
        c.post("staff")
        state = c.app.wait_for(lambda s: s["notice"] is not None, T)
        assert state["notice"]["code"] == "wrong_card" and "Thẻ cán bộ này không dùng được" in state["notice"]["vi"]
        _wait_looks(c, c.app.looks + 3)  # the card stays in front of the camera
        assert json.loads((tmp_path / "signin.json").read_text())["failures"] == 1
    finally:
        _close(c)
    slip = tmp_path / "slip"
    slip.mkdir()
    c = _counter(slip, Clock(), _camera(f"{CODE}|1.000001|001234567890|Giấy tiếp nhận"), pipeline)
    try:
        c.post("staff")
        _wait_looks(c, 3)
        assert c.staff()["operator"] is None and not (slip / "signin.json").exists()
        assert c.session.state == "idle"  # and the slip opened no dossier from the sign-in screen
    finally:
        _close(c)


def test_a_card_on_a_dossier_with_pages_is_refused_and_the_screen_says_why(tmp_path: Path, pipeline: Any) -> None:
    """A clerk's card shown (or fed) while a citizen's dossier already holds a page: no page, no
    sign-in, and the screen says how to hand over."""
    c = _counter(tmp_path, Clock(), pipeline=pipeline)
    try:
        c.post("start")
        c.post("open", code=CODE)
        c.session.add_image(synthetic.text_page(seed=4, dpi=100), source="camera", dpi=100)
        with pytest.raises(StaffCardPage):
            c.session.add_image(synthetic.staff_card(CARD, "op-3fa2c1d9e0", dpi=200), source="camera", dpi=200)
        state = c.http.get("/api/state").json()
        assert state["notice"]["code"] == "signin_dossier_open" and len(state["pages"]) == 1
        assert state["staff"]["operator"] is None and c.session.snapshot().operator == Operator(kind="citizen")
    finally:
        _close(c)
