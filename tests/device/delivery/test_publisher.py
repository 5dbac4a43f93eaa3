"""The publisher's window and acknowledgement logic against a scripted link, no broker: at most
``window`` messages unacknowledged, a message leaves the outbox only on its PUBACK, an early
PUBACK (before ``publish`` returned) is matched, and a reconnect sends again what was not
acknowledged. The real outbox (SQLite in a temporary directory) holds the messages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.errors import OutboxFull
from protocol.messages import AgentStarted, CommandAck, Stored, decode, encode
from protocol.topics import Channel

DEVICE = "kiosk-0001"


class ScriptedLink:
    """Records every publish and answers with paho-like message ids; ``connected`` as the test says.
    ``ack_inside`` calls the publisher's PUBACK callback before ``publish`` returns (paho's network
    thread can be that fast)."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.sent: list[tuple[int, str, bytes]] = []
        self.ack_inside: Publisher | None = None
        self.refuse = False

    def publish(self, topic_name: str, payload: bytes, qos: int = 1) -> int | None:
        assert qos == 1
        if self.refuse or not self.connected.is_set():
            return None
        mid = len(self.sent) + 1
        self.sent.append((mid, topic_name, payload))
        if self.ack_inside is not None:
            self.ack_inside.on_published(mid)
        return mid

    def ids(self) -> list[str]:
        return [decode(topic_name, payload).message.id for _, topic_name, payload in self.sent]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path) as box:
        yield box


