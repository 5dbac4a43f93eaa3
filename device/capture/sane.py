"""Scanners through SANE (python-sane), imported on first use.

The backend's statuses become the agent's errors: ``Document feeder jammed`` ->
:class:`ScannerJammed`, ``Scanner cover is open`` -> :class:`ScannerCoverOpen`, an empty feeder
at the start of a batch -> :class:`ScannerNoDocs`, ``Error during device I/O`` ->
:class:`ScannerIOError`, a device that cannot be opened any more -> :class:`ScannerGone`.
After a fault, :meth:`SaneSource.recover` closes the device and restarts SANE, so the next batch
starts from a fresh ``sane_init`` (the way a user unplugs and replugs).

>>> source = SaneSource(SaneScannerConfig(device="test:0", source="adf", dpi=75))  # doctest: +SKIP
>>> pages = list(source.pages(ScanRequest()))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from device.capture.base import CapturedPage, CaptureSource, ScanRequest, Side, encode_png
from device.capture.config import SaneScannerConfig
from device.errors import (
    NoScanner,
    ScannerCoverOpen,
    ScannerFault,
    ScannerGone,
    ScannerIOError,
    ScannerJammed,
    ScannerNoDocs,
)

log = logging.getLogger(__name__)

# sane_strstatus() texts (sanei/sane_strstatus.c), as python-sane's _sane.error carries them.
_STATUS_ERRORS: dict[str, type[ScannerFault]] = {
    "Document feeder jammed": ScannerJammed,
    "Scanner cover is open": ScannerCoverOpen,
    "Document feeder out of documents": ScannerNoDocs,
    "Error during device I/O": ScannerIOError,
}
NO_DOCS = "Document feeder out of documents"

# SANE well-known option values differ by backend; these are matched case-insensitively.
_ADF_WORDS = ("adf", "feeder", "automatic document")
_DUPLEX_WORDS = ("duplex",)
_MODE_WORDS = {"color": ("color", "colour", "24bit", "rgb"), "gray": ("gray", "grey", "8bit")}

_sane_lock = threading.Lock()


def keep_sigpipe_ignored() -> None:
    """Put SIGPIPE back to "ignored", process-wide, from any thread.

    SANE backends' reader threads reset it to the default (the test backend does, in
    ``snap``); Python relies on it being ignored, otherwise writing to a closed socket or pipe
    kills the whole process instead of raising BrokenPipeError. The agent also blocks SIGPIPE
    in every thread; this covers programs (and test runs) that use :class:`SaneSource` directly.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGPIPE, 1)  # 1 == SIG_IGN


def fault_from(exc: BaseException) -> ScannerFault:
    """The agent's error for a python-sane exception (text of ``sane_strstatus``)."""
    text = str(exc)[:200] or type(exc).__name__
    cls = _STATUS_ERRORS.get(text, ScannerIOError)
    return cls(text)


def _pick(values: list[str], words: tuple[str, ...], exclude: tuple[str, ...] = ()) -> str | None:
    for value in values:
        low = value.lower()
        if any(w in low for w in words) and not any(x in low for x in exclude):
            return value
    return None


def _clamp_number(constraint: Any, value: float) -> float:
    if isinstance(constraint, tuple) and len(constraint) == 3:
        low, high = float(constraint[0]), float(constraint[1])
        return min(max(value, low), high)
    if isinstance(constraint, list) and constraint:
        return float(min(constraint, key=lambda c: abs(float(c) - value)))
    return value


def choose_source(sources: list[str], wanted: str, duplex: bool) -> str:
    """The device's name for the flatbed or the feeder (duplex when asked and offered).

    >>> choose_source(["Flatbed", "ADF Front", "ADF Back", "ADF Duplex"], "adf", duplex=True)
    'ADF Duplex'
    """
    if wanted == "adf":
        choice = _pick(sources, _DUPLEX_WORDS) if duplex else None
        choice = choice or _pick(sources, _ADF_WORDS, exclude=(*_DUPLEX_WORDS, "back")) or _pick(sources, _ADF_WORDS)
    else:
        choice = _pick(sources, ("flatbed", "glass", "normal"))
    return choice or sources[0]


