"""What the admin page needs from the API beyond the resources' own routes: a device enrolled but
never connected is readable (and takes commands that wait for it), a device moves to another unit
(the fleet's assignment, which its own status messages cannot undo, audited, within the admin's
units), the contract's schemas and the dry-run check the forms validate against, the bundle list, uploads
verified against the configured signing keys.
One app (SQLite, its CA, the sample unit tree) for the module."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet.api.app import create_app
from fleet.api.state import fleet_state
from fleet.config import BundlesConfig
from fleet.ingest import Incoming, Writer
from fleet.progress.units import sample_csv
from images.manifest import Manifest, sign
from protocol.messages import Status, encode
from tests.authn import ADMIN_NAME, ADMIN_PASSWORD, ensure_admin, login_as, make_user
from tests.devices import enroll_device, with_pki
from tests.fleet.conftest import make_config

UNIT_ADMIN, UNIT_ADMIN_PASSWORD = "qt-99001", "unit-admin-password-1"


@dataclass
class Fleet:
    app: FastAPI
    admin: TestClient
    unit_admin: TestClient
    directory: Path

    def status(self, device_id: str, unit: str) -> None:
        """The device's status, in through the ingest writer as the broker would bring it."""
        state = fleet_state(self.app)
        ops = state.services.operations
        writer = Writer(state.sessions, state.metrics)
        if ops is not None:
            writer.hooks.append(ops.hook)
        message = Status(device_id=device_id, state="online", unit=unit)
        assert writer.write([Incoming(f"sohoa/v1/{device_id}/status", encode(message))]) == 1


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("device-admin")
    app = create_app(with_pki(make_config(tmp, f"sqlite:///{tmp}/fleet.db"), tmp))
    with TestClient(app) as admin, TestClient(app) as unit_admin:
        sessions = fleet_state(app).sessions
        ensure_admin(sessions)
        make_user(sessions, name=UNIT_ADMIN, password=UNIT_ADMIN_PASSWORD, role="unit_admin", unit_code="99001")
        login_as(admin, ADMIN_NAME, ADMIN_PASSWORD)
        login_as(unit_admin, UNIT_ADMIN, UNIT_ADMIN_PASSWORD)
        assert admin.post("/api/v1/units/import", content=sample_csv().encode(),
                          headers={"Content-Type": "text/csv"}).status_code == 200
        yield Fleet(app, admin, unit_admin, tmp)


def test_enrolled_never_connected_is_readable_takes_commands_and_is_revoked(fleet: Fleet) -> None:
    """A device the fleet enrolled but never heard from: readable (``enrolled``, never seen) by
    the admins of its unit only, a command waits for it, revocation works."""
    enroll_device(fleet.admin, "kiosk-quiet", "99001", fleet.directory)
    device = fleet.admin.get("/api/v1/devices/kiosk-quiet")
    assert device.status_code == 200, device.text
    body = device.json()
    assert (body["status"], body["unit"], body["online"], body["last_seen"]) == ("enrolled", "99001", False, None)
    assert fleet.unit_admin.get("/api/v1/devices/kiosk-quiet").json()["status"] == "enrolled"
    assert fleet.admin.get("/api/v1/devices/kiosk-quiet/commands").json() == []
    queued = fleet.unit_admin.post("/api/v1/devices/kiosk-quiet/commands", json={"name": "test_scan", "args": {}})
    assert queued.status_code == 201, queued.text
    assert [c["state"] for c in fleet.admin.get("/api/v1/devices/kiosk-quiet/commands").json()] == ["queued"]
    assert fleet.admin.get("/api/v1/devices/nobody-at-all").status_code == 404
    revoked = fleet.admin.post("/api/v1/devices/kiosk-quiet/revoke")
    assert revoked.status_code == 200, revoked.text
    assert len(revoked.json()["revoked_serials"]) == 1
    assert fleet.admin.get("/api/v1/devices/kiosk-quiet").json()["status"] == "revoked"


