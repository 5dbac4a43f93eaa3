"""The HTTP API through the app factory and TestClient, on SQLite and PostgreSQL. Data goes
in through the ingest writer (real protocol messages) and the upload endpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fleet.api.app import create_app
from fleet.auth.models import AuditEntry
from fleet.ingest import Incoming, Writer
from fleet.models import StoredFile
from fleet.storage import FileStore
from protocol.messages import Message, encode
from protocol.topics import Channel, topic
from provisioning.files import read_private_key
from provisioning.requestauth import sign_request
from tests.authn import login
from tests.devices import TestDevice, enroll_device, with_pki
from tests.fleet.conftest import make_config, state_of
from tests.fleet.messages import fault, page_event, status, telemetry

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """The app without MQTT ingest (the API's half), 1 MiB upload limit, with a CA (devices enroll)."""
    config = with_pki(make_config(tmp_path, db_url, max_upload_bytes=1024 * 1024), tmp_path)
    with TestClient(create_app(config)) as client:
        login(client)  # a province admin
        yield client


@pytest.fixture
def kiosk(api: TestClient, tmp_path: Path) -> TestDevice:
    """kiosk-0001, enrolled in unit 26734 (the unit its status messages name)."""
    return enroll_device(api, "kiosk-0001", "26734", tmp_path)


def feed(client: TestClient, *messages: tuple[Channel, Message]) -> None:
    writer = Writer(state_of(client).sessions, state_of(client).metrics)
    items = [Incoming(topic(m.device_id, ch), encode(m)) for ch, m in messages]
    assert writer.write(items) == len(items)


def put(client: TestClient, device: TestDevice, data: bytes, sha: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = device.put_file(client, data, sha256=sha)
    return response.status_code, response.json()


def stored_files(client: TestClient) -> list[Path]:
    store = state_of(client).store
    assert isinstance(store, FileStore)
    root = store.root
    return [p for p in root.rglob("*") if p.is_file()]


def test_upload_is_idempotent_and_checksum_verified(api: TestClient, kiosk: TestDevice) -> None:
    """Bad input tried: a body whose sha256 is not the one in the path (one byte changed),
    a body over the size limit, a path that is not a sha256, an unsigned upload."""
    sha = hashlib.sha256(PNG).hexdigest()
    assert api.head(f"/api/v1/files/{sha}").status_code == 404
    code, body = put(api, kiosk, PNG)
    assert code == 201 and body["sha256"] == sha and body["size"] == len(PNG) and body["uploaded_by"] == "kiosk-0001"
    assert put(api, kiosk, PNG)[0] == 200
    head = api.head(f"/api/v1/files/{sha}")
    assert head.status_code == 200 and head.headers["x-sohoa-size"] == str(len(PNG))
    assert api.get(f"/api/v1/files/{sha}").content == PNG
    assert stored_files(api) == [state_of(api).store.path(sha)]

    tampered = PNG[:-1] + b"\x00"
    code, body = put(api, kiosk, tampered, sha=hashlib.sha256(b"something else").hexdigest())
    assert code == 400 and "sha256" in body["detail"]
    assert stored_files(api) == [state_of(api).store.path(sha)]  # nothing new, no temporary left
    with state_of(api).sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 1

    big = b"x" * (1024 * 1024 + 1)
    assert put(api, kiosk, big)[0] == 413
    assert stored_files(api) == [state_of(api).store.path(sha)]
    assert api.put("/api/v1/files/not-a-sha", content=b"x", auth=kiosk.auth("0" * 64)).status_code == 422
    unsigned = api.put(f"/api/v1/files/{sha}", content=PNG, headers={"X-Sohoa-Device": "kiosk-0001"})
    assert unsigned.status_code == 401 and unsigned.json()["detail"] == "unauthenticated"


def test_upload_is_the_signing_devices_own(api: TestClient, kiosk: TestDevice, tmp_path: Path) -> None:
    """A device cannot upload on behalf of another. Bad input tried: kiosk-0002 naming kiosk-0001
    in the old X-Sohoa-Device header (ignored: the uploader is the signer), kiosk-0002 signing with
    its own key but claiming kiosk-0001's id (bad_signature), a signature replayed for a second
    upload (replayed), a signature for one file's hash sent with another path (bad_signature), a
    user's session instead of a device's signature (unauthenticated), a revoked device (revoked),
    an anonymous HEAD naming kiosk-0001 in X-Sohoa-Device (401; the name is not put in the audit log),
    kiosk-0001's signed HEAD for kiosk-0002's file (404, as for a file not held);
    each refusal is in the audit log with its reason, and nothing refused is stored."""
    other = enroll_device(api, "kiosk-0002", "26734", tmp_path)
    sha = hashlib.sha256(PNG).hexdigest()
    r = api.put(f"/api/v1/files/{sha}", content=PNG, auth=other.auth(sha),
                headers={"X-Sohoa-Device": "kiosk-0001", "Content-Type": "image/png"})
    assert r.status_code == 201 and r.json()["uploaded_by"] == "kiosk-0002"

    def refused(data: bytes, headers: dict[str, str], path_sha: str | None = None) -> str:
        response = api.put(f"/api/v1/files/{path_sha or hashlib.sha256(data).hexdigest()}", content=data,
                           headers=headers)
        assert response.status_code == 401, response.text
        detail: str = response.json()["detail"]
        return detail

    page = PNG + b"another page of kiosk-0001"
    page_sha = hashlib.sha256(page).hexdigest()
    key = read_private_key(other.identity.key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    forged = sign_request(key, "kiosk-0001", "PUT", f"/api/v1/files/{page_sha}", page_sha)
    assert refused(page, forged) == "bad_signature"
    signed = kiosk.identity.sign_request("PUT", f"/api/v1/files/{page_sha}", page_sha)
    assert api.put(f"/api/v1/files/{page_sha}", content=page, headers=signed).status_code == 201
    assert refused(page, signed) == "replayed"
    third = b"a third page"
    moved = kiosk.identity.sign_request("PUT", f"/api/v1/files/{page_sha}", page_sha)
    assert refused(third, moved) == "bad_signature"  # the signature names the path's file, not this one
    assert refused(third, {"Authorization": api.headers["Authorization"]}) == "unauthenticated"
    assert api.head(f"/api/v1/files/{hashlib.sha256(third).hexdigest()}").status_code == 404
    anonymous = TestClient(api.app)  # no session cookie, no token: the app opened by ``api`` already
    # The old X-Sohoa-Device header proves nothing (anyone can write any id there): the refusal's
    # audit entry does not repeat the name it claims.
    assert anonymous.head(f"/api/v1/files/{sha}", headers={"X-Sohoa-Device": "kiosk-0001"}).status_code == 401
    assert api.head(f"/api/v1/files/{sha}", auth=other.auth()).status_code == 200  # the uploader asks, signed
    # Another device learns nothing from a hash: its HEAD answers as for a file never seen.
    assert api.head(f"/api/v1/files/{sha}", auth=kiosk.auth()).status_code == 404

    assert api.post("/api/v1/devices/kiosk-0002/revoke").status_code == 200
    assert refused(third, dict(other.identity.sign_request("PUT", f"/api/v1/files/{hashlib.sha256(third).hexdigest()}",
                                                           hashlib.sha256(third).hexdigest()))) == "revoked"
    with state_of(api).sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 2
        reasons = [(a.target, a.detail) for a in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "device.refused").order_by(AuditEntry.id))]
    assert reasons == [("kiosk-0001", "reason=bad_signature"), ("kiosk-0001", "reason=replayed"),
                       ("kiosk-0001", "reason=bad_signature"), (None, "reason=unauthenticated"),
                       ("kiosk-0002", "reason=revoked")]
    audit = api.get("/api/v1/audit", params={"limit": 200}).json()
    assert sum(1 for a in audit if a["action"] == "device.refused") == 5
    head_refused = [a for a in audit if a["action"] == "HEAD /api/v1/files/{sha256}" and a["outcome"] == "401"]
    assert len(head_refused) == 1 and "kiosk-0001" not in (head_refused[0]["detail"] or ""), head_refused


def test_page_file_download_is_byte_identical(api: TestClient, kiosk: TestDevice) -> None:
    """The metadata arrives before the file (either order is allowed): the file is reported
    missing (404) until uploaded, then served byte for byte with its content type."""
    event = page_event("kiosk-0001", PNG)
    feed(api, (Channel.EVENT, event))
    page_id = event.page.page_id
    assert api.get(f"/api/v1/pages/{page_id}").json()["file_available"] is False
    assert api.get(f"/api/v1/pages/{page_id}/file").status_code == 404
    assert put(api, kiosk, PNG)[0] == 201
    page = api.get(f"/api/v1/pages/{page_id}").json()
    assert page["file_available"] is True
    download = api.get(page["file_url"])
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert api.get("/api/v1/pages/no-such-page/file").status_code == 404


def test_filters(api: TestClient) -> None:
    """Pages filtered by device, dossier, batch and capture time; events by type and time;
    devices by online state; unknown ids answer 404."""
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    a1 = page_event("kiosk-0001", b"a1", sequence=1, dossier_code="H13-0001", captured_at=t0)
    a2 = page_event("kiosk-0001", b"a2", sequence=2, dossier_code="H13-0001", captured_at=t0 + timedelta(minutes=1))
    b1 = page_event("kiosk-0002", b"b1", batch_id="batch-b", dossier_code="H13-0002",
                    captured_at=t0 + timedelta(hours=2))
    jam = fault("kiosk-0002")
    feed(api, (Channel.EVENT, a1), (Channel.EVENT, a2), (Channel.EVENT, b1), (Channel.EVENT, jam),
         (Channel.STATUS, status("kiosk-0001", "online")), (Channel.STATUS, status("kiosk-0002", "offline")),
         (Channel.TELEMETRY, telemetry("kiosk-0001", events=7)))

    def ids(**params: str) -> list[str]:
        response = api.get("/api/v1/pages", params=params)
        assert response.status_code == 200, response.text
        return [p["page_id"] for p in response.json()]

    assert ids() == [b1.page.page_id, a2.page.page_id, a1.page.page_id]
    assert ids(device_id="kiosk-0001") == [a2.page.page_id, a1.page.page_id]
    assert ids(dossier_code="H13-0002") == [b1.page.page_id]
    assert ids(batch_id="batch-b") == [b1.page.page_id]
    assert ids(since=(t0 + timedelta(seconds=30)).isoformat(), until=(t0 + timedelta(hours=1)).isoformat()) == [
        a2.page.page_id
    ]
    assert ids(device_id="kiosk-0001", limit="1") == [a2.page.page_id]
    assert ids(dossier_code="nope") == []
    assert api.get("/api/v1/pages", params={"since": "yesterday"}).status_code == 422

    devices = api.get("/api/v1/devices").json()
    assert [d["id"] for d in devices] == ["kiosk-0001", "kiosk-0002"]
    one = devices[0]
    assert one["online"] is True and one["version"] == "0.1.0" and one["outbox"]["events"] == 7
    assert one["scanner_state"] == "ready" and one["unit"] == "26734"
    assert [d["id"] for d in api.get("/api/v1/devices", params={"unit": "26734"}).json()] == ["kiosk-0001"]
    assert [d["id"] for d in api.get("/api/v1/devices", params={"online": "false"}).json()] == ["kiosk-0002"]
    assert api.get("/api/v1/devices/kiosk-0001").json()["telemetry"]["agent_version"] == "0.1.0"
    assert api.get("/api/v1/devices/kiosk-9999").status_code == 404

    events = api.get("/api/v1/devices/kiosk-0002/events").json()
    assert [e["type"] for e in events] == ["scanner_jammed", "page_captured"]
    jammed = api.get("/api/v1/devices/kiosk-0002/events", params={"type": "scanner_jammed"}).json()
    assert [e["id"] for e in jammed] == [jam.id] and jammed[0]["severity"] == "warning"
    assert jammed[0]["payload"]["message"] == "Document feeder jammed"
    assert api.get("/api/v1/devices/kiosk-9999/events").status_code == 404


def test_health_docs_and_web_page(api: TestClient) -> None:
    """/healthz answers with the database checked; OpenAPI lists the contract's paths; the
    web page is UTF-8 Vietnamese and refreshes itself from the API."""
    health = api.get("/healthz").json()
    assert health == {"status": "ok", "database": "ok", "ingest": "off"}
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/devices", "/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}/events",
                 "/api/v1/pages", "/api/v1/pages/{page_id}", "/api/v1/pages/{page_id}/file",
                 "/api/v1/files/{sha256}"):
        assert path in paths, path
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "Thiết bị" in page.text and "const REFRESH_MS = 3000;" in page.text
    assert "sohoa_fleet_devices_online" in api.get("/metrics").text