class SaneSource(CaptureSource):
    """A SANE scanner: flatbed or feeder batches, duplex where offered, PNG pages."""

    kind = "scanner"

    def __init__(self, config: SaneScannerConfig) -> None:
        self.config = config
        self._dev: Any = None
        self._model: str | None = None
        self._initialized = False
        self._stop = threading.Event()
        self.defer_cancel = False
        """Leave a batch's ``sane_cancel`` to :meth:`finish_batch` (the child process: it reports
        the batch's outcome first, since a cancel can hang; see :class:`IsolatedSaneSource`)."""
        self._cancel_pending = False
        self.applied: dict[str, Any] = {}
        """The option values the device accepted at the last open (for logs and tests)."""

    # --- device life cycle ----------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        return self._model

    def open(self) -> None:
        """Open the configured device (first one found for ``auto``). Raises NoScanner/ScannerGone."""
        self.finish_batch()
        if self._dev is not None:
            return
        import _sane
        import sane

        with _sane_lock:
            if not self._initialized:
                sane.init()
                self._initialized = True
        try:
            devices = sane.get_devices()
        except _sane.error as exc:
            raise ScannerGone(f"cannot list scanners: {exc}") from None
        names = {d[0]: d for d in devices}
        wanted = self.config.device
        if wanted == "auto":
            if not devices:
                raise NoScanner("no scanner found by SANE")
            wanted = devices[0][0]
        elif wanted not in names:
            raise ScannerGone(f"scanner {wanted!r} is not attached")
        try:
            self._dev = sane.open(wanted)
        except (_sane.error, RuntimeError) as exc:
            raise ScannerGone(f"cannot open scanner: {exc}") from None
        info = names.get(wanted)
        self._model = f"{info[1]} {info[2]}"[:128] if info else wanted[:128]
        try:
            self._configure()
        except ScannerFault:
            self.close()
            raise
        log.info("scanner open: %s (%s)", self._model, ", ".join(f"{k}={v}" for k, v in self.applied.items()))

    def _option_names(self) -> list[str]:
        return list(self._dev.opt.keys())

    def _set(self, name: str, value: Any) -> bool:
        """Set an option if the device has it and it is active and settable; False otherwise."""
        import _sane

        py_name = name.replace("-", "_")
        opt = self._dev.opt.get(py_name)
        if opt is None or not opt.is_active() or not opt.is_settable():
            return False
        try:
            setattr(self._dev, py_name, value)
        except (_sane.error, AttributeError, TypeError) as exc:
            log.warning("scanner refused option %s: %s", name, exc)
            return False
        self.applied[name] = value
        return True

    def _constraint(self, name: str) -> Any:
        opt = self._dev.opt.get(name)
        return None if opt is None else opt.constraint

    def _configure(self, source: str | None = None) -> None:
        cfg = self.config
        self.applied = {}
        sources = self._constraint("source")
        wanted_source = source or cfg.source
        duplex = cfg.duplex and wanted_source == "adf"
        if isinstance(sources, list) and sources:
            choice = choose_source([str(s) for s in sources], wanted_source, duplex)
            if wanted_source == "adf" and not any(w in choice.lower() for w in _ADF_WORDS):
                log.warning("scanner has no document feeder; using %s", choice)
            self._set("source", choice)
        if duplex:
            # Some backends take duplex as its own option rather than a source (epson2's adf-mode).
            if "duplex" in self._option_names():
                self._set("duplex", True)
            adf_mode = self._constraint("adf_mode")
            if isinstance(adf_mode, list) and (mode := _pick([str(m) for m in adf_mode], _DUPLEX_WORDS)):
                self._set("adf_mode", mode)
        modes = self._constraint("mode")
        if isinstance(modes, list):
            mode = _pick(modes, _MODE_WORDS[cfg.mode])
            if mode is not None:
                self._set("mode", mode)
        depth = self._constraint("depth")
        if isinstance(depth, list) and 8 in depth:
            self._set("depth", 8)
        res = self._constraint("resolution")
        if res is not None:
            dpi = _clamp_number(res, float(cfg.dpi))
            opt = self._dev.opt["resolution"]
            import _sane

            self._set("resolution", int(dpi) if opt.type == _sane.TYPE_INT else float(dpi))
        # Scan area: A4 from the top-left corner, clamped to the device's geometry.
        for corner, size in (("br_x", cfg.area.width_mm), ("br_y", cfg.area.height_mm)):
            origin_name = "tl_x" if corner == "br_x" else "tl_y"
            origin = self._constraint(origin_name)
            constraint = self._constraint(corner)
            if constraint is None:
                continue
            low = float(origin[0]) if isinstance(origin, tuple) else 0.0
            self._set(origin_name, low)
            self._set(corner, _clamp_number(constraint, low + size))
        for name, value in cfg.options.items():
            if not self._set(name, value):
                log.warning("scanner option %s is not available on this device", name)

    def recover(self) -> None:
        """Close the device and restart SANE: the next batch reopens from scratch."""
        self.close()

    def close(self) -> None:
        import _sane
        import sane

        if self._dev is not None:
            try:
                self._dev.cancel()
                self._dev.close()
            except (_sane.error, RuntimeError) as exc:
                log.debug("closing scanner: %s", exc)
            self._dev = None
        with _sane_lock:
            if self._initialized:
                sane.exit()
                self._initialized = False

    def stop(self) -> None:
        self._stop.set()

    # --- batches --------------------------------------------------------------------------------

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        import _sane

        self._stop.clear()
        self.open()
        source = request.source or self.config.source
        try:
            self._configure(source)
        except _sane.error as exc:
            raise fault_from(exc) from None
        limit = request.max_pages or (self.config.max_pages if source == "adf" else 1)
        dpi = int(float(self.applied.get("resolution", self.config.dpi)))
        duplex = (
            source == "adf"
            and self.config.duplex
            and ("duplex" in str(self.applied.get("source", "")).lower() or bool(self.applied.get("duplex")))
        )
        count = 0
        try:
            while count < limit and not self._stop.is_set():
                try:
                    self._dev.start()
                    # python-sane's snap cancels by itself unless told not to (a feeder batch goes on).
                    image = self._dev.snap(source == "adf" or self.defer_cancel)
                except _sane.error as exc:
                    if str(exc) == NO_DOCS and count > 0:
                        return  # the feeder is empty: the batch is complete
                    raise fault_from(exc) from None
                except RuntimeError as exc:  # python-sane: "Scanner returned no data"
                    raise ScannerIOError(str(exc)[:200]) from None
                count += 1
                side: Side = "back" if duplex and count % 2 == 0 else "front"
                data = encode_png(image, dpi, self.config.png_compress_level)
                width, height = image.size
                yield CapturedPage(data, "image/png", width, height, dpi, count, side)
        finally:
            if self.defer_cancel:
                self._cancel_pending = self._dev is not None
            elif self._dev is not None:
                try:
                    self._dev.cancel()
                except _sane.error as exc:
                    log.debug("cancel after batch: %s", exc)
            keep_sigpipe_ignored()

    def finish_batch(self) -> None:
        """The batch's deferred ``sane_cancel`` (see :attr:`defer_cancel`), if one is pending."""
        if not self._cancel_pending or self._dev is None:
            self._cancel_pending = False
            return
        import _sane

        self._cancel_pending = False
        try:
            self._dev.cancel()
        except _sane.error as exc:
            log.debug("cancel after batch: %s", exc)


