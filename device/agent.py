"""The device agent's composition root: it makes the parts, starts and stops them in order,
answers the status, and runs the ticker. Each job lives in its own module:

* **scan worker** (:mod:`device.scanning`): the only thread that touches the capture sources;
  runs batches, stores every page in the outbox before counting it. The SANE driver itself runs
  in a child process (``scanner.isolate``), so a backend crash is a ``scanner_gone`` event.
* **delivery** (:mod:`device.delivery`): the outbox, the publisher (outbox to MQTT, QoS 1), the
  MQTT link, the uploader (page files over HTTP), the open dossier's pages held on disk.
* **inbox** (:mod:`device.commands`): decodes ``cmd`` and ``config/desired``; acts on commands.
* **remote settings** (:mod:`device.remote_settings`): the fleet's settings over the local config.
* **local API** (:mod:`device.local_api`): ``POST /scan`` and ``GET /status`` on loopback.
* **ticker** (here): telemetry, timed scans, folder polling, USB watching, the status light.
* **the service** (:mod:`device.service`): signals and the exit code under systemd.

The dossier session (:class:`~device.dossier.session.DossierSession`) is driven by the clerk's buttons
(``buttons.enabled``, gpiozero) and the kiosk screen (``kiosk.enabled``, served on loopback);
both share the scanner with the scan worker through :attr:`Agent.scanner_lock`. Closing a dossier
builds its PDFs and queues pages and PDFs in the outbox.

>>> with Agent(load("device.yaml")) as agent:  # doctest: +SKIP
...     agent.request_scan(ScanRequest(source="adf")).wait(60)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import ValidationError

from device import __version__
from device.capture.base import CaptureSource, ScanRequest
from device.capture.config import SaneScannerConfig
from device.capture.folder import FolderSource
from device.capture.registry import make_source, open_camera
from device.capture.sane import IsolatedSaneSource, SaneSource
from device.commands import Commands
from device.config import AgentConfig
from device.delivery.held import HeldPages
from device.delivery.link import MqttLink
from device.delivery.outbox import Outbox
from device.delivery.publisher import Publisher
from device.delivery.sealing import outbox_sealer
from device.delivery.uploader import Uploader
from device.dossier.model import SessionEvent
from device.dossier.numbering import NumberBook
from device.dossier.pdf import DossierPdfBuilder
from device.dossier.session import DossierSession
from device.dossier.sink import OutboxSink
from device.dossier.sources import PageSource
from device.enroll import IdentityKeeper, IdentityStatus, fleet_base
from device.inference.doctype import FallbackClassifier, load_classifier_or_fallback
from device.inference.pipeline import PagePipeline
from device.local_api import LocalApi
from device.operators.book import OperatorBook, OperatorBookError
from device.operators.cards import ScannedCards
from device.operators.signin import SignIn
from device.remote_settings import RemoteSettingsApplier
from device.scanning import ScanJob, ScanWorker
from device.telemetry import TelemetryCollector
from device.updater import Updater
from protocol.messages import AgentStarted, BatchFinished, CameraInfo, ScannerInfo, encode
from protocol.topics import Channel, topic
from provisioning.identity import DeviceIdentity

if TYPE_CHECKING:
    from collections import Counter

    from device.buttons import CounterButtons
    from device.capture.camera import Camera
    from device.kiosk import KioskServer
    from protocol.settings import MaintenanceWindow

log = logging.getLogger(__name__)


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
        self.pin_factory = pin_factory
        self.device_id = config.device_id
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Delivery: the outbox first, everything else writes into it.
        self.outbox = Outbox(config.state_dir, config.min_free_bytes, sealer=outbox_sealer(config))
        self.publisher = Publisher(self.outbox, self.device_id, window=config.broker.max_inflight,
                                   stored_timeout_s=config.broker.stored_timeout_s,
                                   stored_timeout_max_s=config.broker.stored_timeout_max_s,
                                   stored_forget_s=config.broker.stored_forget_s)
        self.identity = DeviceIdentity(config.identity.dir, self.device_id) if config.identity is not None else None
        self.identity_status = IdentityStatus()
        self._shown_identity: tuple[str | None, bool, bool] | None = None
        self.keeper: IdentityKeeper | None = None
        # Capture.
        self.source = source if source is not None else make_source(config.scanner)
        self.folder = folder if folder is not None else (FolderSource(config.folder) if config.folder else None)
        self.pipeline: PagePipeline | None = None
        self.model_error: str | None = None
        self.model_version: str | None = None
        self.session: DossierSession | None = None
        self.scans = ScanWorker(
            device_id=self.device_id, config=lambda: self.config, outbox=self.outbox, emit=self.publisher.emit,
            source=self.source, folder=self.folder, stop=self._stop,
            pipeline=lambda: self.pipeline, session=lambda: self.session,
        )
        self.scanner_lock = self.scans.lock
        """Held while the agent drives its capture source; a dossier session that shares the
        scanner passes it to ``CapturePages(lock=...)`` so the two never scan at once."""
        # Messages in: commands and remote settings.
        self.settings = RemoteSettingsApplier(config, use=self._use_config, installed_models=self._installed_models)
        self.fleet_url = config.fleet_url or (config.enrollment.fleet_url if config.enrollment else None)
        """The fleet's URL from the config; an enrolled device prefers the one its enrollment answer named."""
        self.uploader = (
            Uploader(self.outbox, self.fleet_url, self.device_id, config.upload, identity=self.identity,
                     on_revoked=self._on_revoked)
            # Enrolled (or enrolling) devices upload to the fleet they enrolled with unless told not to.
            if config.upload.enabled and (self.fleet_url is not None or self.identity is not None) else None
        )
        self.operators = _operator_book(config.state_dir / "operators.json")
        self.sign_in = SignIn(self.operators, config.state_dir / "signin.json")
        self.commands = Commands(
            device_id=self.device_id, config=lambda: self.config, outbox=self.outbox, publisher=self.publisher,
            scans=self.scans, spawn=self._spawn, status=self.status, on_desired=self.settings.handle,
            on_operators=self.operators.take,
            session=lambda: self.session, window=self._maintenance_window,
            uploads=lambda: self.uploader is not None and bool(self.uploader.fleet_url),
            identity=self.identity, identity_status=self.identity_status, keeper=lambda: self.keeper,
        )
        self.scans.on_done = self.commands.scan_done
        self._stored_topic = topic(self.device_id, Channel.STORED)
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
        self.telemetry = TelemetryCollector(
            self.device_id, self.outbox, scanner=self.scanner_info, accepting=lambda: not self.outbox.low()
        )
        self.local_api: LocalApi | None = None
        # The dossier front ends, made in start():
        self.buttons: CounterButtons | None = None
        self.camera: Camera | None = None
        self.camera_state: tuple[str, str | None] | None = None
        self.kiosk: KioskServer | None = None
        self._shown_offline: bool | None = None
        self._shown_refusal: str | None = None
        self.updater: Updater | None = None
        if config.updater is not None:
            self.updater = Updater(
                config.updater,
                device_id=self.device_id,
                current_version=__version__,
                report=self.commands.report_update,
                restart=self.commands.restart_for_update,
                health_checks=self._health_checks(),
                stop=self._stop,
                fleet_url=self.fleet_url,
            )
            self.commands.updater = self.updater

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        logging.getLogger().addHandler(self.commands.log_ring)
        held = self.outbox.deliver_held()
        if held:
            # A crash (power cut, kill -9) left a dossier open: its pages were held on disk.
            log.warning("an open dossier was interrupted by a restart: its %s page(s) are sent as single pages",
                        held)
        for batch_id, _source, pages in self.outbox.open_batches():
            # A crash (power cut, kill -9) left this batch open: its stored pages are safe.
            log.warning("a batch was interrupted by a restart after %s page(s)", pages)
            self.publisher.emit(BatchFinished(device_id=self.device_id, batch_id=batch_id, pages=pages,
                                              outcome="interrupted"))
            self.outbox.batch_finished(batch_id)
        self.publisher.emit(AgentStarted(device_id=self.device_id, agent_version=__version__))
        self._start_pipeline()
        self.settings.apply_stored()
        self._start_session()
        self._open_camera()  # before the link: the first telemetry report already has its state
        if self.identity is None:
            self._start_delivery()
        else:  # enroll first if needed (scans are kept meanwhile), then connect, then renew daily
            self.keeper = self._keeper()
            self._spawn("identity", self.keeper.run)
        self._spawn("publisher", self.publisher.run)
        self._spawn("scan-worker", self.scans.run)
        self._spawn("inbox", self.commands.run)
        self._spawn("ticker", self._ticker)
        if self.updater is not None:
            self._spawn("update-resume", self.commands.resume_update)
        if self.config.local_api.enabled:
            self.local_api = LocalApi(self.config.local_api, status=self.status,
                                      request_scan=lambda request, kind: self.scans.request_scan(request, kind=kind))
            self.local_api.start()
            (self.config.state_dir / "local_api.port").write_text(f"{self.local_api.port}\n")
        self._start_front_ends()
        if self.source is not None:
            self.scans.probe()
        if self.config.triggers.scan_at_start and self.source is not None:
            self.scans.request_scan(ScanRequest(), quiet=True)
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
        sink = OutboxSink(self.outbox, cfg.device_id, drop_blank_pages=cfg.session.drop_blank_pages)
        self.session = DossierSession(
            cfg.session,
            processor=self.pipeline,
            sink=sink,
            pdf_builder=DossierPdfBuilder(cfg.pdf, unit=cfg.unit, device=cfg.device_id),
            numbering=NumberBook(cfg.state_dir / "dossier_numbers.json"),
            cards=ScannedCards(self.sign_in),
        )
        self.session.add_listener(HeldPages(self.outbox, sink, self.session).on_session)
        self.session.add_listener(self._on_session)

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

    def _open_camera(self) -> None:
        if self.config.camera is not None:
            self.camera = open_camera(self.config.camera)
            self.camera.add_listener(self._on_camera)

    def _start_front_ends(self) -> None:
        """Counter buttons and kiosk screen, as the config asks. Buttons that cannot be made (no
        GPIO here) are an error in the log, not the end of scanning; a kiosk port that is taken
        stops the start (OSError), as the local endpoint's does."""
        cfg = self.config
        assert self.session is not None
        if cfg.buttons.enabled:
            if self.source is None:
                log.error("buttons are enabled but no scanner is configured: buttons not started")
            else:
                from device.buttons import CounterButtons

                try:
                    self.buttons = CounterButtons(cfg.buttons, self.session, self.pages_for,
                                                  pin_factory=self.pin_factory, operator=self.sign_in.operator)
                except Exception as exc:  # e.g. gpiozero finds no pins off a Pi
                    log.error("counter buttons unavailable (%s: %s); scanning goes on without them",
                              type(exc).__name__, exc)
                else:
                    self._update_panel()
        if cfg.kiosk.enabled:
            from device.kiosk import KioskApp, KioskServer
            from device.kiosk.staff import StaffDesk

            app = KioskApp(cfg.kiosk, self.session, camera=self.camera, pipeline=self.pipeline,
                           pages_for=self.pages_for if self.source is not None else None,
                           staff=StaffDesk(self.sign_in, sign_out_after_s=cfg.kiosk.staff_sign_out_s))
            try:
                self.kiosk = KioskServer(app).start()
            except OSError:
                app.close()
                raise
            (cfg.state_dir / "kiosk.port").write_text(f"{self.kiosk.port}\n")

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
        logging.getLogger().removeHandler(self.commands.log_ring)
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
        self.scans.stop()
        self.commands.stop()
        if self.local_api is not None:
            self.local_api.close()
        for thread in self._threads:
            if thread.name == "scan-worker":
                thread.join(60)
        # Give the broker a moment to take what is queued (the rest goes after the restart).
        self.publisher.drain(self.config.broker.shutdown_flush_s)
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

    # --- wiring ---------------------------------------------------------------------------------

    def request_scan(
        self,
        request: ScanRequest,
        *,
        kind: Literal["scanner", "folder"] = "scanner",
        command_id: str | None = None,
        quiet: bool = False,
    ) -> ScanJob:
        """Queue a batch on the scan worker (:meth:`device.scanning.ScanWorker.request_scan`)."""
        return self.scans.request_scan(request, kind=kind, command_id=command_id, quiet=quiet)

    def pages_for(self, kind: Literal["scan", "rescan"]) -> PageSource:
        """The scanner as a dossier session's page source (:meth:`device.scanning.ScanWorker.pages_for`)."""
        return self.scans.pages_for(kind)

    def update_locked(self) -> bool:
        """The update lock: a dossier is being worked on at the counter (not idle, not closed)."""
        return self.commands.update_locked()

    @property
    def rejected(self) -> Counter[str]:
        """Incoming messages refused, by ``channel:reason``."""
        return self.commands.rejected

    def _maintenance_window(self) -> MaintenanceWindow:
        return self.settings.current.maintenance_window

    def _installed_models(self) -> set[str]:
        """Classifier versions this agent can switch to: the one it runs (others arrive as model
        bundles, which restart the agent into them)."""
        return {self.model_version} if self.model_version else set()

    def _use_config(self, config: AgentConfig) -> None:
        """Remote settings changed the config: the parts that read it at use see it at once; the
        scanner's new settings take effect at the next batch (the scan worker reopens the device:
        SANE is single-threaded, so only that thread touches it)."""
        old = self.config
        self.config = config
        self.outbox.min_free_bytes = config.min_free_bytes
        if self.pipeline is not None:
            self.pipeline.config = config.pipeline
        if (
            config.scanner != old.scanner
            and isinstance(self.source, SaneSource | IsolatedSaneSource)
            and isinstance(config.scanner, SaneScannerConfig)
        ):
            self.source.config = config.scanner
            self.scans.recover()

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        """The link's callback (paho's network thread): the fleet's confirmations to the
        publisher, everything else to the command inbox."""
        if topic_name == self._stored_topic:
            self.publisher.on_stored(topic_name, payload)
        else:
            self.commands.on_message(topic_name, payload)

    def _on_connect(self) -> None:
        self.publisher.on_connect()
        self._publish_telemetry()

    def _on_camera(self, state: str, problem: str | None) -> None:
        self.camera_state = (state, problem)
        log.info("camera %s%s", state, f" ({problem})" if problem else "")

    def _on_session(self, event: SessionEvent) -> None:
        self.commands.log_ring.scrub.remember(event.snapshot.dossier_code)
        self.scans.on_session(event)

    def _health_checks(self) -> dict[str, Callable[[], bool]]:
        """What a new slot must pass: broker connection, scanner or camera, pipeline smoke test."""
        checks: dict[str, Callable[[], bool]] = {"broker": self.link.connected.is_set}
        if self.source is not None:
            checks["scanner"] = lambda: self.scans.state not in ("absent", "error")
        elif self.config.camera is not None:
            checks["camera"] = lambda: self.camera_state is not None and self.camera_state[0] == "ready"
        checks["pipeline"] = lambda: self.pipeline is not None and self.pipeline.smoke_test()
        return checks

    # --- status ---------------------------------------------------------------------------------

    def scanner_info(self) -> ScannerInfo:
        return self.scans.info()

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
            "busy": self.scanner_lock.locked(),
            "updating": self.updater is not None and self.updater.busy.is_set(),
            "jobs_queued": self.scans.queued(),
            "outbox": depth.model_dump(),
            "free_bytes": self.outbox.free_bytes(),
            "rejected": dict(self.commands.rejected),
            "duplicates": self.commands.duplicates,
            "config_version": self.settings.version,
            "batches": list(self.scans.batches)[-20:],
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
        refusal = "disk_full" if self.scans.refusing() else None
        if refusal is None and self.session is not None and self.session.snapshot().update_held:
            refusal = "updating"  # no dossier opens while an update installs
        if refusal != self._shown_refusal:
            self._shown_refusal = refusal
            buttons.refuse_scans(refusal)

    # --- the ticker -----------------------------------------------------------------------------

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
        """Telemetry, timed scans, folder polling, the status light and USB watching, every 0.2 s."""
        cfg = self.config
        next_telemetry = time.monotonic() + cfg.telemetry.interval_s
        every = cfg.triggers.scan_every_s
        next_scan = time.monotonic() + every if every else None
        next_folder = time.monotonic() + (cfg.folder.interval_s if cfg.folder else 0)
        next_usb = time.monotonic()
        watcher = None
        if cfg.usb_watch.enabled:
            from device.capture.usbwatch import UsbWatcher

            watcher = UsbWatcher(self.scans.on_usb)
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
                self.scans.request_scan(ScanRequest(), quiet=True)
            if self.folder is not None and cfg.folder is not None and now >= next_folder:
                next_folder = now + cfg.folder.interval_s
                if self.folder.ready_files():
                    self.scans.request_scan(ScanRequest(), kind="folder", quiet=True)
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


__all__ = ["Agent", "ScanJob"]


def _operator_book(path: Path) -> OperatorBook:
    """The operators the fleet pushed. A damaged book is set aside (``.damaged``) rather than
    stopping the agent: the fleet's retained list comes again at the next connection."""
    try:
        return OperatorBook(path)
    except OperatorBookError as exc:
        log.error("operator book unusable (%s); waiting for the fleet's list", exc)
        path.replace(path.with_suffix(".damaged"))
        return OperatorBook(path)
