"""The status light and buzzer: what happened, said without a screen.

==================  ===================================  ===============================
Pattern             Light                                Buzzer
==================  ===================================  ===============================
ready               steady green                         silent
offline             steady yellow (working, not linked)  silent
scanning            blue blinking                        silent
result              steady blue (the next or open        silent
                    dossier is a result, -KQ<n>)
result_armed        two short blue flashes               two short beeps
page_good           one green flash                      one short beep
page_rejected       three red flashes                    three long beeps
dossier_closed      long green, two short green          one long beep
cancelled           long magenta                         one long beep, then silence
invalid             one short red blip                   one short beep
signed_in           two green flashes, then long green   two short beeps
signed_out          long green, then one short green     one long beep
card_refused        two long red flashes                 two long beeps
attention           red blinking until cleared           three short beeps when it starts
==================  ===================================  ===============================

``attention`` covers a jam, an empty feeder, an unplugged scanner or camera, a full disk: the
agent or the session sets it and it stays until cleared. ``page_rejected`` and ``attention`` are
red but differ in rhythm and sound (three long beeps vs three short ones then a slow blink).

>>> from gpiozero.pins.mock import MockFactory        # doctest: +SKIP
>>> with StatusPanel(ButtonsConfig(), pin_factory=MockFactory()) as panel:  # doctest: +SKIP
...     panel.show("page_good")
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

from device.buttons.config import ButtonsConfig

log = logging.getLogger(__name__)

Color = tuple[int, int, int]
OFF: Color = (0, 0, 0)
RED: Color = (1, 0, 0)
GREEN: Color = (0, 1, 0)
BLUE: Color = (0, 0, 1)
YELLOW: Color = (1, 1, 0)
MAGENTA: Color = (1, 0, 1)

Transient = Literal["page_good", "page_rejected", "dossier_closed", "cancelled", "invalid", "attention",
                    "result_armed", "signed_in", "signed_out", "card_refused"]
Base = Literal["ready", "offline", "scanning", "attention", "result"]


@dataclass(frozen=True, slots=True)
class Step:
    color: Color
    buzz: bool
    seconds: float


TRANSIENTS: dict[Transient, tuple[Step, ...]] = {
    "page_good": (Step(OFF, False, 0.05), Step(GREEN, True, 0.08), Step(GREEN, False, 0.12), Step(OFF, False, 0.05)),
    "page_rejected": (Step(RED, True, 0.25), Step(OFF, False, 0.1)) * 3,
    "dossier_closed": (
        Step(GREEN, True, 0.6), Step(OFF, False, 0.1), Step(GREEN, False, 0.15), Step(OFF, False, 0.1),
        Step(GREEN, False, 0.15), Step(OFF, False, 0.1),
    ),
    "cancelled": (Step(MAGENTA, True, 0.8), Step(MAGENTA, False, 0.4), Step(OFF, False, 0.1)),
    "invalid": (Step(RED, True, 0.06), Step(OFF, False, 0.1)),
    "attention": (Step(RED, True, 0.08), Step(OFF, False, 0.08)) * 3,
    "result_armed": (Step(BLUE, True, 0.1), Step(OFF, False, 0.1)) * 2,
    "signed_in": (Step(GREEN, True, 0.1), Step(OFF, False, 0.1)) * 2 + (Step(GREEN, False, 0.6), Step(OFF, False, 0.1)),
    "signed_out": (Step(GREEN, True, 0.6), Step(OFF, False, 0.1), Step(GREEN, False, 0.1), Step(OFF, False, 0.1)),
    "card_refused": (Step(RED, True, 0.4), Step(OFF, False, 0.15)) * 2,
}
"""Played once, in order, over whatever the light was showing."""

BASES: dict[Base, tuple[Step, ...]] = {
    "ready": (Step(GREEN, False, 3600.0),),
    "offline": (Step(YELLOW, False, 3600.0),),
    "scanning": (Step(BLUE, False, 0.25), Step(OFF, False, 0.25)),
    "result": (Step(BLUE, False, 3600.0),),
    "attention": (Step(RED, False, 0.5), Step(OFF, False, 0.5)),
}
"""Shown, repeating, when no transient is playing (a new state interrupts them at once)."""


class StatusPanel:
    """The RGB status light and the buzzer, played by one thread so patterns never overlap.

    The base pattern follows :meth:`set_busy`, :meth:`set_result`, :meth:`set_offline` and
    :meth:`set_attention` (attention wins, then scanning, then result, then offline, then ready);
    :meth:`show` queues a one-off pattern. :attr:`history` lists every pattern in the order it
    started (tests read it, and wait on it with :meth:`wait_for`)."""

    def __init__(self, config: ButtonsConfig, *, pin_factory: Any = None) -> None:
        from gpiozero import RGBLED, Buzzer

        self.config = config
        self._scale = config.feedback_time_scale
        self.led = RGBLED(
            config.led_red_pin,
            config.led_green_pin,
            config.led_blue_pin,
            active_high=config.led_active_high,
            pwm=config.led_pwm,
            pin_factory=pin_factory,
        )
        self.buzzer: Any = None
        try:
            if config.buzzer_pin is not None:
                self.buzzer = Buzzer(config.buzzer_pin, active_high=config.buzzer_active_high, pin_factory=pin_factory)
        except Exception:
            self.led.close()
            raise
        self.history: list[str] = []
        self._cond = threading.Condition()
        self._queue: deque[Transient] = deque()
        self._busy = False
        self._result = False
        self._offline = False
        self._attention: dict[str, str] = {}
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-panel", daemon=True)
        self._thread.start()

    # -- inputs --------------------------------------------------------------------------------

    def show(self, pattern: Transient) -> None:
        """Queue a one-off pattern. Page-good flashes coalesce (a fast feeder would queue dozens)."""
        with self._cond:
            if pattern == "page_good" and self._queue and self._queue[-1] == "page_good":
                return
            self._queue.append(pattern)
            self._cond.notify_all()

    def set_busy(self, busy: bool) -> None:
        """Scanning (or building PDFs): blue blinking."""
        self._set(lambda: setattr(self, "_busy", busy))

    def set_result(self, result: bool) -> None:
        """Result mode (the next or the open dossier is the procedure's result): steady blue."""
        self._set(lambda: setattr(self, "_result", result))

    def set_offline(self, offline: bool) -> None:
        """No link to the fleet: pages are kept and sent later; yellow instead of green."""
        self._set(lambda: setattr(self, "_offline", offline))

    def set_attention(self, reason: str | None, *, slot: str = "agent") -> None:
        """Something needs a person (jam, disk full, unplugged). Each ``slot`` (the agent, the
        session) sets or clears its own reason; the light stays red while any is set. A new
        reason also beeps."""
        with self._cond:
            previous = self._attention.get(slot)
            if reason is None:
                self._attention.pop(slot, None)
            else:
                self._attention[slot] = reason
                if reason != previous:
                    self._queue.append("attention")
            self._cond.notify_all()

    @property
    def attention(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(self._attention.values())

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """Block until ``predicate(history)`` holds; :class:`TimeoutError` after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.history), timeout):
                raise TimeoutError(f"panel history {self.history[-8:]} after {timeout}s")
            return list(self.history)

    def idle(self, timeout: float) -> None:
        """Wait until no one-off pattern is queued or playing."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._queue and not self._playing, timeout):
                raise TimeoutError("the panel is still playing")

    # -- the player ----------------------------------------------------------------------------

    _playing = False

    def _set(self, change: Callable[[], None]) -> None:
        with self._cond:
            change()
            self._cond.notify_all()

    def _base(self) -> Base:
        if self._attention:
            return "attention"
        if self._busy:
            return "scanning"
        if self._result:
            return "result"
        return "offline" if self._offline else "ready"

    def _apply(self, step: Step) -> None:
        self.led.color = step.color
        if self.buzzer is not None:
            self.buzzer.value = step.buzz

    def _run(self) -> None:
        shown: Base | None = None
        index = 0
        while not self._closing.is_set():
            transient: Transient | None = None
            changed = False
            with self._cond:
                if self._queue:
                    transient = self._queue.popleft()
                    self._playing = True
                    self.history.append(transient)
                    self._cond.notify_all()
                else:
                    base = self._base()
                    if base != shown:
                        shown, index, changed = base, 0, True
            if transient is not None:
                self._play(transient)
                shown = None  # redraw the base after a transient
                continue
            assert shown is not None
            steps = BASES[shown]
            step = steps[index % len(steps)]
            index += 1
            self._apply(step)
            if changed:  # recorded once the light shows it, so a test reading the pins sees it too
                with self._cond:
                    self.history.append(shown)
                    self._cond.notify_all()
            self._hold_base(shown, step.seconds * self._scale)

    def _play(self, transient: Transient) -> None:
        try:
            for step in TRANSIENTS[transient]:
                self._apply(step)
                if self._closing.wait(step.seconds * self._scale):
                    break
        finally:
            self._apply(Step(OFF, False, 0))
            with self._cond:
                self._playing = False
                self._cond.notify_all()

    def _hold_base(self, shown: Base, seconds: float) -> None:
        """Keep a base step up for ``seconds``, or less when something new is to be shown."""
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._queue) or self._base() != shown or self._closing.is_set(), seconds
            )

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the player, put the light and buzzer out, release the pins."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(5)
        try:
            self._apply(Step(OFF, False, 0))
        finally:
            self.led.close()
            if self.buzzer is not None:
                self.buzzer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