# --- the driver in a child process -------------------------------------------------------------

_FAULTS_BY_TYPE: dict[str, type[ScannerFault]] = {
    cls.event_type: cls for cls in (ScannerJammed, ScannerCoverOpen, ScannerNoDocs, ScannerIOError, ScannerGone)
}


def _child_main(conn: Any, config_json: str) -> None:
    """The child's loop: one :class:`SaneSource`, driven by messages from the parent."""
    # The parent blocks SIGTERM/SIGINT in all threads and the mask is inherited: undo that, and
    # leave Ctrl-C to the parent, which stops this child itself.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source = SaneSource(SaneScannerConfig.model_validate_json(config_json))
    # A sane_cancel while a backend's reader thread is still busy (a fault in the middle of a
    # page, as the test backend injects them) can hang for good: sanei_thread cancels the
    # thread asynchronously, and one cancelled inside malloc deadlocks on the allocator's lock
    # (seen: 1 batch in 100-200 on the test backend). So the outcome goes to the parent first
    # and the cancel after it: after a normal end here (the reader has finished), after a fault
    # in close(), which the parent bounds (it ends this process after a fault).
    source.defer_cancel = True
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            command = message[0]
            if command == "close":
                return
            try:
                if command == "open":
                    source.open()
                    conn.send(("opened", source.model))
                elif command == "scan":
                    request = ScanRequest(source=message[1], max_pages=message[2])
                    for page in source.pages(request):
                        conn.send(("page", page.data, page.width, page.height, page.dpi, page.sequence, page.side))
                        if conn.poll() and conn.recv()[0] == "stop":
                            source.stop()
                    conn.send(("done", source.model))
                    source.finish_batch()
            except ScannerFault as exc:
                conn.send(("fault", exc.event_type, str(exc)))
            except NoScanner as exc:
                conn.send(("no_scanner", str(exc)))
            except Exception as exc:  # anything else the driver does is an I/O fault to the parent
                conn.send(("fault", "scanner_io_error", f"{type(exc).__name__}: {exc}"[:200]))
    finally:
        source.close()


