"""The clerk's buttons on gpiozero MockFactory pins: the whole flow, bounce and held buttons,
long press to cancel, buttons pressed in every wrong order, faults and the light/buzzer history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from device.buttons import ButtonsConfig, CounterButtons, StatusPanel
from device.dossier.session import DossierSession
from device.errors import ScannerJammed
from tests.device.buttons.conftest import FakeClock
from tests.device.dossier.doubles import ListSource, RecordingSink, ScriptedPipeline, Verdict, page_image

CODE = "000.00.12.H10-260101-0042"
T = 5.0  # every wait is bounded


class Rig:
    """Session + buttons + panel on mock pins, and a queue of page sources the Scan and Rescan
    buttons take from in order."""

    def __init__(self, factory: Any, config: ButtonsConfig, clock: FakeClock) -> None:
        self.factory = factory
        self.config = config
        self.clock = clock
        self.sink = RecordingSink()
        self.pipeline = ScriptedPipeline()
        self.session = DossierSession(processor=self.pipeline, sink=self.sink, pdf_builder=None)
        self.sources: list[ListSource] = []
        self.asked: list[str] = []
        self.buttons = CounterButtons(config, self.session, self._pages_for, pin_factory=factory, clock=clock)
        self.panel: StatusPanel = self.buttons.panel

    def _pages_for(self, kind: str) -> ListSource:
        self.asked.append(kind)
        return self.sources.pop(0)

    def pin(self, name: str) -> Any:
        return self.factory.pin(getattr(self.config, name))

    def press(self, name: str) -> None:
        """One clean press and release, the clock moved past the bounce window around it."""
        pin = self.pin(f"{name}_pin")
        self.clock.advance()
        pin.drive_low()
        self.clock.advance()
        pin.drive_high()

    def settle(self) -> None:
        self.buttons.wait_idle(T)

    def close(self) -> None:
        self.buttons.close()
        self.session.close()


@pytest.fixture
def rig(mock_factory: Any, buttons_config: ButtonsConfig, clock: FakeClock) -> Iterator[Rig]:
    r = Rig(mock_factory, buttons_config, clock)
    try:
        yield r
    finally:
        r.close()


def high_count(pin: Any) -> int:
    return sum(1 for s in pin.states if s.state)


def test_scan_rescan_done_next(rig: Rig) -> None:
    """A walk-in dossier named by its receipt slip, one rejected page rescanned, closed, next."""
    rig.pipeline.verdicts = {1: Verdict(receipt=CODE), 3: Verdict(ok=False)}
    first = ListSource([page_image(v) for v in (1, 2, 3)], gate_after=0)
    rig.sources = [first, ListSource([page_image(4)])]
    rig.panel.wait_for(lambda h: h[-1:] == ["ready"], T)
    for pin in ("led_red_pin", "led_green_pin", "led_blue_pin", "buzzer_pin"):
        rig.pin(pin).clear_states()
    rig.press("scan")
    assert first.reached.wait(T)
    rig.panel.wait_for(lambda h: h[-1:] == ["scanning"], T)  # the feeder is pulling the first sheet
    first.gate.set()
    rig.settle()
    snap = rig.session.snapshot()
    assert snap.state == "review" and snap.dossier_code == CODE and [p.ok for p in snap.pages] == [True, True, False]
    rig.panel.wait_for(lambda h: "page_rejected" in h, T)
    rig.press("rescan")
    rig.settle()
    snap = rig.session.snapshot()
    assert [p.ok for p in snap.pages] == [True, True, True] and rig.asked == ["scan", "rescan"]
    rig.press("done")
    rig.settle()
    assert rig.session.state == "closed" and len(rig.sink.dossiers) == 1
    assert len(rig.sink.dossiers[0].pages) == 3 and rig.sink.dossiers[0].dossier_code == CODE
    history = rig.panel.wait_for(lambda h: "dossier_closed" in h and h[-1] == "ready", T)
    assert history.index("scanning") < history.index("page_rejected") < history.index("dossier_closed")
    assert history.count("page_rejected") == 1 and "page_good" in history
    rig.press("done")  # "next": back to idle for the next dossier
    rig.settle()
    assert rig.session.snapshot().state == "idle"
    assert rig.buttons.history == ["scan", "rescan", "done", "next"]
    rig.panel.idle(T)
    # the outputs really moved: blue blinked while scanning, red for the rejected page, the buzzer beeped
    assert high_count(rig.pin("led_blue_pin")) >= 1
    assert high_count(rig.pin("led_red_pin")) >= 3
    assert high_count(rig.pin("buzzer_pin")) >= 3 + 1 + 1  # rejected x3, good, closed
    assert rig.pin("led_green_pin").state is True and rig.pin("led_red_pin").state is False


def test_bounce_and_held_scan_do_not_repeat(rig: Rig) -> None:
    """Contact bounce (low/high/low/high within the debounce window) and a Scan held down through
    the whole batch start exactly one scan; a fresh press afterwards starts the next one."""
    rig.sources = [ListSource([page_image(1), page_image(2)]), ListSource([page_image(3)])]
    pin = rig.pin("scan_pin")
    rig.clock.advance()
    pin.drive_low()
    pin.drive_high()  # bounce: the clock has not moved
    pin.drive_low()
    rig.settle()
    assert rig.session.state == "review" and len(rig.session.snapshot().pages) == 2
    assert rig.buttons.history == ["scan"] and rig.asked == ["scan"]
    rig.clock.advance(0.01)
    pin.drive_high()
    pin.drive_low()  # 10 ms after the accepted press: still bounce
    rig.settle()
    assert rig.asked == ["scan"]
    rig.clock.advance(1.0)
    pin.drive_high()
    pin.drive_low()  # a real second press
    rig.settle()
    assert rig.asked == ["scan", "scan"] and len(rig.session.snapshot().pages) == 3
    pin.drive_high()


def test_long_press_done_cancels_running_scan(rig: Rig) -> None:
    """Holding Done while the feeder runs stops the batch at the next page and drops the dossier;
    the release after the long press does not also close anything."""
    source = ListSource([page_image(v) for v in range(1, 6)], gate_after=2)
    rig.sources = [source]
    rig.press("scan")
    assert source.reached.wait(T)
    done = rig.pin("done_pin")
    rig.clock.advance()
    done.drive_low()
    assert source.stopped.wait(T)  # the hold fires after 0.15 s and the source is told at once
    source.gate.set()
    rig.session.wait_for_state("idle", timeout=T)
    rig.clock.advance()
    done.drive_high()
    rig.settle()
    assert "cancel" in rig.buttons.history and "done" not in rig.buttons.history
    assert rig.sink.dossiers == [] and rig.session.snapshot().pages == ()
    rig.panel.wait_for(lambda h: "cancelled" in h, T)


def test_buttons_in_wrong_orders(rig: Rig) -> None:
    """Done and a long Done in idle; Scan, Rescan and Done while a scan runs; Rescan on an
    empty dossier: each is ignored with the 'invalid' blip or silently while busy, and nothing
    changes (no page lost, nothing sent). Rescan in idle arms result mode and again disarms it."""
    rig.press("done")
    rig.settle()
    rig.press("rescan")
    rig.settle()
    rig.press("rescan")
    rig.settle()
    assert rig.session.state == "idle"
    done = rig.pin("done_pin")
    rig.clock.advance()
    done.drive_low()
    rig.panel.wait_for(lambda h: h.count("invalid") >= 2, T)  # the long press in idle
    rig.clock.advance()
    done.drive_high()
    source = ListSource([page_image(1), page_image(2), page_image(3)], gate_after=1)
    rig.sources = [source]
    rig.press("scan")
    assert source.reached.wait(T)
    rig.press("scan")
    rig.press("rescan")
    rig.press("done")
    source.gate.set()
    rig.settle()
    assert rig.session.snapshot().state == "review" and len(rig.session.snapshot().pages) == 3
    assert rig.buttons.history == [
        "ignored done: idle", "result armed", "result disarmed", "ignored cancel: idle", "scan",
        "ignored scan: busy", "ignored rescan: busy", "ignored done: busy",
    ]
    assert rig.asked == ["scan"] and rig.sink.dossiers == []
    assert rig.session.snapshot().kind == "component"  # disarmed before the scan


def test_result_mode_from_the_buttons(rig: Rig) -> None:
    """Rescan with no dossier open arms result mode (two blue flashes, then steady blue); Scan
    opens the dossier as a result; Done closes it as <code>-KQ<n>; the next dossier is a
    component again. Done while armed disarms without doing anything else."""
    rig.pipeline.verdicts = {1: Verdict(receipt=CODE, doctype="decision"), 2: Verdict(doctype="decision")}
    rig.sources = [ListSource([page_image(1), page_image(2)])]
    rig.panel.wait_for(lambda h: h[-1:] == ["ready"], T)
    rig.pin("led_blue_pin").clear_states()
    rig.press("rescan")
    rig.settle()
    rig.panel.wait_for(lambda h: "result_armed" in h and h[-1] == "result", T)
    assert rig.pin("led_blue_pin").state is True and rig.pin("led_green_pin").state is False  # steady blue
    rig.press("scan")
    rig.settle()
    snap = rig.session.snapshot()
    assert snap.kind == "result" and snap.dossier_code == CODE and snap.state == "review"
    rig.press("done")
    rig.settle()
    closed = rig.sink.dossiers[0]
    assert closed.kind == "result" and {closed.page_code(p.page_id) for p in closed.pages} == {f"{CODE}-KQ1"}
    rig.panel.wait_for(lambda h: h[-1:] == ["ready"], T)  # closed: the blue light is out
    rig.press("done")  # next
    rig.settle()
    rig.press("rescan")
    rig.settle()
    rig.press("done")  # changed their mind: disarmed
    rig.settle()
    assert rig.buttons.history == ["result armed", "scan", "done", "next", "result armed", "result disarmed"]
    rig.panel.wait_for(lambda h: h[-1:] == ["ready"], T)
    assert rig.session.state == "idle"


def test_jam_shows_attention_and_keeps_pages(rig: Rig) -> None:
    """A jam after two pages: attention (red blinking, three short beeps), the two pages kept; the
    next good scan clears it. The agent's disk-full refusal and offline state show too."""
    rig.sources = [ListSource([page_image(1), page_image(2), page_image(3)], fail_after=2,
                              fault=ScannerJammed("paper jam")), ListSource([page_image(4)])]
    rig.press("scan")
    rig.settle()
    snap = rig.session.snapshot()
    assert snap.fault == "scanner_jammed" and len(snap.pages) == 2
    rig.panel.wait_for(lambda h: h[-1:] == ["attention"] and h.count("attention") >= 2, T)
    assert rig.panel.attention == ("scanner_jammed",)
    rig.press("scan")
    rig.settle()
    assert rig.session.snapshot().fault is None and len(rig.session.snapshot().pages) == 3
    rig.panel.wait_for(lambda h: h[-1:] == ["ready"], T)
    rig.buttons.refuse_scans("disk_full")
    rig.press("scan")
    rig.settle()
    assert rig.buttons.history[-1] == "refused scan: disk_full" and len(rig.session.snapshot().pages) == 3
    rig.buttons.refuse_scans(None)
    rig.buttons.set_offline(True)
    rig.panel.wait_for(lambda h: h[-1:] == ["offline"], T)
    red, green = rig.pin("led_red_pin"), rig.pin("led_green_pin")
    rig.panel.idle(T)
    assert red.state is True and green.state is True  # yellow: working, not linked
    rig.press("done")
    rig.settle()
    assert len(rig.sink.dossiers) == 1 and len(rig.sink.dossiers[0].pages) == 3