def test_files_are_taken_by_their_content_and_served_as_attachments(api: TestClient, kiosk: TestDevice) -> None:
    """Bad input: a device key taken off a kiosk uploads an HTML page with script (declared as
    text/html, then as image/png), an SVG, a ZIP and an empty file: each 415, nothing stored. A
    real PNG declared as text/html is stored as image/png. Downloads are attachments, never
    sniffed, under a sandboxing policy; a row from before the check that says text/html is
    served as an opaque type."""
    html = b"<!doctype html><script>fetch('/api/v1/users',{method:'POST'})</script>"
    for data, declared in ((html, "text/html"), (html, "image/png"), (b"<svg onload='alert(1)'/>", "image/svg+xml"),
                           (b"PK\x03\x04" + b"\0" * 64, "application/zip"), (b"", "image/png")):
        response = kiosk.put_file(api, data, content_type=declared)
        assert response.status_code == 415, (declared, response.status_code)
    assert stored_files(api) == []
    sha = hashlib.sha256(PNG).hexdigest()
    assert kiosk.put_file(api, PNG, content_type="text/html").status_code == 201
    got = api.get(f"/api/v1/files/{sha}")
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]
    with state_of(api).sessions.begin() as session:
        held = session.get(StoredFile, sha)
        assert held is not None
        held.content_type = "text/html"  # as an older fleet recorded it
    assert api.get(f"/api/v1/files/{sha}").headers["content-type"] == "application/octet-stream"
