"""The kiosk app over real loopback HTTP (no browser): opening by typed code, the camera loop's
automatic shot with the fake camera, retake, review, finish into the sink, the camera pulled,
idle and abandoned dossiers, and requests it must refuse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from device.capture.config import FakeCameraConfig
from device.capture.fake_camera import FakeCamera
from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from tests.device.dossier.doubles import RecordingSink

CODE = "000.00.12.H10-260101-0123"
T = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Kiosk:
    app: KioskApp
    server: KioskServer
    session: DossierSession
    camera: FakeCamera
    sink: RecordingSink
    http: httpx.Client
    clock: Clock

    def post(self, action: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/api/{action}", json=body)

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/api/state").json()
        return data


@pytest.fixture
def kiosk() -> Iterator[Kiosk]:
    """A kiosk with a small fake camera and the real page pipeline (the guide's outline and
    issues), served on a free loopback port; the idle clock is the test's."""
    from device.inference.pipeline import PagePipeline

    clock = Clock()
    camera = FakeCamera(FakeCameraConfig(type="fake", width=320, height=240, still_scale=2, empty_frames=1,
                                         slide_frames=2, blur_frames=1, retry_s=0))
    sink = RecordingSink()
    pipeline = PagePipeline()
    session = DossierSession(processor=pipeline, sink=sink, pdf_builder=None)
    app = KioskApp(KioskConfig(enabled=True, port=0, preview_fps=30, still_frames=2, idle_reset_s=60,
                               finish_screen_s=20, abandon_after_s=300), session, camera=camera, pipeline=pipeline,
                   clock=clock)
    server = KioskServer(app).start()
    http = httpx.Client(base_url=server.url, timeout=10)
    try:
        yield Kiosk(app, server, session, camera, sink, http, clock)
    finally:
        http.close()
        server.close()
        session.close()
        pipeline.close()