def test_an_enrolled_device_outside_the_admins_units_stays_hidden(fleet: Fleet) -> None:
    enroll_device(fleet.admin, "kiosk-elsewhere", "99004", fleet.directory)
    assert fleet.admin.get("/api/v1/devices/kiosk-elsewhere").status_code == 200
    assert fleet.unit_admin.get("/api/v1/devices/kiosk-elsewhere").status_code == 404
    assert fleet.unit_admin.post("/api/v1/devices/kiosk-elsewhere/commands",
                                 json={"name": "reboot", "args": {}}).status_code == 404


def test_move_a_device_the_fleets_assignment_wins_and_is_audited(fleet: Fleet) -> None:
    """Bad input tried: a unit outside the unit admin's (403), a unit not in the tree and one
    dissolved (422), a device the fleet never enrolled (409): nothing moves on any of them."""
    enroll_device(fleet.admin, "kiosk-move", "99001", fleet.directory)
    fleet.status("kiosk-move", "99001")
    assert fleet.admin.put("/api/v1/settings/unit/99003", json={"settings": {"scan": {"dpi": 400}}}).status_code == 200

    refused = fleet.unit_admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": "99003"})
    assert refused.status_code == 403, refused.text
    for unit, why in (("98765", "valid today"), ("99002", "valid today")):  # 99002 merged into 99001 in 2025
        answer = fleet.admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": unit})
        assert answer.status_code == 422 and why in answer.text, answer.text
    assert fleet.admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": "99 003"}).status_code == 422
    assert fleet.admin.get("/api/v1/devices/kiosk-move").json()["unit"] == "99001"

    moved = fleet.admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": "99003"})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"device_id": "kiosk-move", "unit_code": "99003", "previous_unit_code": "99001",
                            "settings_changed": True}
    assert fleet.admin.get("/api/v1/devices/kiosk-move").json()["unit"] == "99003"
    assert fleet.admin.get("/api/v1/devices/kiosk-move/settings").json()["desired"]["scan"]["dpi"] == 400
    [entry] = fleet.admin.get("/api/v1/audit", params={"action": "device.moved"}).json()
    assert (entry["actor"], entry["target"], entry["unit_code"], entry["detail"]) == (
        ADMIN_NAME, "kiosk-move", "99003", "from=99001 to=99003")

    # Its own config still says 99001: its status no longer moves it back.
    fleet.status("kiosk-move", "99001")
    assert fleet.admin.get("/api/v1/devices/kiosk-move").json()["unit"] == "99003"
    assert fleet.unit_admin.get("/api/v1/devices/kiosk-move").status_code == 404  # out of 99001's admin's sight
    again = fleet.admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": "99003"})
    assert again.json()["previous_unit_code"] == "99003"
    assert len(fleet.admin.get("/api/v1/audit", params={"action": "device.moved"}).json()) == 1  # no change, no entry

    fleet.status("legacy-box", "99001")  # never enrolled: its unit is what it says
    legacy = fleet.admin.put("/api/v1/devices/legacy-box/unit", json={"unit_code": "99003"})
    assert legacy.status_code == 409, legacy.text
    assert fleet.admin.get("/api/v1/devices/legacy-box").json()["unit"] == "99001"
    assert fleet.admin.put("/api/v1/devices/nobody-at-all/unit", json={"unit_code": "99003"}).status_code == 404


def test_a_unit_admin_moves_within_their_units(fleet: Fleet) -> None:
    enroll_device(fleet.admin, "kiosk-local", "99001", fleet.directory)
    assert fleet.unit_admin.put("/api/v1/devices/kiosk-local/unit", json={"unit_code": "99001"}).status_code == 200
    assert fleet.unit_admin.put("/api/v1/devices/kiosk-move/unit", json={"unit_code": "99001"}).status_code == 404