class IsolatedSaneSource(CaptureSource):
    """:class:`SaneSource` in a child process, so a driver that crashes (some segfault when a
    device vanishes) costs a ``scanner_gone`` event and a restart of the child, not the agent.

    >>> with IsolatedSaneSource(SaneScannerConfig(device="test:0")) as source:  # doctest: +SKIP
    ...     pages = list(source.pages(ScanRequest()))
    """

    kind = "scanner"

    def __init__(self, config: SaneScannerConfig, reply_timeout_s: float = 120.0) -> None:
        self.config = config
        self.reply_timeout_s = reply_timeout_s
        self._process: Any = None
        self._conn: Any = None
        self._started_with: SaneScannerConfig | None = None
        self._model: str | None = None
        self._stop = threading.Event()
        self._stop_sent = True

    @property
    def model(self) -> str | None:
        return self._model

    def _start_child(self) -> None:
        import multiprocessing

        # A write to a child that just died must raise, not kill us: SIGPIPE is thread-directed,
        # so blocking it in this thread is enough whatever a backend did to its disposition.
        caller_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})

        if self._process is not None and (self._started_with != self.config or not self._process.is_alive()):
            self._end_child()
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        parent, child = context.Pipe()
        process = context.Process(
            target=_child_main, args=(child, self.config.model_dump_json()), name="sohoa-sane", daemon=True
        )
        try:
            process.start()
        finally:
            # The first start also starts multiprocessing's resource tracker, which *unblocks*
            # SIGINT and SIGTERM in this thread (CPython 3.11 resource_tracker.ensure_running), and
            # every thread started from here on would inherit that: the agent, which takes them
            # only in its main thread's sigtimedwait, would then die on SIGTERM without its clean
            # stop. Put the caller's mask back.
            signal.pthread_sigmask(signal.SIG_SETMASK, caller_mask | {signal.SIGPIPE})
        child.close()
        self._process, self._conn, self._started_with = process, parent, self.config

    def _end_child(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            conn.send(("close",))
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        conn.close()

    def _crashed(self) -> ScannerGone:
        code = None
        if self._process is not None:
            self._process.join(2)  # the pipe closes a moment before the process is reaped
            code = self._process.exitcode
        log.error("the scanner driver process ended unexpectedly (exit code %s); it will be restarted", code)
        self._end_child()
        return ScannerGone(f"the scanner driver stopped unexpectedly (exit code {code})")

    def _send(self, message: tuple[Any, ...]) -> None:
        """A child that died between our liveness check and this write (a broken pipe) is the
        same crash as one that dies while we wait for its reply."""
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            raise self._crashed() from None

    def _receive(self, timeout: float) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while True:
            if self._stop.is_set() and not self._stop_sent:
                self._send(("stop",))
                self._stop_sent = True
            try:
                if self._conn.poll(0.2):
                    reply: tuple[Any, ...] = self._conn.recv()
                    return reply
            except (EOFError, OSError):
                raise self._crashed() from None
            if not self._process.is_alive():
                raise self._crashed()
            if time.monotonic() > deadline:
                self._end_child()
                raise ScannerIOError(f"the scanner did not answer within {timeout:.0f} s")

    def _raise_for(self, reply: tuple[Any, ...]) -> None:
        if reply[0] == "fault":
            raise _FAULTS_BY_TYPE.get(reply[1], ScannerIOError)(reply[2])
        if reply[0] == "no_scanner":
            raise NoScanner(reply[1])

    def open(self) -> None:
        """Start the child and open the device in it (NoScanner/ScannerGone when it cannot)."""
        self._stop_sent = True
        self._start_child()
        self._send(("open",))
        reply = self._receive(self.reply_timeout_s)
        self._raise_for(reply)
        self._model = reply[1]

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        self._stop.clear()
        self._stop_sent = False
        self._start_child()
        self._send(("scan", request.source, request.max_pages))
        finished = False
        try:
            while True:
                reply = self._receive(self.reply_timeout_s)
                if reply[0] == "page":
                    _, data, width, height, dpi, sequence, side = reply
                    yield CapturedPage(data, "image/png", width, height, dpi, sequence, side)
                    continue
                finished = True
                if reply[0] == "done":
                    self._model = reply[1] or self._model
                    return
                # The child reported the fault before its cancel, which may hang (see
                # _child_main): end it, within _end_child's bound; the next batch gets a fresh one.
                self._end_child()
                self._raise_for(reply)
                raise ScannerIOError(f"unexpected reply from the scanner driver: {reply[0]!r}")
        finally:
            if not finished and self._process is not None:
                # The consumer stopped early: end the batch in the child and drain its replies.
                self._stop.set()
                try:
                    while (last := self._receive(30))[0] == "page":
                        pass
                    if last[0] != "done":
                        self._end_child()
                except (ScannerFault, NoScanner) as exc:
                    log.debug("while ending a batch early: %s", exc)

    def recover(self) -> None:
        """End the child: the next batch starts a fresh one (a fresh sane_init)."""
        self._end_child()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._end_child()
