"""The ingest's database half (:class:`fleet.ingest.Writer`) on SQLite and PostgreSQL, without a
broker: what its driver-level statements must keep doing (issue 2's fast path, issue 8's kept
dossiers, issue 6's enrolled units and revoked devices)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.auth.models import AuditEntry
from fleet.enroll.models import EnrollmentRow
from fleet.ingest import Incoming, Writer
from fleet.metrics import FleetMetrics
from fleet.models import Device, Event, Page, StoredFile, TelemetrySample
from fleet.progress.digitized import rebuild
from fleet.progress.models import DigitizedDossier
from protocol.messages import Message, PageCaptured, encode
from protocol.topics import Channel, topic
from tests.fleet.messages import page_event, status, telemetry

AT = datetime(2026, 1, 20, 3, 0, tzinfo=UTC)


def _incoming(*messages: Message) -> list[Incoming]:
    return [Incoming(topic(m.device_id, Channel.EVENT if isinstance(m, PageCaptured) else Channel.STATUS), encode(m))
            for m in messages]


def _page(device: str, page_id: str, dossier: str, captured_at: datetime) -> PageCaptured:
    event = page_event(device, page_id.encode(), dossier_code=dossier, captured_at=captured_at)
    return event.model_copy(update={"page": event.page.model_copy(update={"page_id": page_id})})


def test_redelivered_events_are_counted_once_each(sessions: sessionmaker[Session]) -> None:
    """Bad input tried: a committed batch of 150 pages delivered again whole, with one new event
    and one event twice inside the redelivered batch. The duplicate counter (the insert's row
    count, not a lookup) says exactly how many events were already stored, on both databases,
    and every row is there once."""
    metrics = FleetMetrics()
    writer = Writer(sessions, metrics)
    first = [page_event("kiosk-0001", i.to_bytes(2, "big"), sequence=i + 1) for i in range(150)]
    new = page_event("kiosk-0002", b"new")
    assert writer.write(_incoming(*first)) == 150
    assert metrics.registry.get_sample_value("sohoa_fleet_messages_duplicate_total") == 0
    assert writer.write(_incoming(*first, new, first[0])) == 152
    assert metrics.registry.get_sample_value("sohoa_fleet_messages_duplicate_total") == 150
    with sessions() as session:
        assert sorted(session.scalars(select(Event.id))) == sorted(e.id for e in [*first, new])
        assert sorted(session.scalars(select(Page.page_id))) == sorted(e.page.page_id for e in [*first, new])


def test_kept_dossier_moves_only_to_an_earlier_page_ties_by_page_id(sessions: sessionmaker[Session]) -> None:
    """Faults tried: pages of one dossier captured at the same instant arriving in the wrong page-id
    order across batches, a later page (smaller page id) alone, a redelivery, and an earlier page last. The kept
    row is always the earliest page (ties: the smaller page id), equal to one rebuilt from pages."""
    writer = Writer(sessions, FleetMetrics())

    def kept() -> tuple[str, str]:
        with sessions() as session:
            row = session.get_one(DigitizedDossier, "D1")
            return row.page_id, row.device_id

    assert writer.write(_incoming(_page("kiosk-0002", "page-bbbb", "D1", AT))) == 1
    assert kept() == ("page-bbbb", "kiosk-0002")
    tie = _page("kiosk-0001", "page-aaaa", "D1", AT)
    assert writer.write(_incoming(tie, _page("kiosk-0003", "page-cccc", "D1", AT))) == 2
    assert kept() == ("page-aaaa", "kiosk-0001")
    assert writer.write(_incoming(_page("kiosk-0003", "page-0000", "D1", AT.replace(hour=4)))) == 1
    assert kept() == ("page-aaaa", "kiosk-0001")  # a smaller page id, but later
    assert writer.write(_incoming(tie)) == 1
    assert kept() == ("page-aaaa", "kiosk-0001")
    assert writer.write(_incoming(_page("kiosk-0004", "page-zzzz", "D1", AT.replace(hour=2)))) == 1
    assert kept() == ("page-zzzz", "kiosk-0004")
    with sessions() as session:
        before = session.execute(select(DigitizedDossier.__table__)).all()
        rebuild(session.connection())
        assert session.execute(select(DigitizedDossier.__table__)).all() == before
        session.rollback()


def test_an_enrolled_device_keeps_its_enrollments_unit(sessions: sessionmaker[Session]) -> None:
    """Bad input tried: status messages claiming unit 26734 from a device enrolled (accepted) in
    99001 and from one whose enrollment is only pending. The accepted enrollment's unit wins and
    goes on its pages; the pending one does not count."""
    with sessions.begin() as session:
        for device, state in (("kiosk-0001", "accepted"), ("kiosk-0002", "pending")):
            session.add(EnrollmentRow(device_id=device, unit_code="99001", token_id="t", public_key_sha256="0" * 64,
                                      state=state, requested_at=AT, csr_pem="-"))
    writer = Writer(sessions, FleetMetrics())
    pages = [page_event(d, d.encode(), dossier_code=f"U-{d}") for d in ("kiosk-0001", "kiosk-0002", "kiosk-0003")]
    messages = [status(d, "online") for d in ("kiosk-0001", "kiosk-0002", "kiosk-0003")]
    assert writer.write(_incoming(*messages, *pages)) == 6
    with sessions() as session:
        assert dict(session.execute(select(Device.id, Device.unit_code)).all()) == {
            "kiosk-0001": "99001", "kiosk-0002": "26734", "kiosk-0003": "26734"}
        assert dict(session.execute(select(Page.device_id, Page.unit_code)).all()) == {
            "kiosk-0001": "99001", "kiosk-0002": "26734", "kiosk-0003": "26734"}
        assert dict(session.execute(select(DigitizedDossier.device_id, DigitizedDossier.unit_code)).all()) \
            == {"kiosk-0001": "99001", "kiosk-0002": "26734", "kiosk-0003": "26734"}


def test_a_revoked_device_still_connected_is_refused_at_ingest(sessions: sessionmaker[Session]) -> None:
    """Bad input tried: a kiosk revoked while its MQTT connection stays up (the broker checks the
    certificate only at the handshake) keeps publishing a status, a page event and telemetry, in
    a batch with a healthy kiosk's page. Nothing of the revoked kiosk is stored or changes its
    row; the healthy page is stored; the refusals are counted by reason and audited, once a minute
    per device however many batches it sends."""
    with sessions.begin() as session:
        session.add(Device(id="kiosk-0001", unit_code="99001", first_seen=AT, last_seen=AT, status="unknown",
                           revoked_at=AT))
    metrics = FleetMetrics()
    writer = Writer(sessions, metrics)
    revoked = [status("kiosk-0001", "online"), page_event("kiosk-0001", b"stolen", dossier_code="R-1")]
    sample = telemetry("kiosk-0001")
    healthy = page_event("kiosk-0002", b"fine", dossier_code="H-1")
    batch = [*_incoming(*revoked, healthy), Incoming(topic("kiosk-0001", Channel.TELEMETRY), encode(sample))]
    assert writer.write(batch) == 1
    assert writer.write(_incoming(page_event("kiosk-0001", b"again", dossier_code="R-2"))) == 0
    rejected = metrics.registry.get_sample_value("sohoa_fleet_messages_rejected_total", {"reason": "revoked"})
    assert rejected == 4
    with sessions() as session:
        assert list(session.scalars(select(Page.device_id))) == ["kiosk-0002"]
        assert list(session.scalars(select(Event.device_id))) == ["kiosk-0002"]
        assert session.scalars(select(TelemetrySample)).first() is None
        device = session.get_one(Device, "kiosk-0001")
        assert (device.status, device.last_seen.replace(tzinfo=UTC), device.unit_code) == ("unknown", AT, "99001")
        audits = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "ingest.revoked_refused")))
        assert [(a.actor, a.actor_kind, a.unit_code, a.outcome, a.target) for a in audits] == [
            ("kiosk-0001", "device", "99001", "refused", "3 message(s)")]


def test_a_page_may_name_only_a_file_its_own_device_uploaded(sessions: sessionmaker[Session]) -> None:
    """Bad input: kiosk-b (another unit) sends a page event naming a file kiosk-a uploaded (its
    hash learnt from HEAD /files). The page is refused and counted (``foreign_file``), the event
    itself kept; kiosk-a's own page of that file, and a page whose file is not held yet, go in."""
    metrics = FleetMetrics()
    writer = Writer(sessions, metrics)
    mine = page_event("kiosk-a", b"page of unit A")
    with sessions.begin() as session:
        session.add(StoredFile(sha256=mine.page.sha256, size=mine.page.size, content_type="image/png",
                               stored_at=AT, uploaded_by="kiosk-a"))
    theirs = page_event("kiosk-b", b"page of unit A")
    assert theirs.page.sha256 == mine.page.sha256
    early = page_event("kiosk-b", b"not uploaded yet")
    writer.write(_incoming(theirs, early, mine))
    with sessions() as session:
        pages = {(p.device_id, p.sha256) for p in session.scalars(select(Page))}
        assert session.get(Event, theirs.id) is not None
    assert pages == {("kiosk-a", mine.page.sha256), ("kiosk-b", early.page.sha256)}
    assert metrics.registry.get_sample_value("sohoa_fleet_messages_rejected_total", {"reason": "foreign_file"}) == 1
