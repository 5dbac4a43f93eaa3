"""Corrections on the fleet: ``doctype_corrected`` events stored by the real ingest (its Writer,
and once through the real mosquitto), listed at ``/api/v1/corrections`` and exported as a zip of
the corrected page files plus ``labels.csv`` that the training reads back. On SQLite and on the
suite's PostgreSQL."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fleet.api.app import create_app
from fleet.config import FleetConfig
from fleet.corrections.store import LABEL_COLUMNS
from fleet.ingest import Incoming, Writer
from protocol.messages import DoctypeCorrected, Message, PageCaptured, Status, encode
from protocol.topics import Channel, topic
from tests.authn import login
from tests.devices import TestDevice, enroll_device, with_pki
from tests.fleet.conftest import Publisher, make_config, state_of, wait_for
from tests.fleet.messages import page_event
from tests.services import Mosquitto

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
DOSSIER = "000.00.12.H10-261102-0001"


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 30, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def correction(device: str, page: PageCaptured, doctype: str, when: datetime, previous: str | None = "other",
               by: Literal["clerk", "citizen", "admin"] = "clerk") -> DoctypeCorrected:
    return DoctypeCorrected(device_id=device, ts=when, page_id=page.page.page_id, sha256=page.page.sha256,
                            previous=previous, doctype=doctype, by=by)


def upload(client: TestClient, data: bytes, device: TestDevice) -> None:
    response = device.put_file(client, data)
    assert response.status_code == 201, response.text


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """The fleet app without MQTT (events go in through the ingest's Writer), with a CA: devices
    enroll and sign their uploads."""
    with TestClient(create_app(with_pki(make_config(tmp_path, db_url), tmp_path))) as client:
        login(client)  # a province admin
        yield client


@pytest.fixture
def fleet_config(tmp_path: Path, db_url: str, mosquitto: Mosquitto) -> FleetConfig:
    """The conftest's ``client`` with a CA (the uploading device enrolls)."""
    return with_pki(make_config(tmp_path, db_url, mosquitto), tmp_path)


def test_list_and_export(api: TestClient, tmp_path: Path) -> None:
    """Four pages from two devices. Page A is corrected twice and the older correction arrives
    last (the later ``ts`` still wins); page B once; page C's file never arrived (listed, not
    exported); page D is not corrected. Bad input tried: corrections naming a Vietnamese label,
    a path and an upper-case id as the class, kiosk-b correcting kiosk-a's pages A and D, and
    kiosk-b naming its own page B with page D's file (each ingested, but neither listed nor
    exported), and a malformed ``doctype`` filter (422)."""
    writer = Writer(state_of(api).sessions, state_of(api).metrics)
    data = {name: png(v) for name, v in (("a", 10), ("b", 20), ("c", 30), ("d", 40))}
    pages = {name: page_event("kiosk-a" if name != "b" else "kiosk-b", blob, sequence=i, dossier_code=DOSSIER,
                              captured_at=T0) for i, (name, blob) in enumerate(data.items(), start=1)}
    messages: list[Message] = [
        Status(device_id="kiosk-a", state="online", agent_version="0.1.0", unit="26734", ts=T0),
        *pages.values(),
        correction("kiosk-a", pages["a"], "birth_certificate", T0 + timedelta(minutes=5), previous="receipt"),
        correction("kiosk-b", pages["b"], "land_certificate", T0 + timedelta(minutes=3), by="citizen"),
        correction("kiosk-a", pages["c"], "receipt", T0 + timedelta(minutes=4)),
        correction("kiosk-a", pages["a"], "receipt", T0 + timedelta(minutes=1)),  # older, arrives last
        correction("kiosk-a", pages["d"], "Giấy khai sinh", T0 + timedelta(minutes=6)),
        correction("kiosk-a", pages["d"], "../../etc", T0 + timedelta(minutes=7)),
        correction("kiosk-a", pages["d"], "BIRTH_CERTIFICATE", T0 + timedelta(minutes=8)),
        # Another device's page, and its own page named with another device's file: left out.
        correction("kiosk-b", pages["a"], "passport", T0 + timedelta(minutes=9)),
        correction("kiosk-b", pages["b"], "passport", T0 + timedelta(minutes=10)).model_copy(
            update={"sha256": pages["d"].page.sha256}),
        correction("kiosk-b", pages["d"], "passport", T0 + timedelta(minutes=11)),
    ]
    items = [Incoming(topic(m.device_id, Channel.STATUS if isinstance(m, Status) else Channel.EVENT), encode(m))
             for m in messages]
    assert writer.write(items) == len(items)
    kiosk_a = enroll_device(api, "kiosk-a", "26734", tmp_path)
    for name in ("a", "b", "d"):
        upload(api, data[name], kiosk_a)

    listed = api.get("/api/v1/corrections").json()
    assert [c["page_id"] for c in listed] == [pages[n].page.page_id for n in ("a", "c", "b")]  # most recent first
    a, c, b = listed
    assert (a["doctype"], a["previous"], a["corrections"], a["unit"], a["by"]) == (
        "birth_certificate", "receipt", 2, "26734", "clerk")
    assert (b["doctype"], b["device_id"], b["unit"], b["by"]) == ("land_certificate", "kiosk-b", None, "citizen")
    assert (a["file_available"], b["file_available"], c["file_available"]) == (True, True, False)
    assert [x["page_id"] for x in api.get("/api/v1/corrections", params={"unit": "26734"}).json()] == [
        a["page_id"], c["page_id"]]
    assert [x["page_id"] for x in api.get("/api/v1/corrections", params={"doctype": "land_certificate"}).json()] \
        == [b["page_id"]]
    since = (T0 + timedelta(minutes=4)).isoformat()
    assert len(api.get("/api/v1/corrections", params={"since": since}).json()) == 2
    assert api.get("/api/v1/corrections", params={"doctype": "Giấy khai sinh"}).status_code == 422

    response = api.get("/api/v1/corrections/export.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="corrections-')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    sha = {n: pages[n].page.sha256 for n in pages}
    assert sorted(archive.namelist()) == sorted([
        f"pages/birth_certificate/{sha['a']}.png", f"pages/land_certificate/{sha['b']}.png", "labels.csv"])
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode("utf-8"))))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert [(r["sha256"], r["doctype"], r["previous"], r["device"], r["unit"]) for r in rows] == [
        (sha["b"], "land_certificate", "other", "kiosk-b", ""),
        (sha["a"], "birth_certificate", "receipt", "kiosk-a", "26734"),
    ]
    for r in rows:
        assert archive.read(r["file"]) == data["a" if r["sha256"] == sha["a"] else "b"]
        assert datetime.fromisoformat(r["corrected_at"]).tzinfo is not None
    assert DOSSIER not in archive.read("labels.csv").decode()  # nothing of the dossier beyond the image

    # the training reads the export back
    from training.dataset import correction_pages

    root = tmp_path / "export"
    archive.extractall(root)
    train, held = correction_pages(root)
    assert sorted((p.path.name, p.doctype) for p in train + held) == sorted([
        (f"{sha['a']}.png", "birth_certificate"), (f"{sha['b']}.png", "land_certificate")])
    assert len(train) == 1 and len(held) == 1


