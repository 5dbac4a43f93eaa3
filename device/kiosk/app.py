"""The citizens' kiosk: a small web app on loopback that Chromium shows full-screen, driving the
same :class:`~device.dossier.session.DossierSession` as the clerk's buttons.

Screens, one instruction each: start -> scan the appointment slip's QR or type the dossier code
(or "no code") -> place the document -> live preview with the outline and plain hints, automatic
shot when the document is inside the frame, sharp and still -> review (thumbnails, type, verdict;
retake, remove, change a page's type, add a page, finish) -> finish (dossier code, page count). The screen follows the
session's state, so a dossier opened or closed elsewhere shows at once.

Privacy: nothing personal is kept in the browser (no storage, every response ``no-store``); after
``idle_reset_s`` without a touch, or when a dossier ends, the screen goes back to start, cleared.

It is a WSGI application (stdlib only: the device has no web framework), so the agent can mount
it or :class:`KioskServer` can serve it alone::

    app = KioskApp(config.kiosk, session, camera=camera, pipeline=pipeline)
    server = KioskServer(app).start()      # http://127.0.0.1:8766/
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from device.dossier.errors import (
    ForeignDossierCode,
    InvalidDoctype,
    InvalidDossierCode,
    InvalidSessionAction,
    UnknownPage,
    UpdateInProgress,
)
from device.dossier.model import SessionEvent
from device.dossier.numbering import DocumentKind
from device.dossier.session import DossierSession
from device.dossier.sources import PageProcessor, PageSource
from device.errors import CameraUnavailable, SohoaError
from device.inference.verdict import CodeLike, receipt_code
from device.kiosk.config import KioskConfig
from device.kiosk.guide import HINTS, Guidance, Guide
from device.kiosk.staff import CITIZEN, SignInRefused, StaffDesk
from device.kiosk.staff import NOTICES as STAFF_NOTICES
from protocol.doctypes import DOCTYPES, NAMES
from protocol.messages import Operator

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from device.capture.camera import Camera

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
Step = Literal["start", "code", "signin"]
_CARD_NOTICES = {"dossier_started": "signin_dossier_open", "wrong_card": "wrong_card", "locked": "locked",
                 "no_operators": "no_operators"}
"""What the screen says when a staff card read as a page did not sign in or out."""

DOCTYPES_EN: dict[str, str] = NAMES["en"]
"""Document type id -> English name (:mod:`protocol.doctypes`)."""

FAULTS: dict[str, tuple[str, str]] = {
    "camera_unavailable": ("Máy ảnh chưa sẵn sàng, vui lòng gọi cán bộ", "The camera is not ready, please ask staff"),
    "disk_full": ("Bộ nhớ đầy, vui lòng gọi cán bộ", "The storage is full, please ask staff"),
    "outbox_error": ("Chưa lưu được hồ sơ, vui lòng gọi cán bộ", "The dossier could not be saved, please ask staff"),
    "dossier_code_mismatch": ("Giấy tờ thuộc hồ sơ khác", "This paper belongs to another dossier"),
    "foreign_dossier_code": ("Mã hồ sơ thuộc đơn vị hoặc tỉnh khác, vui lòng gọi cán bộ",
                             "This dossier code belongs to another unit or province, please ask staff"),
    "unreadable_dossier_code": ("Không đọc được mã hồ sơ trên giấy hẹn. Hãy quét lại giấy hẹn (đặt phẳng, "
                                "không che mã) hoặc nhập mã hồ sơ; các trang đã quét vẫn được giữ",
                                "The dossier code on the slip cannot be read. Scan the slip again (flat, code "
                                "not covered) or type the dossier code; the pages scanned are kept"),
    "too_many_pages": ("Hồ sơ đã đủ số trang tối đa", "The dossier has reached its page limit"),
}
"""Fault code -> (Vietnamese, English); scanner faults fall back to a general message."""

NOTICES: dict[str, tuple[str, str]] = {
    "bad_code": ("Mã hồ sơ không hợp lệ, vui lòng kiểm tra lại", "That dossier code is not valid, please check it"),
    "foreign_code": ("Mã hồ sơ thuộc đơn vị hoặc tỉnh khác, vui lòng gọi cán bộ",
                     "This dossier code belongs to another unit or province, please ask staff"),
    "no_qr": ("Chưa đọc được mã QR, vui lòng giữ yên giấy hẹn trong khung",
              "The QR code could not be read yet: hold the slip still inside the frame"),
    "unreadable_code": ("Không đọc được mã QR trên giấy hẹn. Vui lòng đặt giấy hẹn phẳng, không che mã, "
                        "hoặc nhập mã hồ sơ in trên giấy hẹn vào ô bên dưới",
                        "The QR code on the slip cannot be read. Lay the slip flat without covering the code, "
                        "or type the dossier code printed on the slip in the box below"),
    "not_receipt": ("Mã QR này không phải mã của giấy hẹn. Vui lòng đưa mã QR trên giấy tiếp nhận hồ sơ "
                    "và hẹn trả kết quả, hoặc nhập mã hồ sơ",
                    "This QR code is not the appointment slip's. Show the QR code on the dossier receipt "
                    "and appointment slip, or type the dossier code"),
    "busy": ("Vui lòng đợi trong giây lát", "Please wait a moment"),
    "bad_doctype": ("Loại giấy tờ không hợp lệ", "That is not a document type"),
    "updating": ("Máy đang cập nhật phần mềm, vui lòng đợi vài phút rồi thử lại",
                 "A software update is being installed: please try again in a few minutes"),
}

DEVICE_PROBLEMS: dict[str, tuple[str, str]] = {
    "revoked": ("Thiết bị đã bị thu hồi quyền kết nối, vui lòng liên hệ quản trị viên",
                "This device has been revoked: please contact the administrator"),
    "refused": ("Thiết bị chưa đăng ký được với hệ thống, vui lòng liên hệ quản trị viên",
                "This device could not be enrolled: please contact the administrator"),
}
"""What stops the device from delivering anything (its certificate revoked or refused), shown
until an administrator acts."""

_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
_MAX_BODY = 4096


def _doctype_labels() -> dict[str, str]:
    return NAMES["vi"]


def _doctype_choices(labels_vi: dict[str, str]) -> list[dict[str, str]]:
    """The classes the review screen's type picker offers, in the model's order."""
    return [{"id": d, "vi": labels_vi.get(d, d), "en": DOCTYPES_EN.get(d, d)} for d in DOCTYPES]


class HttpError(SohoaError, ValueError):
    """A request the kiosk app answers with an error status."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


