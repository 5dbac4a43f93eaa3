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
from protocol.messages import AgentStarted, CommandAck, decode
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
