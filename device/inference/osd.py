"""A second opinion on which way up a page is: Tesseract's orientation and script detection (OSD).

The pipeline's own orientation measure (:func:`device.inference.geometry.estimate_orientation`)
is cheap but can be fooled by guilloche borders, card designs, patterned desks and till receipts.
Tesseract's OSD classifies the shapes of single letters, so it is not fooled the same way; it
costs a few hundred milliseconds a page, so the pipeline asks it only when its own measure says
the page is turned or is unsure that it is upright (see ``PagePipeline._orientation``).

Tesseract is used through its C API (``libtesseract``, loaded on first use and kept, so the OSD
model is read once per process), one thread, at most ``max_letters`` letters a page. When the
library or its ``osd`` data (Debian: ``tesseract-ocr-osd``) is missing, :meth:`Osd.detect`
returns None and the caller leaves the page as it is.

>>> import numpy as np
>>> with Osd(OsdConfig(enabled=False)) as osd:
...     osd.detect(np.full((100, 100), 255, np.uint8)) is None
True
"""

import ctypes
import ctypes.util
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from device.inference.config import OsdConfig

log = logging.getLogger(__name__)

Img = NDArray[Any]

_PSM_OSD_ONLY = 0


@dataclass(frozen=True)
class OsdAnswer:
    """Tesseract's answer: the clockwise turn (0, 90, 180, 270) that makes the page upright,
    and its confidence."""

    turn: int
    confidence: float


class _Api:
    """The few calls of Tesseract's C API that OSD needs, on one handle."""

    def __init__(self, lib: ctypes.CDLL, max_letters: int) -> None:
        p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        lib.TessBaseAPICreate.restype = p
        lib.TessBaseAPIInit3.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p]
        lib.TessBaseAPIInit3.restype = i
        lib.TessBaseAPISetPageSegMode.argtypes = [p, i]
        lib.TessBaseAPISetVariable.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p]
        lib.TessBaseAPISetVariable.restype = i
        lib.TessBaseAPISetImage.argtypes = [p, p, i, i, i, i]
        lib.TessBaseAPISetSourceResolution.argtypes = [p, i]
        lib.TessBaseAPIDetectOrientationScript.argtypes = [
            p, ctypes.POINTER(i), ctypes.POINTER(f), ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(f)
        ]
        lib.TessBaseAPIDetectOrientationScript.restype = i
        lib.TessBaseAPIClear.argtypes = [p]
        lib.TessBaseAPIDelete.argtypes = [p]
        self.lib = lib
        self.handle: int | None = lib.TessBaseAPICreate()
        if lib.TessBaseAPIInit3(self.handle, None, b"osd") != 0:
            lib.TessBaseAPIDelete(self.handle)
            self.handle = None
            return
        lib.TessBaseAPISetPageSegMode(self.handle, _PSM_OSD_ONLY)
        self.max_letters = 0
        self.letters(max_letters)
        lib.TessBaseAPISetVariable(self.handle, b"debug_file", b"/dev/null")

    def letters(self, max_letters: int) -> None:
        """Classify at most ``max_letters`` letters a page (and need at least a fifth of them)."""
        if max_letters != self.max_letters:
            # Tesseract looks at 5 x min_characters_to_try letters at most.
            self.lib.TessBaseAPISetVariable(self.handle, b"min_characters_to_try",
                                            str(max(4, max_letters // 5)).encode())
            self.max_letters = max_letters

    def detect(self, gray: Img, dpi: int) -> OsdAnswer | None:
        assert self.handle is not None
        lib = self.lib
        lib.TessBaseAPISetImage(self.handle, gray.ctypes.data, gray.shape[1], gray.shape[0], 1, gray.strides[0])
        lib.TessBaseAPISetSourceResolution(self.handle, dpi)
        degrees, confidence = ctypes.c_int(), ctypes.c_float()
        script, script_confidence = ctypes.c_char_p(), ctypes.c_float()
        found = lib.TessBaseAPIDetectOrientationScript(
            self.handle, ctypes.byref(degrees), ctypes.byref(confidence), ctypes.byref(script),
            ctypes.byref(script_confidence),
        )
        lib.TessBaseAPIClear(self.handle)
        if not found:
            return None  # too few letters to tell
        # Tesseract reports how far the page is turned clockwise; the fix is the turn back.
        return OsdAnswer((360 - degrees.value) % 360, float(confidence.value))

    def close(self) -> None:
        if self.handle is not None:
            self.lib.TessBaseAPIDelete(self.handle)
            self.handle = None


class Osd:
    """Tesseract's orientation detection on page images; one per pipeline, safe across threads.

    >>> Osd().config.min_confidence_to_overrule
    1.5
    """

    def __init__(self, config: OsdConfig | None = None) -> None:
        self.config = config or OsdConfig()
        self._api: _Api | None = None
        self._tried = False
        self._lock = threading.Lock()
        #: Readings Tesseract was asked for (benchmarks count what the check costs).
        self.calls = 0

    def available(self) -> bool:
        """Whether Tesseract and its ``osd`` data could be loaded (tried once)."""
        with self._lock:
            return self._load() is not None

    def _load(self) -> _Api | None:
        if not self._tried:
            self._tried = True
            self._api = _open(self.config.max_letters)
        return self._api

    def detect(self, page: Img, dpi: float | None = None, max_letters: int | None = None) -> OsdAnswer | None:
        """Tesseract's answer for a deskewed page (grey or BGR), or None when the check is off,
        Tesseract is missing, or there are too few letters to tell. ``dpi``: of ``page``, when
        known (Tesseract sizes its letter filter by it). ``max_letters``: instead of the config's
        (a longer, surer reading costs about twice the time for three times the letters; a page
        with fewer than a fifth of them gets no answer)."""
        if not self.config.enabled:
            return None
        gray = page if page.ndim == 2 else cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape[:2]
        dpi = dpi or 200.0
        factor = min(self.config.target_dpi / dpi, self.config.long_side / max(h, w), 4.0)
        if abs(factor - 1.0) > 0.05:
            interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_CUBIC
            gray = cv2.resize(gray, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interpolation)
        else:
            factor = 1.0
        gray = np.ascontiguousarray(gray, dtype=np.uint8)
        resolution = round(dpi * factor)
        with self._lock:
            api = self._load()
            if api is None:
                return None
            self.calls += 1
            api.letters(max_letters or self.config.max_letters)
            return api.detect(gray, max(70, min(1200, resolution)))

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    def __enter__(self) -> "Osd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(max_letters: int) -> _Api | None:
    # OpenMP reads its thread limit when the library loads: one thread, the pipeline's core.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    name = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        log.warning("Tesseract (libtesseract) is not installed: pages are never turned")
        return None
    api = _Api(lib, max_letters)
    if api.handle is None:
        log.warning("Tesseract has no osd data (package tesseract-ocr-osd): pages are never turned")
        return None
    return api