class KioskApp:
    """The kiosk's web app and its camera loop (see the module docstring). Thread-safe."""

    def __init__(
        self,
        config: KioskConfig,
        session: DossierSession,
        *,
        camera: Camera | None = None,
        pipeline: PageProcessor | None = None,
        pages_for: Callable[[Literal["scan", "rescan"]], PageSource] | None = None,
        staff: StaffDesk | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``camera``: the document camera (automatic shots); ``pages_for``: the feeder scanner's
        batches, as the clerk's buttons take them (a "scan" button on the screen); either or both.
        ``staff``: the clerks' sign-in (PIN or staff card) at this counter; without it every dossier
        opened on the screen is the citizen's."""
        self.config = config
        self.session = session
        self.staff = staff
        self.camera = camera
        self.pipeline = pipeline
        self.pages_for = pages_for
        self._clock = clock
        self.guide = Guide(pipeline, still_frames=config.still_frames, still_threshold=config.still_threshold)
        self._labels_vi = _doctype_labels()
        self._doctypes = _doctype_choices(self._labels_vi)
        self._cond = threading.Condition()
        self._step: Step = "start"
        self._kind: DocumentKind = "component"
        """What the next dossier digitizes: the start screen's choice (the dossier, or its result)."""
        self._retake: str | None = None
        self._guidance: Guidance | None = None
        self._notice: str | None = None
        self._card_notice = False
        self._device_problem: str | None = None
        self._preview: bytes | None = None
        self._preview_seq = 0
        self._last_touch = clock()
        self._last_qr = 0.0
        self.shots = 0
        """Automatic shots taken (tests and telemetry read it)."""
        self.looks = 0
        """Full-resolution looks for a slip's or a staff card's QR (tests read it)."""
        self._closing = threading.Event()
        session.add_listener(self._on_session)
        self._thread = threading.Thread(target=self._camera_loop, name="kiosk-camera", daemon=True)
        self._thread.start()

    # -- the camera loop -------------------------------------------------------------------------

    def _mode(self) -> Literal["off", "qr", "card", "document"]:
        if self.camera is None:
            return "off"
        state = self.session.state
        if state == "open":
            return "document"
        with self._cond:
            step = self._step
        if state not in ("idle", "closed") or self.pipeline is None:
            return "off"
        if step == "signin" and self.staff is not None:
            return "card"
        return "qr" if step == "code" else "off"

    def _wait(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait(seconds)

    def _camera_loop(self) -> None:
        period = 1.0 / self.config.preview_fps
        previous = "off"
        while not self._closing.is_set():
            try:
                self._housekeeping()
                mode = self._mode()
                if mode != previous:  # a new step needs its own still frames (no shot of the slip)
                    self.guide.reset()
                    previous = mode
                if mode == "off" or self.camera is None:
                    self.guide.reset()
                    self._wait(period)
                    continue
                self._look(self.camera, mode)
            except Exception:  # the loop must survive anything a frame can do
                log.exception("kiosk camera loop")
            self._wait(period)

    def _look(self, camera: Camera, mode: Literal["qr", "card", "document"]) -> None:
        import cv2

        try:
            frame = camera.read()
        except CameraUnavailable:
            with self._cond:
                self._guidance = Guidance(None, "camera_absent", 0, False)
                self._preview = None
                self._cond.notify_all()
            return
        image: Any = frame.image
        height, width = image.shape[:2]
        if width > self.config.preview_width:
            size = (self.config.preview_width, max(1, round(height * self.config.preview_width / width)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
        guidance = self.guide.assess(image)
        if mode in ("qr", "card"):
            guidance = Guidance(guidance.quad, "looking_for_code", guidance.still_frames, False)
        with self._cond:
            self._guidance = guidance
            if ok:
                self._preview = bytes(jpeg)
                self._preview_seq += 1
            self._cond.notify_all()
        if mode == "document" and guidance.ready:
            self._shoot(camera)
        elif (mode in ("qr", "card") and guidance.quad is not None
              and guidance.still_frames >= self.config.still_frames
              and self._clock() - self._last_qr >= self.config.qr_interval_s):
            self._last_qr = self._clock()
            if mode == "qr":
                self._read_code(camera)
            else:
                self._read_card(camera)
            with self._cond:
                self.looks += 1
                self._cond.notify_all()

    def _shoot(self, camera: Camera) -> None:
        try:
            still = camera.capture_still()
        except CameraUnavailable:
            return
        with self._cond:
            retake, self._retake = self._retake, None
        try:
            self.session.add_image(still.image, source="camera", dpi=camera.dpi, replace_page_id=retake)
        except (InvalidSessionAction, UnknownPage) as exc:
            log.info("automatic shot not added: %s", type(exc).__name__)
            return
        self.shots += 1
        self.guide.reset()  # the session's page_added event counted as a touch already

    def _read_code(self, camera: Camera) -> None:
        if self.pipeline is None:
            return
        try:
            codes = self._codes_on_still(camera)
        except Exception as exc:
            log.info("looking for the receipt QR failed (%s)", type(exc).__name__)
            return
        code, unreadable = receipt_code(codes)
        if code is None:
            # Seen but not read, read but not a slip's, or nothing yet: each says what to do next.
            if unreadable:
                self._set_notice("unreadable_code")
            elif codes:
                self._set_notice("not_receipt")
            else:
                self._set_notice("no_qr")
            return
        try:
            self.session.open(code, via="qr", kind=self._next_kind(), operator=self._operator())
        except UpdateInProgress:
            self._set_notice("updating")
        except ForeignDossierCode:
            log.info("receipt QR names another unit's dossier; not opened")
            self._set_notice("foreign_code")
        except InvalidDossierCode:
            log.info("receipt QR holds a code of unexpected shape; not opened")
            self._set_notice("unreadable_code")
        except SohoaError as exc:  # a dossier opened meanwhile
            log.info("receipt QR not used: %s", type(exc).__name__)
            self._set_notice("busy")

    def _read_card(self, camera: Camera) -> None:
        """The sign-in screen: a staff card's QR, read like the slip's (never logged)."""
        if self.pipeline is None or self.staff is None:
            return
        try:
            codes = self._codes_on_still(camera)
        except Exception as exc:
            log.info("looking for the staff card failed (%s)", type(exc).__name__)
            return
        notice = self.staff.look_at(codes)
        with self._cond:
            if self.staff.sign_in.current is not None and self._step == "signin":
                self._step = "start"
                self._notice = None
            elif notice is not None:
                self._notice = notice
            self._cond.notify_all()

    def _codes_on_still(self, camera: Camera) -> list[CodeLike]:
        """The codes on a full-resolution still. The pipeline's ``read_codes`` when it has one:
        a look for a QR needs no page type, orientation or quality, which on a slow board cost
        many times the reading itself, with the preview frozen meanwhile."""
        assert self.pipeline is not None
        still = camera.capture_still()
        reader = getattr(self.pipeline, "read_codes", None)
        if callable(reader):
            return list(reader(still.image))
        return list(self.pipeline.process(still.image, source="camera", dpi=None).codes)

    def _operator(self) -> Operator:
        """Who a dossier opened on the screen records: the clerk signed in, else the citizen."""
        return self.staff.operator() if self.staff is not None else CITIZEN

    def _next_kind(self) -> DocumentKind:
        with self._cond:
            return self._kind

    def _housekeeping(self) -> None:
        """Privacy and abandoned dossiers, by the time since the last touch."""
        idle = self._clock() - self._last_touch
        state = self.session.state
        try:
            if state == "closed" and idle >= self.config.finish_screen_s:
                self.session.reset()
            elif state in ("open", "review") and idle >= self.config.abandon_after_s:
                log.info("kiosk dossier abandoned: %s", self.config.abandoned_dossier)
                if self.config.abandoned_dossier == "finish":
                    self.session.finish()
                else:
                    self.session.cancel()
        except SohoaError as exc:
            log.warning("idle handling: %s", type(exc).__name__)
        if self.staff is not None:
            self.staff.left_idle(idle)
        with self._cond:
            if self._step in ("code", "signin") and state == "idle" and idle >= self.config.idle_reset_s:
                self._step = "start"
                self._kind = "component"
                self._notice = None

    def _on_session(self, event: SessionEvent) -> None:
        with self._cond:
            if event.kind == "state":
                # a notice belongs to the step it was given in; a staff card's outlives the end
                # of the capture that read it
                if not (event.previous == "capturing" and self._card_notice):
                    self._notice = None
                self._card_notice = False
            if event.kind == "staff_card":  # a card fed or shown as a page: never a page
                self._notice = _CARD_NOTICES.get(event.card or "")
                self._card_notice = self._notice is not None
            if event.kind == "state" and event.state in ("idle", "open"):
                self._step = "start"
                self._kind = "component"  # taken by the dossier just opened, or given up
            if event.kind == "state" and event.state == "idle":
                self._retake = None
                self._notice = None
            if event.kind in ("page_added", "page_replaced") or (event.kind == "state" and event.state == "open"):
                self._last_touch = self._clock()  # a shot or an opened dossier: someone is there
            self._cond.notify_all()

    # -- state for the screen ----------------------------------------------------------------

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Block until ``predicate(state())`` holds (re-checked whenever the app or the session
        changes); :class:`TimeoutError` after ``timeout``."""
        deadline = self._monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise TimeoutError(f"kiosk state not reached after {timeout}s")
            with self._cond:
                self._cond.wait(min(remaining, 0.5))

    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()

    def touch(self) -> None:
        with self._cond:
            self._last_touch = self._clock()
            self._cond.notify_all()

    def set_device_problem(self, code: str | None) -> None:
        """The agent says the device is ``revoked`` or ``refused`` (None: all well)."""
        with self._cond:
            self._device_problem = code if code in DEVICE_PROBLEMS else None
            self._cond.notify_all()

    def _set_notice(self, notice: str | None) -> None:
        with self._cond:
            self._notice = notice

    def state(self) -> dict[str, Any]:
        """Everything the screen shows, as JSON-able data (no images)."""
        snap = self.session.snapshot()
        with self._cond:
            step, retake, guidance, notice, seq = (self._step, self._retake, self._guidance, self._notice,
                                                   self._preview_seq)
            problem = self._device_problem
        mode = self._mode()
        pages = [
            {
                "id": p.page_id,
                "sequence": p.sequence,
                "ok": p.ok,
                "blank": p.blank,
                "messages_vi": list(p.messages_vi),
                "messages_en": list(p.messages_en),
                "doctype": p.doctype,
                "doctype_vi": self._labels_vi.get(p.doctype or "", p.doctype),
                "doctype_en": DOCTYPES_EN.get(p.doctype or "", p.doctype),
                "doctype_corrected": p.doctype_corrected,
            }
            for p in snap.pages
        ]
        fault = None
        if snap.fault is not None:
            vi, en = FAULTS.get(snap.fault, ("Máy quét gặp sự cố, vui lòng gọi cán bộ",
                                             "The scanner has a problem, please ask staff"))
            fault = {"code": snap.fault, "vi": vi, "en": en}
        camera = None
        if self.camera is not None:
            camera = {"state": self.camera.state, "problem": self.camera.problem}
        closed = None
        if snap.last_closed is not None:
            closed = {"dossier_code": snap.last_closed.dossier_code, "pages": snap.last_closed.pages,
                      "kind": snap.last_closed.kind}
        return {
            "state": snap.state,
            "step": step,
            "mode": mode,
            "scanner": self.pages_for is not None,
            "capturing": snap.capturing,
            "language": self.config.language,
            "idle_reset_s": self.config.idle_reset_s,
            "dossier_code": snap.dossier_code,
            "kind": snap.kind if snap.state not in ("idle", "closed") else self._next_kind(),
            "pages": pages,
            "doctypes": self._doctypes if snap.state in ("open", "capturing", "review") else [],
            "retake": retake,
            "fault": fault,
            "camera": camera,
            "guidance": guidance.as_dict() if guidance is not None and mode != "off" else None,
            "preview_seq": seq if mode != "off" else 0,
            "notice": self._notice_of(notice),
            "staff": self.staff.state() if self.staff is not None else None,
            "last_closed": closed,
            "device_problem": None if problem is None else {"code": problem, "vi": DEVICE_PROBLEMS[problem][0],
                                                            "en": DEVICE_PROBLEMS[problem][1]},
        }

    def _notice_of(self, code: str | None) -> dict[str, str] | None:
        if code is None:
            return None
        if code in NOTICES:
            return {"code": code, "vi": NOTICES[code][0], "en": NOTICES[code][1]}
        return self.staff.notice(code) if self.staff is not None else None

    # -- actions -----------------------------------------------------------------------------

    def act(self, action: str, body: dict[str, Any]) -> None:
        """One screen action (``POST /api/<action>``). Raises HttpError."""
        self.touch()
        session = self.session
        try:
            if action == "start":  # {"kind": "result"}: the procedure's result, named <code>-KQ<n>
                kind = body.get("kind", "component")
                if kind not in ("component", "result"):
                    raise HttpError(400, "bad_kind")
                if session.state == "closed":
                    session.reset()
                with self._cond:
                    self._step = "code"
                    self._kind = kind
                    self._notice = None
            elif action == "home":
                if session.state == "closed":
                    session.reset()
                with self._cond:
                    self._step = "start"
                    self._kind = "component"
                    self._notice = None
                if self.staff is not None:
                    self.staff.leave_screen()
            elif action in ("staff", "signin", "signout"):
                self._staff_action(action, body)
            elif action == "open":
                code = body.get("code")
                if code is not None and not isinstance(code, str):
                    raise HttpError(400, "bad_code")
                if session.state == "closed":
                    session.reset()
                session.open(code.strip() if code and code.strip() else None, kind=self._next_kind(),
                             operator=self._operator())
            elif action == "accept":
                session.accept()
            elif action == "review":
                session.review()
            elif action == "retake":
                page_id = self._page_id(body)
                if session.state == "review":
                    session.accept()
                with self._cond:
                    self._retake = page_id
            elif action == "remove":
                session.remove_page(self._page_id(body))
            elif action == "doctype":  # the citizen corrects a page's type on the review screen
                doctype = body.get("doctype")
                if not isinstance(doctype, str):
                    raise HttpError(400, "bad_doctype")
                session.set_doctype(self._page_id(body), doctype, "citizen")
            elif action == "finish":
                with self._cond:
                    self._retake = None
                session.finish()
            elif action == "cancel":
                session.cancel()
                with self._cond:
                    self._step = "start"
                    self._kind = "component"
            elif action == "scan":
                self._start_scan()
            elif action == "touch":
                pass
            else:
                raise HttpError(404, "no_such_action")
        except ForeignDossierCode:
            self._set_notice("foreign_code")
            raise HttpError(400, "foreign_code") from None
        except InvalidDossierCode:
            self._set_notice("bad_code")
            raise HttpError(400, "bad_code") from None
        except InvalidDoctype:
            raise HttpError(400, "bad_doctype") from None
        except UnknownPage:
            raise HttpError(404, "no_such_page") from None
        except UpdateInProgress:
            self._set_notice("updating")
            raise HttpError(409, "updating") from None
        except InvalidSessionAction:
            raise HttpError(409, "busy") from None
        finally:
            with self._cond:
                self._cond.notify_all()

    def _staff_action(self, action: str, body: dict[str, Any]) -> None:
        """``staff``: the sign-in screen; ``signin`` {operator_id, pin}; ``signout``."""
        if self.staff is None:
            raise HttpError(404, "no_such_action")
        if action == "signout":
            self.staff.sign_out()
            return
        if self.session.state not in ("idle", "closed"):
            # One clerk per dossier: its pages and documents name the clerk who opened it, so the
            # screen says how to hand over (finish or cancel it) instead of switching midway.
            self._set_notice("signin_dossier_open")
            raise HttpError(409, "signin_dossier_open")
        if action == "staff":
            if self.session.state == "closed":
                self.session.reset()
            with self._cond:
                self._step = "signin"
                self._notice = None
            return
        try:
            self.staff.with_pin(body.get("operator_id"), body.get("pin"))
        except SignInRefused as exc:
            self._set_notice(None if exc.code == "locked" else exc.code)  # the lock has its own panel
            status = {"locked": 423, "operator_id_form": 400, "signin_missing": 400}.get(exc.code, 403)
            raise HttpError(status, exc.code) from None
        with self._cond:
            self._step = "start"
            self._notice = None

    def _start_scan(self) -> None:
        """Run one feeder batch into the open dossier, in the background (the screen follows the
        session: capturing, then review)."""
        if self.pages_for is None:
            raise HttpError(404, "no_scanner")
        if self.session.state not in ("open", "review"):
            raise HttpError(409, "busy")
        source = self.pages_for("scan")

        def run() -> None:
            try:
                self.session.capture(source)
            except SohoaError as exc:  # the state moved on meanwhile: nothing was taken
                log.info("screen scan not run: %s", type(exc).__name__)

        threading.Thread(target=run, name="kiosk-scan", daemon=True).start()

    @staticmethod
    def _page_id(body: dict[str, Any]) -> str:
        page_id = body.get("page_id")
        if not isinstance(page_id, str) or not page_id:
            raise HttpError(400, "page_id_required")
        return page_id

    def thumbnail(self, page_id: str, width: int = 360) -> bytes:
        import cv2

        try:
            image = self.session.page_image(page_id)
        except UnknownPage:
            raise HttpError(404, "no_such_page") from None
        height = max(1, round(image.shape[0] * width / max(1, image.shape[1])))
        ok, jpeg = cv2.imencode(".jpg", cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                                [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise HttpError(500, "thumbnail_failed")
        return bytes(jpeg)

    # -- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        try:
            self._check_host(environ)
            if method == "GET":
                status, ctype, body = self._get(path)
            elif method == "POST" and path.startswith("/api/"):
                self.act(path[len("/api/"):], self._json_body(environ))
                status, ctype, body = 200, "application/json", json.dumps(self.state()).encode()
            else:
                raise HttpError(405, "method_not_allowed")
        except HttpError as exc:
            status, ctype = exc.status, "application/json"
            notice = self._notice_of(exc.code) if exc.code in NOTICES or exc.code in STAFF_NOTICES else None
            body = json.dumps({"error": exc.code, "vi": notice["vi"] if notice else None,
                               "en": notice["en"] if notice else None}).encode()
        headers = [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy",
             "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'"),
        ]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    @staticmethod
    def _check_host(environ: WSGIEnvironment) -> None:
        """Only pages loaded from this machine may drive it (a rebinding DNS name may not)."""
        host = str(environ.get("HTTP_HOST", "127.0.0.1"))
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in _HOSTS:
            raise HttpError(403, "forbidden_host")

    @staticmethod
    def _json_body(environ: WSGIEnvironment) -> dict[str, Any]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HttpError(400, "bad_length") from None
        if length > _MAX_BODY:
            raise HttpError(413, "too_large")
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HttpError(400, "bad_json") from None
        if not isinstance(body, dict):
            raise HttpError(400, "bad_json")
        return body

    def _get(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", (STATIC / "index.html").read_bytes()
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            file = (STATIC / name).resolve()
            if "/" in name or not file.is_file() or file.parent != STATIC:
                raise HttpError(404, "not_found")
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype.endswith("javascript"):
                ctype += "; charset=utf-8"
            return 200, ctype, file.read_bytes()
        if path == "/api/state":
            return 200, "application/json", json.dumps(self.state()).encode()
        if path == "/api/preview.jpg":
            with self._cond:
                preview = self._preview
            if preview is None or self._mode() == "off":
                raise HttpError(404, "no_preview")
            return 200, "image/jpeg", preview
        if path.startswith("/api/page/") and path.endswith(".jpg"):
            return 200, "image/jpeg", self.thumbnail(path[len("/api/page/"):-len(".jpg")])
        raise HttpError(404, "not_found")

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the camera loop (the session and the camera belong to the caller)."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(10)
        self.session.remove_listener(self._on_session)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Payload Too Large", 423: "Locked", 500: "Internal Server Error"}


class _Server(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per request (the screen polls while an image is being served)."""
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kiosk http: %s %s", format, args)


class KioskServer:
    """Serves a :class:`KioskApp` on loopback in a thread.

    >>> with KioskServer(app) as server:     # doctest: +SKIP
    ...     print(server.url)
    """

    def __init__(self, app: KioskApp, host: str | None = None, port: int | None = None) -> None:
        self.app = app
        self._server = make_server(host or app.config.host, app.config.port if port is None else port, app,
                                   server_class=_Server, handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="kiosk-http", daemon=True)
        self._thread.start()
        log.info("kiosk screen on %s", self.url)
        return self

    def close(self) -> None:
        """Stop serving and stop the app's camera loop."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()
        self.app.close()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["HINTS", "KioskApp", "KioskServer"]
