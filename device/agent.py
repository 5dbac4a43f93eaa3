"""The device agent: capture -> outbox -> MQTT and HTTP, with telemetry and commands.

Threads, each with one job:

* **scan worker**: the only thread that touches the capture sources (SANE is not thread-safe);
  runs batches from a queue, stores every page in the outbox before acknowledging it. The SANE
  driver itself runs in a child process (``scanner.isolate``), so a backend crash is a
  ``scanner_gone`` event, not the end of the agent.
* **publisher**: sends outbox messages QoS 1 while connected and deletes them on PUBACK.
* **uploader**: PUTs page files to the fleet, deletes them after 200/201.
* **inbox**: decodes ``cmd`` and ``config/desired`` messages; bad ones are refused and counted.
* **ticker**: telemetry, timed scans, folder polling, USB watching.
* **local API**: ``POST /scan`` and ``GET /status`` on loopback, for the kiosk screen and tests.

Every page the scan worker stores first goes through the page pipeline (geometry, quality,
codes, document type from the shipped TFLite classifier); its ``page_captured`` event carries the
verdict. A pipeline error on one page stores the page without a verdict: a counter scanner never
loses a page to the pipeline. A receipt-slip QR read on such a page opens (or names) a dossier.

The dossier session (:class:`~device.session.DossierSession`) is driven by the clerk's buttons
(``buttons.enabled``, gpiozero) and the kiosk screen (``kiosk.enabled``, served on loopback);
both share the scanner with the agent through :attr:`Agent.scanner_lock`. Closing a dossier
builds its PDFs and queues pages and PDFs in the outbox.

>>> with Agent(load("device.yaml")) as agent:  # doctest: +SKIP
...     agent.request_scan(ScanRequest(source="adf")).wait(60)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import re
import signal
import sqlite3
import subprocess
import tarfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ValidationError

from device import __version__
from device.capture.base import CapturedPage, CaptureSource, ScanRequest
from device.capture.folder import FolderSource
from device.capture.sane import IsolatedSaneSource, SaneSource
from device.config import AgentConfig, FakeScannerConfig, SaneScannerConfig, load
from device.durable import atomic_write
from device.enroll import CertificateRevoked, IdentityKeeper, IdentityStatus, RenewalFailed, fleet_base
from device.errors import CaptureError, ImageRejected, NoScanner, OutboxFull, ScannerFault, ScannerNoDocs
from device.inference.doctype import FallbackClassifier, load_classifier_or_fallback
from device.inference.pipeline import PagePipeline
from device.link import MqttLink
from device.outbox import Outbox
from device.session import (
    CapturePages,
    DossierPdfBuilder,
    DossierSession,
    OutboxSink,
    PageSource,
    PageVerdict,
    SessionError,
    SessionEvent,
    verdict_of,
)
from device.settings import SettingsStore
from device.systemd import SystemdNotifier, WatchdogFeeder, agent_liveness
from device.telemetry import TelemetryCollector
from device.update_errors import BundleRefused
from device.updater import Outcome, Updater, offer_from
from device.uploader import Uploader
from protocol.commands import ForceArgs, NoArgs, TestScanArgs, error_fields
from protocol.errors import ProtocolError
from protocol.messages import (
    AgentStarted,
    BatchFinished,
    BatchStarted,
    CameraInfo,
    Command,
    CommandAck,
    CommandState,
    ConfigDesired,
    DiskLow,
    Message,
    Page,
    PageCaptured,
    QualityVerdict,
    ScannerInfo,
    ScannerPlug,
    ScannerState,
    ScanRefused,
    UpdateProgress,
    decode,
    encode,
    new_id,
)
from protocol.messages import ScannerFault as ScannerFaultEvent
from protocol.settings import RemoteSettings
from protocol.topics import Channel, topic
from provisioning.errors import KeyFileError
from provisioning.identity import DeviceIdentity

if TYPE_CHECKING:
    from device.buttons import CounterButtons
    from device.capture.camera import Camera
    from device.kiosk import KioskServer

log = logging.getLogger(__name__)

FREED_AFTER_FULL = 1024 * 1024
"""After a write met ENOSPC, scans resume once this much more space is free."""

_FAULT_STATE: dict[str, ScannerState] = {
    "scanner_jammed": "jammed",
    "scanner_cover_open": "cover_open",
    "scanner_no_docs": "no_docs",
    "scanner_io_error": "error",
    "scanner_gone": "absent",
}


def make_source(config: AgentConfig) -> CaptureSource | None:
    """The scanner backend the config selects (hardware libraries load on first use)."""
    scanner = config.scanner
    if isinstance(scanner, SaneScannerConfig):
        return IsolatedSaneSource(scanner) if scanner.isolate else SaneSource(scanner)
    if isinstance(scanner, FakeScannerConfig):
        from device.capture.fake import FakeSource

        return FakeSource(
            pages=scanner.pages, width=scanner.width, height=scanner.height, dpi=scanner.dpi, noise=scanner.noise
        )
    return None


class _LogRing(logging.Handler):
    """The agent's recent log lines, for ``collect_logs`` (logs never hold personal data)."""

    def __init__(self, size: int) -> None:
        super().__init__(logging.INFO)
        self._lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except Exception:  # a bad log call must not break the caller
            self.handleError(record)

    def lines(self) -> list[str]:
        return list(self._lines)


@dataclass
class ScanJob:
    """One batch to run, and how it ended (``done`` is set then)."""

    kind: Literal["scanner", "folder", "probe", "recover"]
    request: ScanRequest = field(default_factory=ScanRequest)
    command_id: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "pending"
    batch_id: str = field(default_factory=new_id)
    pages: int = 0
    detail: str | None = None

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def summary(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "batch_id": self.batch_id, "pages": self.pages, "detail": self.detail}


class _Publisher:
    """Moves outbox messages to the broker, keeping at most ``window`` unacknowledged."""

    def __init__(self, outbox: Outbox, window: int) -> None:
        self.outbox = outbox
        self.window = window
        self.link: MqttLink | None = None
        self._lock = threading.Lock()
        self._inflight: dict[int, str] = {}
        self._early: dict[int, float] = {}
        self._acked: list[str] = []
        self._last_seq = 0
        self._reset = True
        self._stop = threading.Event()
        self.published = 0

    def on_connect(self) -> None:
        with self._lock:
            self._reset = True
        self._wake()

    def on_published(self, mid: int) -> None:
        with self._lock:
            message_id = self._inflight.pop(mid, None)
            if message_id is None:
                self._early[mid] = time.monotonic()
            else:
                self._acked.append(message_id)
        self._wake()

    def _wake(self) -> None:
        with self.outbox.changed:
            self.outbox.changed.notify_all()

    def _flush_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            self.outbox.remove_messages(acked)
        except sqlite3.OperationalError as exc:
            # Deleting needs a little space in the WAL: on a full disk, keep the ids and try
            # again (the messages may go twice meanwhile; receivers deduplicate).
            with self._lock:
                self._acked.extend(acked)
            raise OutboxFull(f"cannot forget acknowledged messages: {exc}") from None

    def step(self) -> bool:
        """Publish what fits in the window; True when something was sent."""
        link = self.link
        try:
            self._flush_acks()
        except OutboxFull as exc:
            # Keep publishing: forgetting can wait for space, delivering should not.
            log.debug("publisher: %s", exc)
        if link is None or not link.connected.is_set():
            return False
        with self._lock:
            if self._reset:
                # After a (re)connect everything not acknowledged goes again: duplicates are
                # fine (receivers deduplicate on ids), losses are not.
                self._reset = False
                self._inflight.clear()
                self._last_seq = 0
            room = self.window - len(self._inflight)
            now = time.monotonic()
            self._early = {m: t for m, t in self._early.items() if now - t < 5}
            after = self._last_seq
        if room <= 0:
            return False
        sent = False
        for item in self.outbox.pending_messages(after, room):
            mid = link.publish(item.topic, item.payload, qos=1)
            if mid is None:
                break
            sent = True
            self.published += 1
            with self._lock:
                self._last_seq = max(self._last_seq, item.seq)
                if self._early.pop(mid, None) is not None:
                    self._acked.append(item.id)
                else:
                    self._inflight[mid] = item.id
        return sent

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.step():
                    continue
            except (OutboxFull, sqlite3.Error) as exc:
                log.warning("publisher: %s; retrying", exc)
                self._stop.wait(1.0)
                continue
            with self.outbox.changed:
                if not self._stop.is_set():
                    self.outbox.changed.wait(0.5)
        with contextlib.suppress(OutboxFull):
            self._flush_acks()

    def stop(self) -> None:
        self._stop.set()
        self._wake()