def test_contract_schemas_and_the_dry_run_check(fleet: Fleet) -> None:
    contract = fleet.unit_admin.get("/api/v1/contract").json()
    assert "scan" in contract["settings"]["properties"]
    assert set(contract["commands"]) == {"reboot", "restart_agent", "test_scan", "collect_logs",
                                         "rotate_certificate", "update"}
    check = fleet.unit_admin.post("/api/v1/contract/check", json={
        "settings": {"scan": {"dpi": 100}, "maintenance_window": {"start": "02:00", "end": "02:00"}, "nope": 1},
        "command": "test_scan", "args": {"max_pages": 0}})
    assert check.status_code == 200
    assert sorted(tuple(p["loc"]) for p in check.json()["problems"]) == [
        ("body", "args", "max_pages"), ("body", "settings", "maintenance_window"),
        ("body", "settings", "nope"), ("body", "settings", "scan", "dpi")]
    fine = fleet.unit_admin.post("/api/v1/contract/check", json={"settings": {"scan": {"dpi": 400}},
                                                                 "command": "reboot", "args": {"force": True}})
    assert fine.json() == {"problems": []}
    assert fleet.admin.get("/api/v1/settings/fleet/default").status_code == 404  # a check stores nothing
    with TestClient(fleet.app) as viewer:  # a read: any user, and not in the audit log
        make_user(fleet_state(fleet.app).sessions, name="xem-99001", password="viewer-password-1", role="viewer",
                  unit_code="99001")
        login_as(viewer, "xem-99001", "viewer-password-1")
        assert viewer.post("/api/v1/contract/check", json={"settings": {}}).json() == {"problems": []}
    assert not [e for e in fleet.admin.get("/api/v1/audit", params={"limit": 1000}).json() if "contract" in e["action"]]


def test_bundle_list(fleet: Fleet) -> None:
    assert fleet.admin.get("/api/v1/bundles").json() == []
    put = fleet.admin.put("/api/v1/bundles/agent-9.9.bundle", content=b"signed bundle bytes")
    assert put.status_code == 201
    [listed] = fleet.unit_admin.get("/api/v1/bundles").json()
    assert (listed["name"], listed["size"], listed["sha256"]) == ("agent-9.9.bundle", 19, put.json()["sha256"])


def test_rollout_phases_that_do_not_increase_to_100_are_a_422(fleet: Fleet) -> None:
    """They reached planning and failed there (a 500) before; nothing is stored either way."""
    fleet.admin.put("/api/v1/bundles/agent-9.8.bundle", content=b"bundle")
    for phases in ([{"percent": 50}, {"percent": 20}, {"percent": 100}], [{"percent": 10}, {"percent": 60}]):
        answer = fleet.admin.post("/api/v1/rollouts", json={"rollout_id": "bad-phases", "bundle": "agent-9.8.bundle",
                                                             "version": "9.8", "phases": phases})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "phases"]
    assert fleet.admin.get("/api/v1/rollouts").json() == []


def _bundle(key: Ed25519PrivateKey, version: str) -> bytes:
    """A signed bundle as images/bundle.py lays it out (a model bundle without payload files)."""
    manifest = Manifest(kind="model", version=version, files=[])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("manifest.json", manifest.canonical()), ("manifest.sig", sign(manifest.canonical(), key))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_uploads_verified_against_the_configured_keys(tmp_path: Path) -> None:
    """Bad input tried: a bundle signed by another key, bytes that are no bundle: 422 saying why,
    nothing kept. With no key configured (the module's fleet) uploads are not checked."""
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = tmp_path / "bundle-signing.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db")
    config = config.model_copy(update={"bundles": BundlesConfig(public_keys=[public])})
    with TestClient(create_app(config)) as admin:
        ensure_admin(fleet_state(admin.app).sessions)
        login_as(admin, ADMIN_NAME, ADMIN_PASSWORD)
        good = admin.put("/api/v1/bundles/sohoa-model-1.3.bundle", content=_bundle(key, "1.3"))
        assert good.status_code == 201, good.text
        assert (good.json()["signature_checked"], good.json()["kind"], good.json()["version"]) == (True, "model", "1.3")
        forged = admin.put("/api/v1/bundles/sohoa-model-1.4.bundle", content=_bundle(other, "1.4"))
        assert forged.status_code == 422 and "signature" in forged.json()["detail"], forged.text
        junk = admin.put("/api/v1/bundles/sohoa-model-1.5.bundle", content=b"not a tar archive at all")
        assert junk.status_code == 422 and "not a bundle archive" in junk.json()["detail"], junk.text
        assert [b["name"] for b in admin.get("/api/v1/bundles").json()] == ["sohoa-model-1.3.bundle"]
        assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["sohoa-model-1.3.bundle",
                                                                          "sohoa-model-1.3.bundle.sha256"]
