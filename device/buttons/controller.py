"""The clerk's buttons driving the dossier session, and the session driving the light and buzzer.

* **Scan**: no dossier open -> open an unnamed walk-in dossier (the receipt slip's QR on a scanned
  page names it) and scan a batch; dossier open -> scan another batch into it. Ignored while a
  scan or a close is running: a held or bouncing button never starts a second scan.
* **Done** (short press, acted on at release): close the dossier (PDFs built, handed to the
  outbox); on the "closed" light, Done again starts the next dossier from idle.
* **Done** held for ``long_press_s``: cancel the dossier (a running scan stops at the next page).
* **Rescan**: scan the last page again and replace it (a failed rescan keeps the old page).
* **Rescan** with no dossier open: result mode for the next dossier (two blue flashes, then the
  light stays blue): the next Scan opens it as the procedure's result, its documents named
  ``<code>-KQ<n>``. Rescan again (or Done) before scanning goes back to the dossier's documents.

Anything pressed where it makes no sense gets the short ``invalid`` blip and changes nothing.

A staff card among the sheets signs its clerk in (two short beeps) or, the one signed in, out
(one long beep); it is never a page. Refused (not this device's card, signing in locked, or
another clerk's dossier with pages open: finish it with Done first): two long red beeps.

>>> from gpiozero.pins.mock import MockFactory     # doctest: +SKIP
>>> config = ButtonsConfig(enabled=True)                                      # doctest: +SKIP
>>> buttons = CounterButtons(config, session, pages_for, pin_factory=MockFactory())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Self

from device.buttons.config import ButtonsConfig
from device.buttons.feedback import StatusPanel
from device.dossier.model import SessionEvent
from device.dossier.numbering import DocumentKind
from device.dossier.session import DossierSession
from device.dossier.sources import PageSource
from device.errors import SohoaError
from protocol.messages import Operator

log = logging.getLogger(__name__)

ScanKind = Literal["scan", "rescan"]
PagesFor = Callable[[ScanKind], PageSource]
"""Gives the page source for a Scan (a feeder batch) or a Rescan (one page)."""

_STOP = object()


class CounterButtons:
    """Scan / Done / Rescan buttons on gpiozero pins, wired to a :class:`DossierSession` and a
    :class:`StatusPanel`. Button callbacks only hand work to one worker thread, so gpiozero's
    threads stay free to notice a long press while a scan runs.

    :attr:`history` records what each press did (``"scan"``, ``"ignored rescan: idle"``...)."""

    def __init__(
        self,
        config: ButtonsConfig,
        session: DossierSession,
        pages_for: PagesFor,
        *,
        panel: StatusPanel | None = None,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
        operator: Callable[[], Operator | None] | None = None,
    ) -> None:
        """``operator``: who is signed in at the counter now (``device.operators.SignIn``), recorded
        on each dossier the Scan button opens."""
        from gpiozero import Button

        self.config = config
        self.session = session
        self.pages_for = pages_for
        self._operator = operator
        self._clock = clock
        self._own_panel = panel is None
        self.panel = panel or StatusPanel(config, pin_factory=pin_factory)
        self.history: list[str] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: queue.Queue[object] = queue.Queue()
        self._working = False
        self._refusing: str | None = None
        self._last_press: dict[str, float] = {}
        self._held = False
        self._result_armed = False
        self._done_down: float | None = None
        self._buttons: list[Any] = []
        try:
            # bounce_time stays None: the mock pins ignore it, so debouncing is done here, the same
            # way on a real Pi and in tests.
            self.scan_button = self._add(Button(config.scan_pin, pull_up=config.pull_up, pin_factory=pin_factory))
            self.done_button = self._add(Button(
                config.done_pin, pull_up=config.pull_up, hold_time=config.long_press_s, hold_repeat=False,
                pin_factory=pin_factory,
            ))
            self.rescan_button = self._add(Button(config.rescan_pin, pull_up=config.pull_up, pin_factory=pin_factory))
        except Exception:
            self._release_devices()
            raise
        self.scan_button.when_pressed = lambda: self._pressed("scan")
        self.rescan_button.when_pressed = lambda: self._pressed("rescan")
        self.done_button.when_pressed = lambda: self._pressed("done")
        self.done_button.when_held = self._done_held
        self.done_button.when_released = self._done_released
        self._worker = threading.Thread(target=self._work, name="counter-buttons", daemon=True)
        self._worker.start()
        session.add_listener(self._on_session)
        self._show_state(session.snapshot().state, session.snapshot().fault)

    def _add(self, button: Any) -> Any:
        self._buttons.append(button)
        return button

    # -- what the agent tells us ---------------------------------------------------------------

    def refuse_scans(self, reason: str | None) -> None:
        """Refuse Scan and Rescan (e.g. ``"disk_full"``) until called with None; the light shows
        attention meanwhile."""
        with self._lock:
            self._refusing = reason
        self.panel.set_attention(reason, slot="refuse")

    def set_offline(self, offline: bool) -> None:
        self.panel.set_offline(offline)

    # -- presses -------------------------------------------------------------------------------

    def _debounced(self, name: str) -> bool:
        """True when this edge is contact bounce (too close to the last accepted press)."""
        now = self._clock()
        with self._lock:
            last = self._last_press.get(name)
            if last is not None and now - last < self.config.debounce_s:
                return True
            self._last_press[name] = now
            return False

    def _pressed(self, name: Literal["scan", "rescan", "done"]) -> None:
        if name == "done":
            if not self._debounced("done"):
                with self._lock:
                    self._held = False
                    self._done_down = self._clock()
            return
        if self._debounced(name):
            return
        self._submit(name)

    def _done_released(self) -> None:
        now = self._clock()
        with self._lock:
            held, self._held = self._held, False
            down, self._done_down = self._done_down, None
        if held or down is None:
            return  # the long press already cancelled; or a bounce
        if now - down < self.config.debounce_s:
            return  # a release bouncing right after the press
        self._submit("done")

    def _done_held(self) -> None:
        with self._lock:
            if self._done_down is None:
                return
            self._held = True
        state = self.session.state
        if state in ("open", "capturing", "review"):
            self._note("cancel")
            self.session.cancel()  # at once, not behind a running scan
        else:
            self._note(f"ignored cancel: {state}")
            self.panel.show("invalid")

    def _submit(self, action: Literal["scan", "rescan", "done"]) -> None:
        with self._lock:
            busy = self._working or not self._jobs.empty()
            refusing = self._refusing
        state = self.session.state
        if busy or state in ("capturing", "closing"):
            self._note(f"ignored {action}: busy")  # no repeat, no queueing behind a scan
            return
        if refusing is not None and action != "done":
            self._note(f"refused {action}: {refusing}")
            self.panel.show("invalid")
            return
        with self._lock:
            self._working = True
        self._jobs.put(action)

    def wait_idle(self, timeout: float) -> None:
        """Block until no button action is running; :class:`TimeoutError` after ``timeout``."""
        with self._idle:
            if not self._idle.wait_for(lambda: not self._working and self._jobs.empty(), timeout):
                raise TimeoutError(f"a button action is still running after {timeout}s")

    def _note(self, what: str) -> None:
        with self._lock:
            self.history.append(what)
        log.debug("button: %s", what)

    # -- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                self._do(job)  # type: ignore[arg-type]
            except SohoaError as exc:
                # the session refused (state changed meanwhile) or the outbox is full: the state
                # is unchanged or safely back in review, and the light says so
                log.info("button action %s not done: %s", job, type(exc).__name__)
                self.panel.show("invalid")
            except Exception:
                log.exception("button action %s failed", job)
                self.panel.show("invalid")
            finally:
                with self._lock:
                    self._working = False
                    self._idle.notify_all()

    def _do(self, action: Literal["scan", "rescan", "done"]) -> None:
        state = self.session.state
        if action == "scan":
            if state in ("idle", "closed"):
                with self._lock:
                    kind: DocumentKind = "result" if self._result_armed else "component"
                    self._result_armed = False
                self.session.open(kind=kind, operator=self._operator() if self._operator is not None else None)
            self._note("scan")
            self.session.capture(self.pages_for("scan"))
        elif action == "rescan":
            if state in ("idle", "closed"):
                self._arm_result(not self._result_armed)
                return
            if state not in ("open", "review") or not self.session.snapshot().pages:
                self._note(f"ignored rescan: {state}")
                self.panel.show("invalid")
                return
            self._note("rescan")
            self.session.capture(self.pages_for("rescan"), replace_last=True)
        elif self._result_armed:
            self._arm_result(False)
        elif state in ("open", "review"):
            self._note("done")
            self.session.finish()
        elif state == "closed":
            self._note("next")
            self.session.reset()
        else:
            self._note(f"ignored done: {state}")
            self.panel.show("invalid")

    def _arm_result(self, armed: bool) -> None:
        with self._lock:
            self._result_armed = armed
        self._note("result armed" if armed else "result disarmed")
        if armed:
            self.panel.show("result_armed")
        self.panel.set_result(armed or self.session.snapshot().kind == "result")

    # -- what the session tells us -------------------------------------------------------------

    def _on_session(self, event: SessionEvent) -> None:
        if event.kind in ("page_added", "page_replaced") and event.page is not None:
            self.panel.show("page_good" if event.page.ok else "page_rejected")
        elif event.kind == "closed":
            self.panel.show("dossier_closed")
        elif event.kind == "cancelled" and event.previous != "idle":
            self.panel.show("cancelled")
        elif event.kind == "staff_card" and event.card is not None:
            self.panel.show("signed_in" if event.card == "signed_in"
                            else "signed_out" if event.card == "signed_out" else "card_refused")
        self._show_state(event.state, event.snapshot.fault, event.snapshot.kind)

    def _show_state(self, state: str, fault: str | None, kind: str = "component") -> None:
        with self._lock:
            armed = self._result_armed
        self.panel.set_result(armed or (kind == "result" and state not in ("idle", "closed")))
        self.panel.set_busy(state in ("capturing", "closing"))
        self.panel.set_attention(fault, slot="session")

    # -- life cycle ----------------------------------------------------------------------------

    def _release_devices(self) -> None:
        for button in self._buttons:
            button.close()
        self._buttons = []

    def close(self) -> None:
        """Stop listening to the buttons and the session; put the light out (if we made it)."""
        self.session.remove_listener(self._on_session)
        self._release_devices()
        self._jobs.put(_STOP)
        self._worker.join(10)
        if self._own_panel:
            self.panel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