def _store(publisher: Publisher, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        message = AgentStarted(device_id=DEVICE, agent_version="0.1.0")
        publisher.emit(message)
        ids.append(message.id)
    return ids


def _connected(outbox: Outbox, window: int) -> tuple[Publisher, ScriptedLink]:
    link = ScriptedLink()
    publisher = Publisher(outbox, DEVICE, window=window, link=link)
    link.connected.set()
    publisher.on_connect()
    return publisher, link


def test_nothing_goes_while_disconnected(outbox: Outbox) -> None:
    link = ScriptedLink()
    publisher = Publisher(outbox, DEVICE, window=4, link=link)
    _store(publisher, 3)
    assert not publisher.step()
    assert link.sent == [] and outbox.depth().events == 3


def test_the_window_bounds_what_is_unacknowledged(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=3)
    ids = _store(publisher, 7)
    assert publisher.step()
    assert link.ids() == ids[:3] and publisher.inflight() == 3
    assert not publisher.step(), "a full window sends nothing more"
    publisher.on_published(2)  # acknowledgements may come out of order
    assert publisher.step()
    assert link.ids() == ids[:4] and publisher.inflight() == 3
    assert outbox.depth().events == 6, "only the acknowledged message left the outbox"
    for mid in (1, 3, 4):
        publisher.on_published(mid)
    assert publisher.step()
    assert link.ids() == ids[:7]
    for mid in (5, 6, 7):
        publisher.on_published(mid)
    assert not publisher.step()
    assert outbox.depth().events == 0 and publisher.inflight() == 0 and publisher.published == 7


def test_a_message_leaves_the_outbox_only_on_its_puback(outbox: Outbox) -> None:
    publisher, _link = _connected(outbox, window=8)
    first, _second = _store(publisher, 2)
    publisher.step()
    publisher.on_published(2)
    publisher.step()
    assert [m.id for m in outbox.pending_messages()] == [first]


def test_an_early_puback_is_matched(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=2)
    link.ack_inside = publisher
    _store(publisher, 5)
    while publisher.step():
        pass
    publisher.step()  # forget the last acknowledgements
    assert len(link.sent) == 5 and publisher.inflight() == 0 and outbox.depth().events == 0


def test_a_reconnect_sends_again_what_was_not_acknowledged(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=4)
    ids = _store(publisher, 3)
    publisher.step()
    publisher.on_published(1)
    link.connected.clear()  # the broker went away before acknowledging the other two
    assert not publisher.step()
    link.connected.set()
    publisher.on_connect()
    assert publisher.step()
    assert link.ids() == [*ids, ids[1], ids[2]], "duplicates are fine (receivers deduplicate), losses are not"
    assert publisher.inflight() == 2


def test_a_refused_publish_keeps_the_message(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=4)
    _store(publisher, 2)
    link.refuse = True
    assert not publisher.step()
    link.refuse = False
    assert publisher.step() and len(link.sent) == 2


def test_emit_on_a_full_disk_sends_directly(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input: no room for the message; it goes without a copy (best effort), while connected."""
    publisher, link = _connected(outbox, window=4)

    def full(*_args: object) -> None:
        raise OutboxFull("free disk space below the floor")

    monkeypatch.setattr(outbox, "add_message", full)
    ack = CommandAck(device_id=DEVICE, command_id="c-0000001", state="rejected", detail="x")
    publisher.emit(ack, Channel.CMD_ACK)
    assert link.ids() == [ack.id] and link.sent[0][1] == f"sohoa/v1/{DEVICE}/cmd/ack"


def test_run_publishes_until_stopped(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=4)
    link.ack_inside = publisher
    thread = threading.Thread(target=publisher.run)
    thread.start()
    try:
        _store(publisher, 3)
        with outbox.changed:
            assert outbox.changed.wait_for(lambda: outbox.depth().events == 0, timeout=10)
    finally:
        publisher.stop()
        thread.join(10)
    assert not thread.is_alive() and len(link.sent) == 3


def test_drain_waits_for_the_outbox_to_empty_while_connected(outbox: Outbox) -> None:
    publisher, link = _connected(outbox, window=4)
    link.ack_inside = publisher
    _store(publisher, 2)
    thread = threading.Thread(target=publisher.run)
    thread.start()
    try:
        publisher.drain(10)
        assert outbox.depth().events == 0
    finally:
        publisher.stop()
        thread.join(10)
    link.connected.clear()
    _store(publisher, 1)
    publisher.drain(10)  # disconnected: returns at once, the message stays for later
    assert outbox.depth().events == 1


# --- end-to-end: the fleet's `stored` confirmation ------------------------------------------------


class Clock:
    """The publisher's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _confirming(outbox: Outbox, clock: Clock, window: int = 8) -> tuple[Publisher, ScriptedLink]:
    link = ScriptedLink()
    publisher = Publisher(outbox, DEVICE, window=window, link=link, stored_timeout_s=10.0,
                          stored_timeout_max_s=40.0, stored_forget_s=3600.0, clock=clock)
    link.connected.set()
    publisher.on_connect()
    return publisher, link


def _stored(*ids: str, device: str = DEVICE) -> tuple[str, bytes]:
    return f"sohoa/v1/{device}/stored", encode(Stored(device_id=device, ids=list(ids)))


def _puback_all(publisher: Publisher, link: ScriptedLink) -> None:
    for mid, _, _ in link.sent:
        publisher.on_published(mid)


def test_a_fleet_that_never_confirms_leaves_the_broker_in_charge(outbox: Outbox) -> None:
    """Degrading: without a `stored` ever heard, a PUBACK forgets the message as it always did."""
    publisher, link = _confirming(outbox, Clock())
    _store(publisher, 2)
    publisher.step()
    _puback_all(publisher, link)
    publisher.step()
    assert outbox.depth().events == 0 and not publisher.waits_for_fleet()


def test_once_the_fleet_confirms_a_message_stays_until_it_is_confirmed(outbox: Outbox) -> None:
    clock = Clock()
    publisher, link = _confirming(outbox, clock)
    first = _store(publisher, 1)
    publisher.step()
    assert publisher.on_stored(*_stored(first[0]))
    publisher.step()
    assert outbox.depth().events == 0 and publisher.waits_for_fleet()
    ids = _store(publisher, 3)
    publisher.step()
    _puback_all(publisher, link)
    publisher.step()
    assert outbox.depth().events == 3, "the broker took them; the fleet has not said it holds them"
    publisher.on_stored(*_stored(ids[0], ids[2]))
    publisher.step()
    assert [m.id for m in outbox.pending_messages()] == [ids[1]]
    assert publisher.resent == 0 and len(link.sent) == 4


def test_an_unconfirmed_message_goes_again_after_a_jittered_doubling_wait(outbox: Outbox) -> None:
    clock = Clock()
    publisher, link = _confirming(outbox, clock)
    publisher.on_stored(*_stored("0" * 36))  # the fleet confirms (something else): it is heard
    (lost,) = _store(publisher, 1)
    publisher.step()
    _puback_all(publisher, link)
    publisher.step()
    waits = []
    for _ in range(4):
        sent = len(link.sent)
        clock.now += 7.4  # under the shortest first wait (10 s - 25%)
        publisher.step()
        start = clock.now - 7.4
        while len(link.sent) == sent:
            clock.now += 0.5
            publisher.step()
            assert clock.now - start < 100, "never sent again"
        waits.append(clock.now - start)
        publisher.on_published(link.sent[-1][0])
        publisher.step()
    assert link.ids() == [lost] * 5 and publisher.resent == 4
    assert 7.5 <= waits[0] <= 13 and 15 <= waits[1] <= 25.5, waits
    assert all(30 <= w <= 50.5 for w in waits[2:]), f"capped at stored_timeout_max_s ±25%: {waits}"
    publisher.on_stored(*_stored(lost))
    publisher.step()
    assert outbox.depth().events == 0


def test_a_reconnect_sends_every_unconfirmed_message_again_soon(outbox: Outbox) -> None:
    """The broker may have restarted without what it had taken: after a reconnect, everything
    unconfirmed goes again within a quarter of the timeout, not after the whole timeout."""
    clock = Clock()
    publisher, link = _confirming(outbox, clock)
    publisher.on_stored(*_stored("0" * 36))
    ids = _store(publisher, 3)
    publisher.step()
    _puback_all(publisher, link)
    publisher.step()
    link.connected.clear()
    publisher.step()
    link.connected.set()
    publisher.on_connect()
    publisher.step()
    clock.now += 2.5
    publisher.step()
    assert sorted(link.ids()[3:]) == sorted(ids) and publisher.resent == 3


def test_a_confirmation_hastens_what_the_broker_took_long_before(outbox: Outbox) -> None:
    """A message sent again and again while the fleet was away waits longer each time; when the
    fleet confirms a message the broker took more than a timeout after it, the old one was lost
    (a forgotten shared subscription, say): it goes within a quarter of the timeout, not at the
    end of its long wait."""
    clock = Clock()
    publisher, link = _confirming(outbox, clock)
    publisher.on_stored(*_stored("0" * 36))
    (old,) = _store(publisher, 1)
    publisher.step()
    while len(link.sent) < 3:  # sent, then sent again twice: its next wait is 30-50 s
        publisher.on_published(link.sent[-1][0])
        publisher.step()
        clock.now += 1.0
        publisher.step()
    publisher.on_published(link.sent[-1][0])
    publisher.step()
    clock.now += 11.0
    (new,) = _store(publisher, 1)
    publisher.step()
    publisher.on_published(link.sent[-1][0])
    publisher.step()
    publisher.on_stored(*_stored(new))
    publisher.step()
    assert link.ids() == [old, old, old, new]
    clock.now += 2.5
    publisher.step()
    assert link.ids() == [old, old, old, new, old]


def test_confirmations_for_another_device_or_broken_are_refused(outbox: Outbox) -> None:
    """Bad input: a confirmation on another device's topic, one naming another device, non-JSON."""
    publisher, _link = _confirming(outbox, Clock())
    topic_name, payload = _stored("0" * 36, device="kiosk-0002")
    assert not publisher.on_stored(topic_name, payload)
    assert not publisher.on_stored(f"sohoa/v1/{DEVICE}/stored", payload)
    assert not publisher.on_stored(f"sohoa/v1/{DEVICE}/stored", b"{not json")
    publisher.step()
    assert not publisher.waits_for_fleet()


def test_a_fleet_silent_too_long_is_no_longer_waited_for(outbox: Outbox) -> None:
    """Degrading the other way: a fleet rolled back to a version that never confirms. After
    stored_forget_s the broker's word suffices again, and what it took is forgotten."""
    clock = Clock()
    publisher, link = _confirming(outbox, clock)
    publisher.on_stored(*_stored("0" * 36))
    _store(publisher, 2)
    publisher.step()
    _puback_all(publisher, link)
    publisher.step()
    assert outbox.depth().events == 2
    clock.now += 3601
    publisher.step()
    assert outbox.depth().events == 0 and not publisher.waits_for_fleet()
    assert Publisher(outbox, DEVICE, window=4).waits_for_fleet() is False, "remembered in the outbox"


def test_the_fleet_being_heard_is_remembered_across_restarts(tmp_path: Path) -> None:
    with Outbox(tmp_path) as box:
        publisher, _link = _confirming(box, Clock())
        publisher.on_stored(*_stored("0" * 36))
        publisher.step()
    with Outbox(tmp_path) as box:
        assert Publisher(box, DEVICE, window=4, clock=Clock()).waits_for_fleet()


def test_an_outbox_from_before_confirmations_is_upgraded(tmp_path: Path) -> None:
    """An agent upgraded over an outbox whose messages table lacks the delivery columns keeps its
    messages and sends them."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
               " topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)")
    message = AgentStarted(device_id=DEVICE, agent_version="0.0.9")
    db.execute("INSERT INTO messages (id, topic, payload, created) VALUES (?, ?, ?, 0)",
               (message.id, f"sohoa/v1/{DEVICE}/event", encode(message)))
    db.commit()
    db.close()
    with Outbox(tmp_path) as box:
        publisher, link = _connected(box, window=4)
        assert publisher.step() and link.ids() == [message.id]