def test_full_disk_at_done_keeps_dossier(rig: Rig) -> None:
    """Done when the outbox is full: the dossier stays in review with its pages, attention shows;
    Done again after space is freed closes it."""
    rig.sources = [ListSource([page_image(1)])]
    rig.press("scan")
    rig.settle()
    rig.sink.full = True
    rig.press("done")
    rig.settle()
    assert rig.session.snapshot().state == "review" and rig.session.snapshot().fault == "disk_full"
    rig.panel.wait_for(lambda h: "attention" in h, T)
    rig.sink.full = False
    rig.press("done")
    rig.settle()
    assert rig.session.state == "closed" and len(rig.sink.dossiers[0].pages) == 1


def test_config_rejects_bad_pins() -> None:
    """The same pin twice (17 and 'GPIO17'), an unknown key: config errors, not runtime surprises."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pins used twice"):
        ButtonsConfig(scan_pin=17, done_pin="GPIO17")
    with pytest.raises(ValidationError):
        ButtonsConfig.model_validate({"scan_pn": 4})
    ButtonsConfig(buzzer_pin=None)


def test_pins_released_on_close(mock_factory: Any, buttons_config: ButtonsConfig) -> None:
    """close() gives every pin back: the same pins can be claimed again at once."""
    session = DossierSession(pdf_builder=None)
    with CounterButtons(buttons_config, session, lambda kind: ListSource([]), pin_factory=mock_factory):
        pass
    with CounterButtons(buttons_config, session, lambda kind: ListSource([]), pin_factory=mock_factory) as again:
        assert again.panel.wait_for(lambda h: "ready" in h, T)
    session.close()


def test_importing_touches_no_hardware_library() -> None:
    """A fresh interpreter importing the buttons, kiosk, camera and session modules has not loaded
    gpiozero (pin probing) nor picamera2 (camera probing)."""
    import subprocess
    import sys

    code = ("import sys, device.buttons, device.kiosk, device.capture.camera, device.capture.fake_camera, "
            "device.dossier.session; print(sorted(m for m in ('gpiozero', 'picamera2', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