class Agent:
    """The running agent; :meth:`start` it, :meth:`close` it (or use ``with``)."""

    def __init__(
        self,
        config: AgentConfig,
        source: CaptureSource | None = None,
        folder: FolderSource | None = None,
        *,
        pin_factory: Any = None,
    ) -> None:
        """``pin_factory``: gpiozero's pin factory for the counter buttons (tests pass a
        ``MockFactory``); None uses gpiozero's default (the Pi's real pins)."""
        self.config = config
        self._local_config = config
        self.pin_factory = pin_factory
        self.device_id = config.device_id
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state_dir, config.min_free_bytes)
        self.source = source if source is not None else make_source(config)
        self.folder = folder if folder is not None else (FolderSource(config.folder) if config.folder else None)
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.scanner_state: ScannerState = "absent" if self.source is None else "ready"
        self._stop = threading.Event()
        self._jobs: queue.Queue[ScanJob | None] = queue.Queue()
        self._busy = threading.Lock()
        self.scanner_lock = self._busy
        """Held while the agent drives its capture source; a dossier session that shares the
        scanner passes it to ``CapturePages(lock=...)`` so the two never scan at once."""
        self._current: ScanJob | None = None
        self._queue_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._full_at: int | None = None
        self.batches: deque[dict[str, Any]] = deque(maxlen=50)
        self.publisher = _Publisher(self.outbox, config.broker.max_inflight)
        self.identity = DeviceIdentity(config.identity.dir, self.device_id) if config.identity is not None else None
        self.identity_status = IdentityStatus()
        self._shown_identity: tuple[str | None, bool, bool] | None = None
        self.keeper: IdentityKeeper | None = None
        self.link = MqttLink(
            self.device_id,
            config.broker,
            __version__,
            on_message=self._on_message,
            unit=config.unit,
            on_connect=self._on_connect,
            on_published=self.publisher.on_published,
            identity=self.identity,
            on_revoked=self._on_revoked,
        )
        self.publisher.link = self.link
        self.fleet_url = config.fleet_url or (config.enrollment.fleet_url if config.enrollment else None)
        """The fleet's URL from the config; an enrolled device prefers the one its enrollment answer named."""
        self.uploader = (
            Uploader(self.outbox, self.fleet_url, self.device_id, config.upload, identity=self.identity,
                     on_revoked=self._on_revoked)
            # Enrolled (or enrolling) devices upload to the fleet they enrolled with unless told not to.
            if config.upload.enabled and (self.fleet_url is not None or self.identity is not None) else None
        )
        self.telemetry = TelemetryCollector(
            self.device_id, self.outbox, scanner=self.scanner_info, accepting=lambda: not self.outbox.low()
        )
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        self.local_port: int | None = None
        # The dossier front ends, made in start():
        self.pipeline: PagePipeline | None = None
        self.model_error: str | None = None
        self.model_version: str | None = None
        self.session: DossierSession | None = None
        self.buttons: CounterButtons | None = None
        self.camera: Camera | None = None
        self.camera_state: tuple[str, str | None] | None = None
        self.kiosk: KioskServer | None = None
        self._code_re = re.compile(config.session.dossier_code_pattern)
        self._shown_offline: bool | None = None
        self._shown_refusal: str | None = None
        self._sink: OutboxSink | None = None
        self._held: dict[str, set[str]] = {}
        """Page ids of the open dossier held in the outbox, by session id."""
        self.log_ring = _LogRing(config.commands.log_lines)
        self.restart_hook: Callable[[], None] | None = None
        """Set by :func:`run_main`: ends the process with ``commands.restart_exit_code`` so systemd
        starts it again. None (an agent embedded in tests): ``restart_agent`` is rejected."""
        self.settings = SettingsStore(
            config.state_dir / "settings.json",
            device_id=self.device_id,
            apply=self.apply_settings,
            available_models=self._installed_models,
        )
        self._restore_given()
        self.config_version: int | None = self.settings.version
        self.updater: Updater | None = None
        self._last_update: UpdateProgress | None = None
        if config.updater is not None:
            self.updater = Updater(
                config.updater,
                device_id=self.device_id,
                current_version=__version__,
                report=self._report_update,
                restart=self._restart_for_update,
                health_checks=self._health_checks(),
                stop=self._stop,
                fleet_url=self.fleet_url,
            )

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        logging.getLogger().addHandler(self.log_ring)
        held = self.outbox.deliver_held()
        if held:
            # A crash (power cut, kill -9) left a dossier open: its pages were held on disk.
            log.warning("an open dossier was interrupted by a restart: its %s page(s) are sent as single pages",
                        held)
        for batch_id, _source, pages in self.outbox.open_batches():
            # A crash (power cut, kill -9) left this batch open: its stored pages are safe.
            log.warning("a batch was interrupted by a restart after %s page(s)", pages)
            self.emit(BatchFinished(device_id=self.device_id, batch_id=batch_id, pages=pages, outcome="interrupted"))
            self.outbox.batch_finished(batch_id)
        self.emit(AgentStarted(device_id=self.device_id, agent_version=__version__))
        self._start_pipeline()
        if self.settings.version is not None:
            # The last good settings the fleet set survive restarts (defaults until it sets any).
            try:
                self.apply_settings(self.settings.current)
            except Exception as exc:  # e.g. the local config changed under them: local wins
                log.error("stored settings v%s no longer apply (%s); running the local config",
                          self.settings.version, exc)
        self._start_session()
        self._open_camera()  # before the link: the first telemetry report already has its state
        if self.identity is None:
            self._start_delivery()
        else:  # enroll first if needed (scans are kept meanwhile), then connect, then renew daily
            self.keeper = self._keeper()
            self._spawn("identity", self.keeper.run)
        self._spawn("publisher", self.publisher.run)
        self._spawn("scan-worker", self._scan_worker)
        self._spawn("inbox", self._inbox_worker)
        self._spawn("ticker", self._ticker)
        if self.updater is not None:
            self._spawn("update-resume", self._resume_update)
        if self.config.local_api.enabled:
            self._start_local_api()
        self._start_front_ends()
        if self.source is not None:
            self._jobs.put(ScanJob("probe"))
        if self.config.triggers.scan_at_start and self.source is not None:
            self.request_scan(ScanRequest(), quiet=True)
        log.info("agent %s started as %s (unit %s)", __version__, self.device_id, self.config.unit)
        return self

    def _start_pipeline(self) -> None:
        """The page pipeline with the document-type classifier. A model that cannot be used is a
        clear error now (logged, shown in ``GET /status``) and every page is typed ``other``."""
        classifier = load_classifier_or_fallback(self.config.doctype)
        if isinstance(classifier, FallbackClassifier):
            self.model_error = classifier.reason
            log.error("cannot use the document-type model (%s); scanning goes on, pages are typed 'other'",
                      classifier.reason)
        self.model_version = classifier.version
        self.pipeline = PagePipeline(self.config.pipeline, classifier=classifier)

    def _start_session(self) -> None:
        cfg = self.config
        self._sink = OutboxSink(self.outbox, cfg.device_id, drop_blank_pages=cfg.session.drop_blank_pages)
        self.session = DossierSession(
            cfg.session,
            processor=self.pipeline,
            sink=self._sink,
            pdf_builder=DossierPdfBuilder(cfg.pdf, unit=cfg.unit, device=cfg.device_id),
        )
        self.session.add_listener(self._on_session)

    # --- identity (issue 6) ------------------------------------------------------------------------

    def _keeper(self) -> IdentityKeeper:
        cfg = self.config
        assert self.identity is not None and cfg.identity is not None
        return IdentityKeeper(self.identity, cfg.identity, cfg.enrollment, unit=cfg.unit, agent_version=__version__,
                              status=self.identity_status, stop=self._stop, fleet_url=self.fleet_url,
                              on_enrolled=self._start_delivery, on_renewed=self._on_renewed,
                              on_revoked=self._on_revoked)

    def _start_delivery(self) -> None:
        """Connect to the broker and start the uploader (once enrolled, when there is an identity)."""
        if self._stop.is_set():
            return
        if self.identity is not None and self.updater is not None:
            from device.http_auth import DeviceAuth

            self.updater.http_auth = DeviceAuth(self.identity)
            self.updater.http_verify = self.identity.ssl_context()  # the fleet's certificate is from our CA
            self.updater.fleet_url = fleet_base(self.identity, self.fleet_url)  # offers come from it only
        self.link.start()
        if self.uploader is not None and self.uploader.fleet_url:
            self._spawn("uploader", self.uploader.run)
        elif not self.config.upload.enabled:
            log.info("uploads are disabled (upload.enabled: false): page files stay in the outbox")
        else:
            log.warning("no fleet URL (fleet_url, or the enrollment's): page files stay in the outbox")

    def _on_renewed(self) -> None:
        self.link.reconnect()
        if self.uploader is not None:
            self.uploader.renewed()

    def _on_revoked(self, reason: str) -> None:
        """The broker or the fleet refuses this device's certificate for good: stop both links
        and show "revoked" (status, kiosk, light) instead of retrying forever."""
        # Links first: whoever sees "revoked" (status, kiosk, a test) can rely on no more attempts.
        self.link.stop_reconnecting(reason)
        if self.uploader is not None:
            self.uploader.stop()
        self.identity_status.set("revoked", reason)

    def _show_identity(self) -> None:
        """A revoked or refused identity on the kiosk screen and the light (red until an admin acts)."""
        problem = self.identity_status.problem()
        shown = (problem, self.kiosk is not None, self.buttons is not None)  # front ends start later
        if shown == self._shown_identity:
            return
        self._shown_identity = shown
        if self.kiosk is not None:
            self.kiosk.app.set_device_problem(problem)
        if self.buttons is not None:
            self.buttons.panel.set_attention(problem, slot="identity")

    def pages_for(self, kind: Literal["scan", "rescan"]) -> PageSource:
        """The scanner as a dossier session's page source: a feeder batch for Scan, one page for
        Rescan; it shares :attr:`scanner_lock` with the agent's own scans (``scanner_busy``)."""
        if self.source is None:
            raise NoScanner("no scanner configured")
        request = ScanRequest(max_pages=1) if kind == "rescan" else ScanRequest()
        return CapturePages(self.source, request, lock=self._busy)

    def _open_camera(self) -> None:
        if self.config.camera is not None:
            from device.capture.camera import open_camera

            self.camera = open_camera(self.config.camera)
            self.camera.add_listener(self._on_camera)

    def _start_front_ends(self) -> None:
        """Camera, counter buttons and kiosk screen, as the config asks. Buttons that cannot be
        made (no GPIO here) are an error in the log, not the end of scanning; a kiosk port that is
        taken stops the start (OSError), as the local endpoint's does."""
        cfg = self.config
        assert self.session is not None
        if cfg.buttons.enabled:
            if self.source is None:
                log.error("buttons are enabled but no scanner is configured: buttons not started")
            else:
                from device.buttons import CounterButtons

                try:
                    self.buttons = CounterButtons(cfg.buttons, self.session, self.pages_for,
                                                  pin_factory=self.pin_factory)
                except Exception as exc:  # e.g. gpiozero finds no pins off a Pi
                    log.error("counter buttons unavailable (%s: %s); scanning goes on without them",
                              type(exc).__name__, exc)
                else:
                    self._update_panel()
        if cfg.kiosk.enabled:
            from device.kiosk import KioskApp, KioskServer

            app = KioskApp(cfg.kiosk, self.session, camera=self.camera, pipeline=self.pipeline,
                           pages_for=self.pages_for if self.source is not None else None)
            try:
                self.kiosk = KioskServer(app).start()
            except OSError:
                app.close()
                raise
            (cfg.state_dir / "kiosk.port").write_text(f"{self.kiosk.port}\n")

    def _on_camera(self, state: str, problem: str | None) -> None:
        self.camera_state = (state, problem)
        log.info("camera %s%s", state, f" ({problem})" if problem else "")

    def _on_session(self, event: SessionEvent) -> None:
        try:
            self._keep_held(event)
        except Exception:  # the page is still in memory; the dossier can still close
            log.exception("holding the open dossier's pages on disk failed")
        fault = event.fault if event.kind == "fault" else None
        if fault is not None and fault in _FAULT_STATE:
            self.scanner_state = _FAULT_STATE[fault]
        elif event.kind == "state" and event.previous == "capturing" and event.snapshot.fault is None:
            if self.source is not None and self.scanner_state in ("scanning", "jammed", "cover_open", "no_docs"):
                self.scanner_state = "ready"
        elif event.kind == "state" and event.state == "capturing" and event.snapshot.capturing == "scanner":
            self.scanner_state = "scanning"

    def _keep_held(self, event: SessionEvent) -> None:
        """Mirror the open dossier's pages in the outbox (held, not sent) as they come and go, so
        a crash before the dossier closes loses none; release them when it closes or is cancelled."""
        session, sink = self.session, self._sink
        if session is None or sink is None:
            return
        snap = event.snapshot
        if event.kind == "closed" and snap.last_closed is not None:
            self._release(snap.last_closed.session_id)  # the sink stored them for delivery
            return
        if event.kind == "cancelled" and snap.session_id is not None:
            self._release(snap.session_id)
            return
        if (event.kind not in ("page_added", "page_replaced", "page_removed", "named", "page_retyped")
                or snap.session_id is None):
            return
        group = snap.session_id
        pages = {p.page_id: p for p in session.pages()}
        if session.snapshot().session_id != group:
            return
        held = self._held.setdefault(group, set())
        if event.kind in ("named", "page_retyped"):  # held messages carry the code and types as they are now
            for page_id in held & set(pages):
                page = pages[page_id]

                def renamed(sha256: str, size: int, ctype: str, page: Any = page) -> tuple[str, bytes, str]:
                    captured = sink.page_event(page, snap.dossier_code, sha256, size, ctype)
                    return topic(self.device_id, Channel.EVENT), encode(captured), captured.id

                self.outbox.update_held(page_id, renamed)
        gone = held - set(pages)
        if gone:
            self.outbox.release_held(group, gone)
            held -= gone
        for page_id, page in pages.items():
            if page_id in held:
                continue
            data, content_type = page.encoded()

            def message(sha256: str, page: Any = page, size: int = len(data), ctype: str = content_type,
                        ) -> tuple[str, bytes, str]:
                captured = sink.page_event(page, snap.dossier_code, sha256, size, ctype)
                return topic(self.device_id, Channel.EVENT), encode(captured), captured.id

            try:
                self.outbox.hold_page(group, page_id, data, content_type, message)
            except OutboxFull as exc:
                log.error("an open dossier's page could not be held on disk (%s); it stays in memory", exc)
                return
            held.add(page_id)

    def _release(self, group: str) -> None:
        self._held.pop(group, None)
        self.outbox.release_held(group)

    def _update_panel(self) -> None:
        """Tell the buttons' light whether the broker is reachable and whether scans are refused."""
        self._show_identity()
        buttons = self.buttons
        if buttons is None:
            return
        offline = not self.link.connected.is_set()
        if offline != self._shown_offline:
            self._shown_offline = offline
            buttons.set_offline(offline)
        refusal = "disk_full" if self.outbox.low() or self._still_full() else None
        if refusal is None and self.session is not None and self.session.snapshot().update_held:
            refusal = "updating"  # no dossier opens while an update installs
        if refusal != self._shown_refusal:
            self._shown_refusal = refusal
            buttons.refuse_scans(refusal)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        """Finish the current page, stop every thread, say offline, close the outbox."""
        if self._stop.is_set():
            return
        log.info("agent stopping")
        self._stop.set()
        logging.getLogger().removeHandler(self.log_ring)
        # Front ends first (no new dossier work), then the session files an open dossier.
        if self.kiosk is not None:
            self.kiosk.close()
        if self.buttons is not None:
            self.buttons.close()
        if self.session is not None:
            try:
                self.session.close()  # an open dossier is handed to the outbox (reason "shutdown")
            except Exception:
                log.exception("closing the dossier session failed")
        if self.source is not None:
            self.source.stop()
        self._jobs.put(None)
        self._inbox.put(None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            if thread.name == "scan-worker":
                thread.join(60)
        # Give the broker a moment to take what is queued (the rest goes after the restart).
        deadline = time.monotonic() + self.config.broker.shutdown_flush_s
        while self.link.connected.is_set() and self.outbox.depth().events and time.monotonic() < deadline:
            with self.outbox.changed:
                self.outbox.changed.wait(0.1)
        self.publisher.stop()
        if self.uploader is not None:
            self.uploader.stop()
        for thread in self._threads:
            thread.join(10)
        self.link.close()
        if self.uploader is not None:
            self.uploader.close()
        if self.source is not None:
            self.source.close()
        if self.camera is not None:
            self.camera.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.outbox.close()
        log.info("agent stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- messages out ---------------------------------------------------------------------------

    def emit(self, message: Message, channel: Channel = Channel.EVENT) -> None:
        """Store a message in the outbox (the publisher sends it). If the disk is too full even
        for that, send it directly (best effort) and say so."""
        try:
            self.outbox.add_message(topic(self.device_id, channel), encode(message), message.id)
        except OutboxFull:
            log.error("disk full: a message for %s could not be stored; sending it without a copy", channel.value)
            self.link.publish(topic(self.device_id, channel), encode(message), qos=1)

    def scanner_info(self) -> ScannerInfo:
        model = self.source.model if self.source is not None else None
        return ScannerInfo(state=self.scanner_state, model=model)

    def camera_info(self) -> CameraInfo | None:
        """The document camera's state for telemetry (None when no camera is configured)."""
        camera = self.camera
        if camera is None:
            return None
        state, problem = self.camera_state or (camera.state, camera.problem)
        return CameraInfo.model_validate(
            {"state": state, "model": (camera.model or "")[:128] or None, "problem": problem[:256] if problem else None}
        )

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` answers (no personal data)."""
        depth = self.outbox.depth()
        return {
            "device_id": self.device_id,
            "agent_version": __version__,
            "connected": self.link.connected.is_set(),
            "scanner": self.scanner_info().model_dump(),
            "accepting_scans": not self.outbox.low(),
            "busy": self._busy.locked(),
            "updating": self.updater is not None and self.updater.busy.is_set(),
            "jobs_queued": self._jobs.qsize(),
            "outbox": depth.model_dump(),
            "free_bytes": self.outbox.free_bytes(),
            "rejected": dict(self.rejected),
            "duplicates": self.duplicates,
            "config_version": self.config_version,
            "batches": list(self.batches)[-20:],
            "doctype_model": {"version": self.model_version, "error": self.model_error},
            "session": self._session_status(),
            "buttons": self.buttons is not None,
            "camera": camera.model_dump() if (camera := self.camera_info()) is not None else None,
            "kiosk_port": self.kiosk.port if self.kiosk is not None else None,
            "identity": self.identity_status.as_dict() if self.identity is not None else None,
            "broker_refusal": self.link.broker_refusal,
        }

    def _session_status(self) -> dict[str, Any] | None:
        if self.session is None:
            return None
        snap = self.session.snapshot()
        return {"state": snap.state, "pages": len(snap.pages), "fault": snap.fault}

    # --- scans ----------------------------------------------------------------------------------

    def request_scan(
        self,
        request: ScanRequest,
        *,
        kind: Literal["scanner", "folder"] = "scanner",
        command_id: str | None = None,
        quiet: bool = False,
    ) -> ScanJob:
        """Queue a batch. A request while another batch runs is refused (``busy``); ``quiet``
        requests (timers, folder polling) are dropped instead."""
        job = ScanJob(kind, request, command_id)
        with self._queue_lock:
            busy = self._current is not None  # a probe or a recovery in progress just delays the batch
            if not busy:
                self._current = job
        if busy:
            job.outcome, job.detail = "refused", "busy"
            if not quiet:
                self.emit(
                    ScanRefused(
                        device_id=self.device_id, reason="busy", message="a batch is running", severity="warning"
                    )
                )
            job.done.set()
            return job
        self._jobs.put(job)
        return job

    def _scan_worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                if job is not None:
                    job.outcome, job.detail = "refused", "stopping"
                    job.done.set()
                return
            with self._busy:
                try:
                    self._run_job(job)
                except Exception:  # the worker must survive anything a backend does
                    log.exception("a batch failed unexpectedly")
                    job.outcome = "failed"
                finally:
                    with self._queue_lock:
                        if self._current is job:
                            self._current = None
                    job.done.set()
            if job.command_id is not None:
                state: CommandState = "succeeded" if job.outcome == "complete" else "failed"
                self._ack(job.command_id, state, f"{job.outcome}: {job.pages} page(s) {job.detail or ''}".strip())

    def _run_job(self, job: ScanJob) -> None:
        if job.kind == "probe":
            self._probe()
            return
        if job.kind == "recover":
            if self.source is not None:
                self.source.recover()
            return
        source = self.folder if job.kind == "folder" else self.source
        if source is None:
            job.outcome, job.detail = "refused", "no_scanner"
            self.emit(
                ScanRefused(
                    device_id=self.device_id, reason="no_scanner", message="no source configured", severity="warning"
                )
            )
            return
        if self.outbox.low() or self._still_full():
            self._refuse_disk_full(job)
            return
        self._full_at = None
        self._run_batch(job, source)

    def _still_full(self) -> bool:
        """After an ENOSPC, scans stay refused until some space has come back (deliveries)."""
        return self._full_at is not None and self.outbox.free_bytes() < self._full_at + FREED_AFTER_FULL

    def _probe(self) -> None:
        opener = getattr(self.source, "open", None)
        if opener is None:
            return
        try:
            opener()
            self.scanner_state = "ready"
        except CaptureError as exc:
            self.scanner_state = "absent"
            log.warning("scanner not available yet: %s", exc)

    def _refuse_disk_full(self, job: ScanJob) -> None:
        free = self.outbox.free_bytes()
        floor = self.outbox.min_free_bytes
        log.error(
            "scan refused: only %s bytes free in %s, the floor is %s%s; pages wait for delivery to free space",
            free,
            self.outbox.state_dir,
            floor,
            " and the last write failed for lack of space" if self._full_at is not None else "",
        )
        job.outcome, job.detail = "refused", "disk_full"
        self.scanner_state = "refused"
        self.emit(DiskLow(device_id=self.device_id, free_bytes=free, min_free_bytes=floor, severity="error"))
        self.emit(
            ScanRefused(
                device_id=self.device_id,
                reason="disk_full",
                message=f"free disk {free} bytes is below the floor of {floor} bytes",
                severity="error",
            )
        )

    def _run_batch(self, job: ScanJob, source: CaptureSource) -> None:
        batch_id = job.batch_id
        kind = source.kind
        self.outbox.batch_started(batch_id, kind)
        self.emit(BatchStarted(device_id=self.device_id, batch_id=batch_id, source=kind))
        if kind == "scanner":
            self.scanner_state = "scanning"
        outcome: Literal["complete", "interrupted"] = "complete"
        pages: Iterator[CapturedPage] = source.pages(job.request)
        started = time.monotonic()
        dossier_code: str | None = None  # a receipt slip's code ties the pages after it to its dossier
        try:
            for page in pages:
                verdict = self._analyse(page, kind)
                code = verdict.dossier_code if verdict is not None else None
                if code is not None and self._code_re.fullmatch(code) and len(code) <= 64:
                    if code != dossier_code:
                        self._adopt_receipt(code)
                    dossier_code = code
                self._store_page(batch_id, kind, page, verdict, dossier_code)
                job.pages += 1
                if isinstance(source, FolderSource):
                    source.done(page)
                if self.outbox.low():
                    free = self.outbox.free_bytes()
                    log.error("disk low after page %s (%s bytes free): the batch stops here", job.pages, free)
                    self.emit(
                        DiskLow(
                            device_id=self.device_id,
                            free_bytes=free,
                            min_free_bytes=self.outbox.min_free_bytes,
                            severity="error",
                        )
                    )
                    source.stop()
                    outcome, job.detail = "interrupted", "disk_low"
                    break
            if self._stop.is_set() and outcome == "complete":
                outcome, job.detail = "interrupted", "agent_stopping"
            if kind == "scanner":
                self.scanner_state = "ready"
        except ScannerFault as exc:
            outcome, job.detail = "interrupted", exc.event_type
            self.scanner_state = _FAULT_STATE.get(exc.event_type, "error")
            severity: Literal["warning", "error"] = "warning" if isinstance(exc, ScannerNoDocs) else "error"
            log.warning("scanner fault after %s page(s): %s (%s)", job.pages, exc.event_type, exc)
            self.emit(
                ScannerFaultEvent(
                    device_id=self.device_id,
                    type=exc.event_type,
                    batch_id=batch_id,
                    message=str(exc)[:256],
                    severity=severity,
                )
            )
            self._recover(source)
        except NoScanner as exc:
            outcome, job.detail = "interrupted", "no_scanner"
            self.scanner_state = "absent"
            log.warning("scan refused: %s", exc)
            self.emit(ScanRefused(device_id=self.device_id, reason="no_scanner", message=str(exc)[:256]))
            self._recover(source)
        except OutboxFull as exc:
            outcome, job.detail = "interrupted", "disk_full"
            free = self.outbox.free_bytes()
            self._full_at = free
            self.scanner_state = "refused"
            log.error("disk full while storing page %s: %s; the batch stops, stored pages are kept", job.pages + 1, exc)
            self.emit(
                DiskLow(
                    device_id=self.device_id,
                    free_bytes=free,
                    min_free_bytes=self.outbox.min_free_bytes,
                    severity="error",
                )
            )
            self._recover(source)
        except CaptureError as exc:
            outcome, job.detail = "interrupted", "capture_error"
            self.scanner_state = "error"
            log.warning("capture failed: %s", exc)
            self.emit(
                ScannerFaultEvent(
                    device_id=self.device_id,
                    type="scanner_io_error",
                    batch_id=batch_id,
                    message=str(exc)[:256],
                    severity="error",
                )
            )
            self._recover(source)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
            job.outcome = outcome
            self.emit(BatchFinished(device_id=self.device_id, batch_id=batch_id, pages=job.pages, outcome=outcome))
            self.outbox.batch_finished(batch_id)
            elapsed = time.monotonic() - started
            self.batches.append(
                {"batch_id": batch_id, "source": kind, "pages": job.pages, "outcome": outcome, "detail": job.detail}
            )
            log.info("batch %s: %s page(s), %s, %.1f s", batch_id[:8], job.pages, outcome, elapsed)

    def _recover(self, source: CaptureSource) -> None:
        try:
            source.recover()
        except Exception:  # recovery must not take the agent down; the next batch retries
            log.exception("scanner recovery failed")

    def _analyse(self, page: CapturedPage, kind: Literal["scanner", "camera", "folder"]) -> PageVerdict | None:
        """The page pipeline's verdict on a captured page, or None when it could not say (the page
        is stored all the same: a pipeline error never costs a page)."""
        pipeline = self.pipeline
        if pipeline is None:
            return None
        try:
            if page.width * page.height > pipeline.config.max_pixels:
                raise ImageRejected(f"{page.width}x{page.height} pixels is more than the pipeline takes")
            import cv2
            import numpy as np

            image = cv2.imdecode(np.frombuffer(page.data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ImageRejected(f"the {page.content_type} file cannot be decoded")
            return verdict_of(pipeline.process(image, dpi=page.dpi, source=kind))
        except Exception as exc:  # MemoryError included: the page is stored without a verdict
            log.warning("page pipeline failed on page %s (%s: %s); the page is kept without a verdict",
                        page.sequence, type(exc).__name__, str(exc)[:200])
            return None

    def _adopt_receipt(self, code: str) -> None:
        """A receipt slip's QR read in a batch scan: open a dossier named by it (none open), or
        name the open unnamed one. The code itself is never logged."""
        session = self.session
        if session is None or not self.config.session.adopt_receipt_code:
            return
        try:
            snap = session.snapshot()
            if snap.state in ("idle", "closed"):
                session.open(code, via="qr")
                log.info("a receipt slip in a batch opened a dossier")
            elif snap.state in ("open", "review", "capturing") and snap.dossier_code is None:
                session.name(code)
                log.info("a receipt slip in a batch named the open dossier")
        except SessionError as exc:
            log.info("receipt slip not used for a dossier (%s)", type(exc).__name__)

    def _store_page(
        self,
        batch_id: str,
        kind: Literal["scanner", "camera", "folder"],
        page: CapturedPage,
        verdict: PageVerdict | None = None,
        dossier_code: str | None = None,
    ) -> None:
        # The stored file stays exactly what the source produced; the verdict rides on the event.
        def make(sha256: str) -> tuple[str, bytes, str]:
            fields: dict[str, Any] = {
                "page_id": new_id(),
                "sha256": sha256,
                "size": len(page.data),
                "content_type": page.content_type,
                "width": page.width,
                "height": page.height,
                "dpi": page.dpi,
                "source": kind,
                "batch_id": batch_id,
                "sequence": page.sequence,
                "side": page.side,
                "captured_at": datetime.now(UTC),
            }
            analysed: dict[str, Any] = {}
            if verdict is not None:
                confidence = verdict.doctype_confidence
                analysed = {
                    "doctype": verdict.doctype,
                    "doctype_confidence": None if confidence is None else min(1.0, max(0.0, confidence)),
                    "quality": QualityVerdict(ok=verdict.ok, issues=list(verdict.issues)),
                    "dropped": verdict.blank and self.config.session.drop_blank_pages,
                    "dossier_code": dossier_code,
                }
            try:
                record = Page(**fields, **analysed)
            except ValidationError:  # an odd label from a swapped model: the page goes without it
                log.warning("page %s: the pipeline's result does not fit the event; sent without it", page.sequence)
                record = Page(**fields, dossier_code=dossier_code)
            ok = verdict is None or verdict.ok
            event = PageCaptured(device_id=self.device_id, page=record, severity="info" if ok else "warning")
            return topic(self.device_id, Channel.EVENT), encode(event), event.id

        self.outbox.add_page(page.data, page.content_type, make, batch_id=batch_id)

    # --- messages in ----------------------------------------------------------------------------

    def _on_connect(self) -> None:
        self.publisher.on_connect()
        self._publish_telemetry()

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        # paho's network thread: hand over and return.
        self._inbox.put((topic_name, payload))

    def _inbox_worker(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            try:
                self.handle_message(*item)
            except Exception:  # never let one message stop command handling
                log.exception("handling a message failed")
                self.rejected["internal"] += 1

    def _refuse(self, channel: str, reason: str, detail: str) -> None:
        self.rejected[f"{channel}:{reason}"] += 1
        # The payload is never logged: it may carry personal data.
        log.warning("refused a message on %s: %s (%s)", channel, reason, detail)

    def handle_message(self, topic_name: str, payload: bytes) -> None:
        """Decode and act on one incoming message; refuse and count anything invalid."""
        channel = topic_name.rsplit("/", 2)[-1] if not topic_name.endswith("config/desired") else "config/desired"
        try:
            decoded = decode(topic_name, payload)
        except ProtocolError as exc:
            self._refuse(channel, exc.reason, exc.detail)
            if channel == "cmd":
                command_id = _command_id(payload)
                if command_id is not None:
                    self._ack(command_id, "rejected", f"{exc.reason}")
            return
        message = decoded.message
        if decoded.device_id != self.device_id:
            self._refuse(channel, "device_mismatch", "not addressed to this device")
            return
        if isinstance(message, Command):
            self._handle_command(message)
        elif isinstance(message, ConfigDesired):
            self._handle_desired(message)
        else:
            self._refuse(channel, "unexpected", f"{type(message).__name__} is not for a device")

    def _ack(self, command_id: str, state: CommandState, detail: str | None = None) -> None:
        self.emit(
            CommandAck(device_id=self.device_id, command_id=command_id, state=state, detail=detail),
            Channel.CMD_ACK,
        )

    def _handle_command(self, command: Command) -> None:
        if not self.outbox.first_time_command(command.id):
            self.duplicates += 1
            log.info("command %s was already handled (redelivery)", command.id)
            return
        if command.deadline < datetime.now(UTC):
            self._refuse("cmd", "expired", "deadline passed")
            self._ack(command.id, "rejected", "deadline passed")
            return
        handler = {
            "test_scan": self._cmd_test_scan,
            "update": self._cmd_update,
            "restart_agent": self._cmd_restart_agent,
            "reboot": self._cmd_reboot,
            "collect_logs": self._cmd_collect_logs,
            "rotate_certificate": self._cmd_rotate_certificate,
        }.get(command.name)
        if handler is None:
            self._refuse("cmd", "unsupported", command.name)
            self._ack(command.id, "rejected", f"{command.name} is not supported by this agent version")
            return
        try:
            handler(command)
        except ValidationError as exc:
            fields = error_fields(exc)
            self._refuse("cmd", "invalid_args", f"fields {fields}")
            self._ack(command.id, "rejected", f"invalid args {fields}")

    def _cmd_test_scan(self, command: Command) -> None:
        args = TestScanArgs.model_validate(command.args)
        kind: Literal["scanner", "folder"] = "folder" if args.source == "folder" else "scanner"
        request = ScanRequest(source=None if args.source == "folder" else args.source, max_pages=args.max_pages)
        job = self.request_scan(request, kind=kind, command_id=command.id)
        if job.outcome == "refused":
            self._ack(command.id, "rejected", job.detail)
        else:
            self._ack(command.id, "in_progress")

    def update_locked(self) -> bool:
        """The update lock: a dossier is being worked on at the counter (not idle, not closed)."""
        session = self.session
        return session is not None and session.snapshot().state not in ("idle", "closed")

    def _cmd_update(self, command: Command) -> None:
        updater = self.updater
        if updater is None:
            self._refuse("cmd", "unsupported", "update")
            self._ack(command.id, "rejected", "updates are not configured on this device")
            return
        try:
            offer = offer_from(command)
        except BundleRefused as exc:
            self._refuse("cmd", "invalid_args", "update")
            self._ack(command.id, "rejected", str(exc)[:512])
            return
        if updater.busy.is_set():
            self._ack(command.id, "rejected", "another update is in progress")
            return
        self._ack(command.id, "in_progress")
        marker = self.config.state_dir / "update_command.json"
        atomic_write(marker, json.dumps({"command_id": command.id}).encode())

        def work() -> None:
            # The session is the update lock: no dossier opens from the install to the trial's end.
            outcome = updater.run(offer, window=lambda: self.settings.current.maintenance_window,
                                  is_locked=None if self.session is not None else self.update_locked,
                                  lock=self.session)
            marker.unlink(missing_ok=True)
            last = self._last_update
            detail = last.detail if last is not None and last.rollout_id == offer.rollout_id else None
            self._ack(command.id, "succeeded" if outcome == "succeeded" else "failed", (detail or outcome)[:512])

        self._spawn(f"update-{command.id[:8]}", work)

    def _report_update(self, message: UpdateProgress) -> None:
        self._last_update = message
        self.emit(message, Channel.UPDATE)

    def _resume_update(self) -> None:
        """At start: finish an update's trial (or clean an interrupted install) and answer the
        update command that caused it, whose id a real restart kept on disk."""
        assert self.updater is not None
        outcome: Outcome | None = self.updater.resume(lock=self.session)
        marker = self.config.state_dir / "update_command.json"
        if outcome is None or not marker.exists():
            return
        try:
            command_id = str(json.loads(marker.read_text())["command_id"])
        except (OSError, ValueError, KeyError):
            command_id = None
        marker.unlink(missing_ok=True)
        if command_id is not None:
            self._ack(command_id, "succeeded" if outcome == "succeeded" else "failed", outcome)

    def _health_checks(self) -> dict[str, Callable[[], bool]]:
        """What a new slot must pass: broker connection, scanner or camera, pipeline smoke test."""
        checks: dict[str, Callable[[], bool]] = {"broker": self.link.connected.is_set}
        if self.source is not None:
            checks["scanner"] = lambda: self.scanner_state not in ("absent", "error")
        elif self.config.camera is not None:
            checks["camera"] = lambda: self.camera_state is not None and self.camera_state[0] == "ready"
        checks["pipeline"] = self._pipeline_smoke_test
        return checks

    def _pipeline_smoke_test(self) -> bool:
        pipeline = self.pipeline
        if pipeline is None:
            return False
        import numpy as np

        page = np.full((877, 620, 3), 245, np.uint8)
        page[100:140, 60:560] = 20  # a line of "text"
        pipeline.process(page, source="folder", dpi=200)
        return True

    def _restart_for_update(self) -> None:
        if self.config.commands.update_restart == "in_process" or self.restart_hook is None:
            log.info("update switched slots; health check in this process")
            return
        self._flush(self.config.broker.shutdown_flush_s)
        self.restart_hook()
        threading.Event().wait()  # the process ends from the main thread; the trial runs after the restart

    def _flush(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.link.connected.is_set() and self.outbox.depth().events and time.monotonic() < deadline:
            with self.outbox.changed:
                self.outbox.changed.wait(0.1)

    def _cmd_restart_agent(self, command: Command) -> None:
        args = ForceArgs.model_validate(command.args)
        if self.restart_hook is None:
            self._ack(command.id, "rejected", "this agent does not run as a service: it cannot restart itself")
            return
        if self.update_locked() and not args.force:
            self._ack(command.id, "rejected", "a dossier is open at the counter")
            return
        self._ack(command.id, "succeeded", "restarting")
        self._flush(self.config.broker.shutdown_flush_s)
        self.restart_hook()

    def _cmd_reboot(self, command: Command) -> None:
        args = ForceArgs.model_validate(command.args)
        if self.update_locked() and not args.force:
            self._ack(command.id, "rejected", "a dossier is open at the counter")
            return
        self._ack(command.id, "in_progress")
        cfg = self.config.commands

        def work() -> None:
            self._flush(self.config.broker.shutdown_flush_s)
            try:
                done = subprocess.run(cfg.reboot_command, capture_output=True, text=True,
                                      timeout=cfg.reboot_timeout_s, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._ack(command.id, "failed", f"reboot command: {type(exc).__name__}")
                return
            if done.returncode != 0:
                self._ack(command.id, "failed", f"reboot command exited {done.returncode}: {done.stderr[-300:]}")
            else:
                self._ack(command.id, "succeeded", "reboot requested")

        self._spawn(f"reboot-{command.id[:8]}", work)

    def _cmd_rotate_certificate(self, command: Command) -> None:
        """A new key and certificate now (signed with the current ones), then MQTT reconnects
        with them; the ack goes out over the new connection. The old certificate is not revoked
        (it expires on its date; the fleet still takes a signature by it, for a renewal lost on
        its way back)."""
        NoArgs.model_validate(command.args)
        keeper, identity = self.keeper, self.identity
        if keeper is None or identity is None or not identity.is_enrolled():
            self._refuse("cmd", "not_enrolled", command.name)
            self._ack(command.id, "rejected", "not enrolled")
            return
        problem = self.identity_status.problem()
        if problem is not None:
            self._refuse("cmd", "not_enrolled", f"{command.name}: certificate {problem}")
            self._ack(command.id, "rejected", f"certificate {problem}")
            return
        self._ack(command.id, "in_progress")

        def work() -> None:
            try:
                serial = keeper.rotate()
            except CertificateRevoked as exc:
                self._ack(command.id, "failed", f"the fleet refuses this certificate ({exc.reason})")
            except (RenewalFailed, KeyFileError, OSError, ValueError) as exc:
                log.warning("certificate rotation failed: %s", exc)
                self._ack(command.id, "failed", f"certificate not rotated: {str(exc)[:300]}")
            else:
                self._ack(command.id, "succeeded", f"new certificate serial={serial:x}")

        self._spawn(f"rotate-{command.id[:8]}", work)

    def _cmd_collect_logs(self, command: Command) -> None:
        NoArgs.model_validate(command.args)
        if self.uploader is None or not self.uploader.fleet_url:
            self._ack(command.id, "rejected", "uploads are disabled or no fleet URL: files cannot be uploaded")
            return
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for name, data in (
                ("agent.log", "\n".join(self.log_ring.lines()).encode()),
                ("status.json", json.dumps(self.status(), indent=2, default=str).encode()),
            ):
                info = tarfile.TarInfo(f"logs/{name}")
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        data = archive.getvalue()

        def make(sha256: str) -> tuple[str, bytes, str]:
            # The ack travels with the file: the fleet learns the file's hash once it is stored here.
            ack = CommandAck(device_id=self.device_id, command_id=command.id, state="succeeded",
                             detail=f"logs sha256={sha256} size={len(data)}")
            return topic(self.device_id, Channel.CMD_ACK), encode(ack), ack.id

        self._ack(command.id, "in_progress")
        self.outbox.add_page(data, "application/gzip", make)

    def _handle_desired(self, desired: ConfigDesired) -> None:
        before = self.settings.version
        reported = self.settings.handle(desired)
        if reported.error is not None:
            self._refuse("config/desired", "invalid", reported.error[:200])
        elif self.settings.version != before:
            # Which keys the fleet set (settings.json holds every key): survives restarts.
            explicit = self.config.state_dir / "settings_given.json"
            atomic_write(explicit, json.dumps(desired.settings).encode())
        self.config_version = self.settings.version
        self.emit(reported.model_copy(update={"settings": self._running_settings(reported.settings)}),
                  Channel.CONFIG_REPORTED)

    def _restore_given(self) -> None:
        """Mark, in the stored settings, which keys the fleet set (see :meth:`apply_settings`)."""
        path = self.config.state_dir / "settings_given.json"
        if self.settings.version is None or not path.exists():
            return
        try:
            given = RemoteSettings.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError):
            log.warning("%s unreadable: every stored setting counts as set by the fleet", path.name)
            return
        if given == self.settings.current:
            self.settings.current = given

    def _installed_models(self) -> set[str]:
        """Classifier versions this agent can switch to: the one it runs (others arrive as model
        bundles, which restart the agent into them)."""
        return {self.model_version} if self.model_version else set()

    def apply_settings(self, settings: RemoteSettings) -> None:
        """The settings store's hook: the local file's config with the keys the fleet set over it
        (raises ValidationError to refuse them), then used at once. A key the fleet did not set
        (or no longer sets) keeps the local value: a fleet with no settings changes nothing."""
        given = _explicit(settings)
        base = self._local_config
        overrides: dict[str, Any] = {}
        scan = given.get("scan", {})
        if base.scanner is not None and scan:
            scanner: dict[str, Any] = {}
            if "dpi" in scan:
                scanner["dpi"] = scan["dpi"]
            if "colour_mode" in scan and isinstance(base.scanner, SaneScannerConfig):
                scanner["mode"] = scan["colour_mode"]
            overrides["scanner"] = scanner
        if "telemetry_interval_s" in given:
            overrides["telemetry"] = {"interval_s": settings.telemetry_interval_s}
        if "kiosk_language" in given:
            overrides["kiosk"] = {"language": settings.kiosk_language}
        if given.get("quality"):
            overrides["pipeline"] = {"quality": settings.quality.overrides()}
        if "min_confidence" in given.get("classifier", {}):
            # The running classifier keeps its threshold; the config (next start) takes the new one.
            overrides["doctype"] = {"min_confidence": settings.classifier.min_confidence}
        new_config = AgentConfig.model_validate(_deep_merge(base.model_dump(mode="python"), overrides))
        self._apply(new_config)
        if self.pipeline is not None:
            self.pipeline.config = new_config.pipeline

    def _running_settings(self, reported: dict[str, Any]) -> dict[str, Any]:
        """What the agent runs, for ``config/reported``: keys the fleet left unset show the local value."""
        cfg = self.config
        out = _deep_merge(reported, {"telemetry_interval_s": cfg.telemetry.interval_s,
                                     "kiosk_language": cfg.kiosk.language})
        if cfg.scanner is not None:
            scan: dict[str, Any] = {"dpi": cfg.scanner.dpi}
            if isinstance(cfg.scanner, SaneScannerConfig):
                scan["colour_mode"] = cfg.scanner.mode
            out = _deep_merge(out, {"scan": scan})
        return out

    def _apply(self, config: AgentConfig) -> None:
        old = self.config
        self.config = config
        self.outbox.min_free_bytes = config.min_free_bytes
        if (
            config.scanner != old.scanner
            and isinstance(self.source, SaneSource | IsolatedSaneSource)
            and isinstance(config.scanner, SaneScannerConfig)
        ):
            # Takes effect at the next batch: the scan worker reopens the device (SANE is
            # single-threaded, so only that thread touches it).
            self.source.config = config.scanner
            self._jobs.put(ScanJob("recover"))

    # --- periodic work --------------------------------------------------------------------------

    def _publish_telemetry(self) -> None:
        try:
            report = self.telemetry.collect()
            if self.camera is not None:
                report = report.model_copy(update={"camera": self.camera_info()})
        except (OSError, ValidationError) as exc:
            log.warning("telemetry failed: %s", exc)
            return
        self.link.publish(topic(self.device_id, Channel.TELEMETRY), encode(report), qos=0)

    def _ticker(self) -> None:
        cfg = self.config
        next_telemetry = time.monotonic() + cfg.telemetry.interval_s
        every = cfg.triggers.scan_every_s
        next_scan = time.monotonic() + every if every else None
        next_folder = time.monotonic() + (cfg.folder.interval_s if cfg.folder else 0)
        next_usb = time.monotonic()
        watcher = None
        if cfg.usb_watch.enabled:
            from device.capture.usbwatch import UsbWatcher

            watcher = UsbWatcher(self._on_usb)
        while not self._stop.wait(0.2):
            cfg = self.config
            now = time.monotonic()
            if now >= next_telemetry:
                next_telemetry = now + cfg.telemetry.interval_s
                self._publish_telemetry()
            every = cfg.triggers.scan_every_s  # may change through config/desired
            if not every or self.source is None:
                next_scan = None
            elif next_scan is None:
                next_scan = now + every
            elif now >= next_scan:
                next_scan = now + every
                self.request_scan(ScanRequest(), quiet=True)
            if self.folder is not None and cfg.folder is not None and now >= next_folder:
                next_folder = now + cfg.folder.interval_s
                if self.folder.ready_files():
                    self.request_scan(ScanRequest(), kind="folder", quiet=True)
            try:
                self._update_panel()
            except Exception:  # the light must not stop the ticker
                log.exception("updating the status light failed")
            if watcher is not None and now >= next_usb:
                next_usb = now + cfg.usb_watch.interval_s
                try:
                    watcher.poll()
                except Exception:  # a USB hiccup must not stop the ticker
                    log.exception("USB watch failed")

    def _on_usb(self, change: Literal["attached", "detached"], device: Any) -> None:
        self.emit(
            ScannerPlug(
                device_id=self.device_id,
                type="scanner_attached" if change == "attached" else "scanner_detached",
                vendor_id=device.vendor_id,
                product_id=device.product_id,
                model=device.model,
            )
        )
        if self.source is not None and change == "attached" and self.scanner_state in ("absent", "error"):
            self._jobs.put(ScanJob("recover"))
            self._jobs.put(ScanJob("probe"))
        if change == "detached" and self.source is not None:
            # Reopen to learn whether our scanner is the one that went (another maker's device
            # may have been unplugged); the worker does it between batches.
            self._jobs.put(ScanJob("recover"))
            self._jobs.put(ScanJob("probe"))

    # --- local API ------------------------------------------------------------------------------

    def _start_local_api(self) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sohoa-device"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("local api: %s", format % args)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/status":
                    self._reply(HTTPStatus.OK, agent.status())
                else:
                    self._reply(HTTPStatus.NOT_FOUND, {"detail": "not found"})

            def do_POST(self) -> None:
                if self.path.split("?")[0] != "/scan":
                    self._reply(HTTPStatus.NOT_FOUND, {"detail": "not found"})
                    return
                length = min(int(self.headers.get("Content-Length") or 0), 4096)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    wait = bool(body.pop("wait", False)) if isinstance(body, dict) else False
                    args = TestScanArgs.model_validate(body)
                except (json.JSONDecodeError, ValidationError, AttributeError):
                    self._reply(HTTPStatus.BAD_REQUEST, {"detail": "body: {source?, max_pages?, wait?}"})
                    return
                kind: Literal["scanner", "folder"] = "folder" if args.source == "folder" else "scanner"
                request = ScanRequest(source=None if args.source == "folder" else args.source, max_pages=args.max_pages)
                job = agent.request_scan(request, kind=kind)
                if wait:
                    job.wait(600)
                if job.outcome == "refused":
                    self._reply(HTTPStatus.CONFLICT, job.summary())
                else:
                    self._reply(HTTPStatus.OK if wait else HTTPStatus.ACCEPTED, job.summary())

        api = self.config.local_api
        self._http = ThreadingHTTPServer((api.host, api.port), Handler)
        self._http.daemon_threads = True
        self.local_port = int(self._http.server_address[1])
        (self.config.state_dir / "local_api.port").write_text(f"{self.local_port}\n")
        self._spawn("local-api", self._http.serve_forever)
        log.info("local endpoint on http://%s:%s (POST /scan, GET /status)", api.host, self.local_port)


def _explicit(model: BaseModel) -> dict[str, Any]:
    """The fields given when the model was made (nested), not those left at their defaults."""
    out: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        out[name] = _explicit(value) if isinstance(value, BaseModel) else value
    return out


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _command_id(payload: bytes) -> str | None:
    """The id of a refused command, when one can be read safely (to answer with a rejection)."""
    try:
        raw = json.loads(payload) if len(payload) <= 256 * 1024 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    value = raw.get("id")
    if isinstance(value, str) and 8 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value):
        return value
    return None


def run_main(config_path: str) -> int:
    """``sohoa-device run --config FILE``: run until SIGTERM or SIGINT, then stop cleanly."""
    from protocol.configfile import ConfigError

    try:
        config = load(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("%s", line)
        return 1
    # Signals are blocked in every thread (threads inherit the mask) and taken by the main thread
    # with sigtimedwait:
    # SANE backends reset SIGTERM's disposition from their reader threads (the test backend
    # does), which would kill a handler-based agent without its clean stop.
    signals = {signal.SIGTERM, signal.SIGINT}
    # SIGPIPE too: some backends reset it to "terminate", and a write to a closed socket must
    # raise BrokenPipeError in the thread that made it, not end the agent.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals | {signal.SIGPIPE})
    try:
        agent = Agent(config)
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot start: %s", exc)
        return 1
    restart = threading.Event()
    agent.restart_hook = restart.set
    systemd = SystemdNotifier.from_environment()
    watchdog = WatchdogFeeder(systemd, agent_liveness())
    try:
        try:
            agent.start()
        except OSError as exc:  # e.g. the local endpoint's port is taken
            log.error("cannot start: %s", exc)
            return 1
        systemd.ready(f"agent {__version__} running as {config.device_id}")
        watchdog.start()
        while not restart.is_set():
            info = signal.sigtimedwait(signals, 0.5)
            if info is not None:
                log.info("signal %s: stopping", signal.Signals(info.si_signo).name)
                break
    finally:
        systemd.stopping()
        watchdog.close()
        agent.close()
    if restart.is_set():
        log.info("restarting (exit code %s)", config.commands.restart_exit_code)
        return config.commands.restart_exit_code
    return 0


__all__ = ["Agent", "ScanJob", "make_source", "run_main"]
