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

import logging
import threading
from collections.abc import Iterator
from typing import Any

from device.capture.base import CapturedPage, CaptureSource, ScanRequest, Side, encode_png
from device.config import SaneScannerConfig
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
        self.applied: dict[str, Any] = {}
        """The option values the device accepted at the last open (for logs and tests)."""

    # --- device life cycle ----------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        return self._model

    def open(self) -> None:
        """Open the configured device (first one found for ``auto``). Raises NoScanner/ScannerGone."""
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
                    image = self._dev.snap(source == "adf")
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
            if self._dev is not None:
                try:
                    self._dev.cancel()
                except _sane.error as exc:
                    log.debug("cancel after batch: %s", exc)
