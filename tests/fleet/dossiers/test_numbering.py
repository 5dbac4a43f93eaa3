"""Document numbers at the fleet, on SQLite and PostgreSQL, through the real ingest writer: two
devices that numbered parts of one dossier offline both wrote ``<code>.1``; a dossier reopened
on one device goes on numbering; a result numbers apart from the components. The fleet keeps
the first and renames the second to the dossier's next free number (the device's name kept),
and a redelivered event, before or after, changes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from fastapi.testclient import TestClient

from protocol.messages import DossierClosed, DossierDocument, Message, decode, new_id
from tests.fleet.dossiers.conftest import at, load_units, send, status

CODE = "000.00.00.H99-260110-0042"


def _closed(device: str, names: list[str], hour: int, session_id: str | None = None) -> DossierClosed:
    docs = [DossierDocument(sha256=hashlib.sha256(f"{device}/{name}/{hour}".encode()).hexdigest(), name=name,
                            pages=1, size=100) for name in names]
    return DossierClosed(device_id=device, ts=at("2026-01-10", hour), dossier_code=CODE,
                         session_id=session_id or new_id(), documents=docs)


def _documents(client: TestClient) -> list[tuple[str, str | None, str]]:
    detail = client.get(f"/api/v1/dossiers/{CODE}").json()
    return sorted((d["name"], d["device_name"], d["device_id"]) for d in detail["documents"])


def test_two_devices_and_a_reopening_get_distinct_numbers(api: TestClient) -> None:
    load_units(api)
    send(api, [status("kiosk-a", "99001", at("2026-01-01")), status("kiosk-b", "99001", at("2026-01-01"))])
    first_a = _closed("kiosk-a", [f"{CODE}.1.pdf", f"{CODE}.2.pdf"], 1)
    first_b = _closed("kiosk-b", [f"{CODE}.1.pdf"], 2)  # offline, it could not know kiosk-a's numbers
    send(api, [first_a, first_b])
    assert _documents(api) == [(f"{CODE}.1.pdf", None, "kiosk-a"), (f"{CODE}.2.pdf", None, "kiosk-a"),
                               (f"{CODE}.3.pdf", f"{CODE}.1.pdf", "kiosk-b")]

    # kiosk-a reopens the dossier (a supplement): its book goes on from 3, taken meanwhile by kiosk-b
    reopened = _closed("kiosk-a", [f"{CODE}.3.pdf"], 3)
    result = _closed("kiosk-b", [f"{CODE}-KQ1.pdf"], 4)
    send(api, [reopened, result])
    assert _documents(api) == [(f"{CODE}-KQ1.pdf", None, "kiosk-b"), (f"{CODE}.1.pdf", None, "kiosk-a"),
                               (f"{CODE}.2.pdf", None, "kiosk-a"), (f"{CODE}.3.pdf", f"{CODE}.1.pdf", "kiosk-b"),
                               (f"{CODE}.4.pdf", f"{CODE}.3.pdf", "kiosk-a")]
    kinds = {d["name"]: (d["kind"], d["sequence"]) for d in api.get(f"/api/v1/dossiers/{CODE}").json()["documents"]}
    assert kinds[f"{CODE}-KQ1.pdf"] == ("result", 1) and kinds[f"{CODE}.4.pdf"] == ("component", 4)

    # at-least-once delivery: everything again, in another order, twice in one batch
    send(api, [result, first_b, reopened, first_a, first_b])
    assert len(_documents(api)) == 5


def test_two_devices_colliding_in_one_batch(api: TestClient) -> None:
    """Both devices' events arrive in the same ingest batch: the second is renamed all the same."""
    load_units(api)
    send(api, [status("kiosk-a", "99001", at("2026-01-01")), status("kiosk-b", "99001", at("2026-01-01"))])
    send(api, [_closed("kiosk-a", [f"{CODE}-KQ1.pdf"], 1), _closed("kiosk-b", [f"{CODE}-KQ1.pdf"], 1)])
    assert _documents(api) == [(f"{CODE}-KQ1.pdf", None, "kiosk-a"), (f"{CODE}-KQ2.pdf", f"{CODE}-KQ1.pdf", "kiosk-b")]


def test_from_two_device_sessions_to_the_registry(api: TestClient, tmp_path: Path) -> None:
    """The device side for real: two counters' sessions, each with its number book on disk and
    its outbox, digitize parts of one dossier offline, one of them twice (a reopening, after a
    restart), then a result; their outboxes' events go through the ingest writer."""
    from device.delivery.outbox import Outbox
    from device.dossier.numbering import NumberBook
    from device.dossier.session import DossierSession
    from device.dossier.sink import OutboxSink
    from tests.device.dossier.doubles import ListSource, RecordingPdf, page_image

    load_units(api)
    send(api, [status("kiosk-a", "99001", at("2026-01-01")), status("kiosk-b", "99001", at("2026-01-01"))])

    def visit(device: str, value: int, kind: Literal["component", "result"] = "component") -> list[Message]:
        outbox = Outbox(tmp_path / device / f"outbox-{value}")
        try:
            session = DossierSession(sink=OutboxSink(outbox, device), pdf_builder=RecordingPdf(),
                                     numbering=NumberBook(tmp_path / device / "dossier_numbers.json"))
            with session:  # a new session each visit: the agent restarted in between
                session.open(CODE, kind=kind)
                session.capture(ListSource([page_image(value)]))
                session.finish()
            return [decode(m.topic, m.payload).message for m in outbox.pending_messages()]
        finally:
            outbox.close()

    send(api, visit("kiosk-a", 1) + visit("kiosk-b", 2))
    send(api, visit("kiosk-a", 3) + visit("kiosk-b", 4, "result"))
    names = [(n, d, dev) for n, d, dev in _documents(api)]
    assert names == [(f"{CODE}-KQ1.pdf", None, "kiosk-b"), (f"{CODE}.1.pdf", None, "kiosk-a"),
                     (f"{CODE}.2.pdf", f"{CODE}.1.pdf", "kiosk-b"), (f"{CODE}.3.pdf", f"{CODE}.2.pdf", "kiosk-a")]
    pages = api.get(f"/api/v1/dossiers/{CODE}").json()["pages"]
    assert sorted(p["dossier_code"] for p in pages) == [CODE, CODE, CODE, f"{CODE}-KQ1"]