def test_typed_code_shot_retake_finish(kiosk: Kiosk) -> None:
    """The whole flow through the API; a bad code first (path separator) is refused with a
    Vietnamese notice and changes nothing."""
    assert kiosk.http.get("/").text.startswith("<!doctype html>")
    assert kiosk.post("start").json()["step"] == "code"
    bad = kiosk.post("open", code="../../etc")
    assert bad.status_code == 400 and bad.json()["error"] == "bad_code" and "không hợp lệ" in bad.json()["vi"]
    assert kiosk.state()["state"] == "idle" and kiosk.state()["notice"]["code"] == "bad_code"
    assert kiosk.post("open", code=CODE).json()["state"] == "open"
    snap = kiosk.session.wait_for_state("review", timeout=T)
    assert len(snap.pages) == 1 and kiosk.app.shots == 1
    first = snap.pages[0].page_id
    thumb = kiosk.http.get(f"/api/page/{first}.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["cache-control"] == "no-store"
    kiosk.camera.restart()
    assert kiosk.post("retake", page_id=first).json()["retake"] == first
    snap = kiosk.session.wait_for(lambda s: s.state == "review" and s.pages[0].page_id != first, T)
    assert len(snap.pages) == 1 and kiosk.state()["retake"] is None
    assert kiosk.post("finish").json()["state"] == "closed"
    assert kiosk.state()["last_closed"] == {"dossier_code": CODE, "pages": 1, "kind": "component"}
    assert len(kiosk.sink.dossiers) == 1 and kiosk.sink.dossiers[0].dossier_code == CODE


def test_no_code_review_button_and_remove(kiosk: Kiosk) -> None:
    """A walk-in dossier; 'review' from the camera screen; removing the only page goes back to
    the camera; review with no page is refused (409), as is an unknown page (404)."""
    kiosk.post("start")
    assert kiosk.post("open").json()["dossier_code"] is None
    assert kiosk.post("review").status_code == 409 or kiosk.session.state != "open"
    snap = kiosk.session.wait_for_state("review", timeout=T)
    kiosk.camera.unplug()  # no second shot while we look
    kiosk.post("accept")
    assert kiosk.post("review").json()["state"] == "review"
    assert kiosk.post("remove", page_id="nope").status_code == 404
    assert kiosk.post("remove").status_code == 400
    assert kiosk.post("remove", page_id=snap.pages[0].page_id).json()["state"] == "open"
    kiosk.post("cancel")
    assert kiosk.state()["state"] == "idle" and kiosk.sink.dossiers == []


def test_camera_pulled_is_shown_not_a_crash(kiosk: Kiosk) -> None:
    """The camera unplugged during the camera step: the state says absent with the plain hint;
    plugged back, the shot happens."""
    import threading

    absent = threading.Event()
    kiosk.camera.add_listener(lambda state, problem: absent.set() if state == "absent" else None)
    kiosk.camera.unplug()
    kiosk.post("open", code=CODE)
    assert absent.wait(T)
    kiosk.app.wait_for(lambda s: s["guidance"] is not None and s["guidance"]["hint"] == "camera_absent", T)
    state = kiosk.state()
    assert state["camera"]["state"] == "absent" and state["guidance"]["hint"] == "camera_absent"
    assert "Máy ảnh chưa sẵn sàng" in state["guidance"]["hint_vi"]
    kiosk.camera.plug()
    assert len(kiosk.session.wait_for_state("review", timeout=T).pages) == 1


def test_idle_and_abandoned(kiosk: Kiosk) -> None:
    """The finish screen clears itself after finish_screen_s; an open dossier nobody touches for
    abandon_after_s is filed (no page lost), not left on the screen."""
    kiosk.post("open", code=CODE)
    kiosk.session.wait_for_state("review", timeout=T)
    kiosk.clock.now += 301
    snap = kiosk.session.wait_for_state("closed", timeout=T)
    assert snap.last_closed is not None and len(kiosk.sink.dossiers) == 1
    kiosk.clock.now += 21
    assert kiosk.session.wait_for_state("idle", timeout=T).last_closed is None
    assert kiosk.state()["last_closed"] is None and kiosk.state()["dossier_code"] is None


def test_refused_requests(kiosk: Kiosk) -> None:
    """A foreign Host header (DNS rebinding), path traversal into static, a huge or non-JSON
    body, an unknown action, a PUT: each refused, the session untouched."""
    assert kiosk.http.get("/api/state", headers={"Host": "evil.example"}).status_code == 403
    assert kiosk.http.post("/api/open", headers={"Host": "sohoa.attacker:8766"}, json={}).status_code == 403
    assert kiosk.http.get("/static/..%2Fapp.py").status_code == 404
    assert kiosk.http.get("/static/../app.py").status_code == 404
    assert kiosk.http.post("/api/open", content=b"x" * 5000).status_code == 413
    assert kiosk.http.post("/api/open", content=b"[1, 2]").status_code == 400
    assert kiosk.http.post("/api/open", content=b"\xff\xfe").status_code == 400
    assert kiosk.http.post("/api/explode", json={}).status_code == 404
    assert kiosk.http.put("/api/open", json={}).status_code == 405
    assert kiosk.post("open", code=12).status_code == 400
    assert kiosk.session.state == "idle"
    assert kiosk.http.get("/static/kiosk.js").headers["content-type"].startswith("text/javascript")


def test_config_keeps_it_on_loopback() -> None:
    """A kiosk config listening beyond the machine, or abandoning before the screen resets, is an error."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="loopback"):
        KioskConfig(host="0.0.0.0")  # noqa: S104 - the bad input under test
    with pytest.raises(ValidationError):
        KioskConfig(idle_reset_s=100, abandon_after_s=50)
    with pytest.raises(ValidationError):
        KioskConfig.model_validate({"idle_reset": 5})


def test_feeder_scan_from_the_screen() -> None:
    """A kiosk with a feeder and no camera: 'scan' runs a batch into the open dossier in the
    background and the screen follows to review. Scan with no dossier open is refused (409), and
    on a kiosk without a scanner it does not exist (404)."""
    from tests.device.dossier.doubles import ListSource, page_image

    session = DossierSession(pdf_builder=None)
    sources = [ListSource([page_image(v) for v in (1, 2, 3)])]
    app = KioskApp(KioskConfig(enabled=True, port=0), session, pages_for=lambda kind: sources.pop(0))
    bare = KioskApp(KioskConfig(enabled=True, port=0), session)
    with KioskServer(app) as server, KioskServer(bare) as bare_server, httpx.Client(base_url=server.url) as http:
        assert http.get("/api/state").json()["scanner"] is True
        assert http.post("/api/scan", json={}).status_code == 409
        http.post("/api/open", json={"code": CODE})
        assert http.post("/api/scan", json={}).status_code == 200
        snap = session.wait_for_state("review", timeout=T)
        assert [p.sequence for p in snap.pages] == [1, 2, 3]
        assert httpx.post(bare_server.url + "api/scan", json={}).status_code == 404
        session.cancel()
    session.close()
