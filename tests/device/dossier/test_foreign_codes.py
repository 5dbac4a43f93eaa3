"""Codes of another unit or province (``session.own_agencies``): a receipt slip's QR naming
another agency's dossier is not taken and the clerk is told (the fault the light and the screen
show); a typed one is refused with its own error; the kiosk says so in Vietnamese."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from device.dossier.config import SessionConfig
from device.dossier.errors import ForeignDossierCode, InvalidDossierCode
from device.dossier.session import DossierSession
from device.kiosk import KioskApp, KioskConfig, KioskServer
from tests.device.dossier.doubles import ListSource, RecordingSink, ScriptedPipeline, Verdict, page_image

OWN = "000.00.12.H10-260101-0001"
SAME_PROVINCE = "000.00.31.H10-260101-0002"
FOREIGN = "000.00.12.H22-260101-0003"


def test_a_foreign_receipt_qr_is_not_taken_and_the_clerk_is_told() -> None:
    pipeline = ScriptedPipeline({1: Verdict(receipt=FOREIGN), 2: Verdict(), 3: Verdict(receipt=SAME_PROVINCE)})
    sink = RecordingSink()
    faults: list[str | None] = []
    with DossierSession(SessionConfig(own_agencies=["h10"]), processor=pipeline, sink=sink,
                        pdf_builder=None) as session:
        session.add_listener(lambda e: faults.append(e.fault) if e.kind == "fault" else None)
        session.open()
        session.capture(ListSource([page_image(1), page_image(2)]))
        snap = session.snapshot()
        assert snap.dossier_code is None and snap.fault == "foreign_dossier_code" and len(snap.pages) == 2
        assert faults == ["foreign_dossier_code"]
        session.capture(ListSource([page_image(3)]))  # the right slip: a dossier of the same province
        assert session.snapshot().dossier_code == SAME_PROVINCE
        session.name(SAME_PROVINCE)
        assert session.snapshot().fault is None
        session.finish()
        assert sink.dossiers[0].dossier_code == SAME_PROVINCE


def test_a_typed_foreign_code_is_refused() -> None:
    with DossierSession(SessionConfig(own_agencies=["000.00.12.H10"]), pdf_builder=None) as session:
        with pytest.raises(ForeignDossierCode):
            session.open(SAME_PROVINCE)  # another agency of the province: not this unit's
        with pytest.raises(InvalidDossierCode):  # a foreign code is a kind of invalid one for old callers
            session.open(FOREIGN)
        assert session.state == "idle"
        session.open()
        with pytest.raises(ForeignDossierCode):
            session.name(FOREIGN)
        assert session.snapshot().dossier_code is None
        assert session.name(OWN).dossier_code == OWN
    with DossierSession(pdf_builder=None) as anywhere:  # no list: every code, as before
        assert anywhere.open(FOREIGN).dossier_code == FOREIGN


def test_the_agency_list_is_checked() -> None:
    """Bad input: a code with a separator, an empty entry."""
    for bad in (["H10/1"], [""], ["H10-260101"]):
        with pytest.raises(ValidationError):
            SessionConfig(own_agencies=bad)


def test_the_kiosk_says_so() -> None:
    session = DossierSession(SessionConfig(own_agencies=["H10"]), pdf_builder=None)
    server = KioskServer(KioskApp(KioskConfig(enabled=True, port=0), session)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            http.post("/api/start", json={})
            response = http.post("/api/open", json={"code": FOREIGN})
            assert response.status_code == 400
            notice = http.get("/api/state").json()["notice"]
            assert notice["code"] == "foreign_code" and "đơn vị hoặc tỉnh khác" in notice["vi"]
            assert session.state == "idle"
    finally:
        server.close()
        session.close()