def test_empty_export(api: TestClient) -> None:
    """No corrections yet: an empty list, and a valid zip holding only the CSV header."""
    assert api.get("/api/v1/corrections").json() == []
    archive = zipfile.ZipFile(io.BytesIO(api.get("/api/v1/corrections/export.zip").content))
    assert archive.namelist() == ["labels.csv"]
    assert archive.read("labels.csv").decode() == ",".join(LABEL_COLUMNS) + "\n"


def test_correction_over_mqtt(client: TestClient, publisher: Publisher, tmp_path: Path) -> None:
    """A device publishes a page and its correction to the real broker; the ingest stores both
    and the correction is listed with the page's file once uploaded."""
    blob = png(77)
    page = page_event("kiosk-m", blob, captured_at=T0)
    fixed = correction("kiosk-m", page, "household_book", T0 + timedelta(minutes=2), by="citizen")
    for message in (page, fixed):
        publisher.publish(topic("kiosk-m", Channel.EVENT), encode(message))

    def listed() -> bool:
        return len(client.get("/api/v1/corrections").json()) == 1

    wait_for(client, listed)
    upload(client, blob, enroll_device(client, "kiosk-m", "26734", tmp_path))
    [entry] = client.get("/api/v1/corrections").json()
    assert (entry["page_id"], entry["doctype"], entry["by"], entry["file_available"]) == (
        page.page.page_id, "household_book", "citizen", True)
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/v1/corrections/export.zip").content))
    assert archive.read(f"pages/household_book/{page.page.sha256}.png") == blob
