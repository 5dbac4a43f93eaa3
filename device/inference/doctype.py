"""What kind of document a page is, on the device, with the int8 TFLite model the project trains.

The model file, its labels and its version come from :class:`DoctypeConfig`, so a new model can
be swapped in (later rolled out from the fleet) without a code change. The TFLite runtime
(``ai_edge_litert``, else ``tflite_runtime``) is imported on first load, never at import time.
The image model is fused with the page's printed title (:mod:`device.inference.titles`, read by
Tesseract when it is installed): a title read clearly decides; otherwise the title's weaker clues
reweigh the image model's probabilities. A page neither is sure of is ``unsure`` (not a class of
the model: the clerk is asked what it is), with the (low) confidence kept.

>>> with load_classifier(DoctypeConfig()) as clf:          # the model shipped in device/models
...     result = clf.classify(page_bgr)                    # doctest: +SKIP
>>> result.doctype, result.confidence                      # doctest: +SKIP
('birth_certificate', 0.98)

If the model cannot be used the device must keep scanning: :func:`load_classifier_or_fallback`
logs why once and answers ``DoctypeResult("other", 0.0)`` for every page.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

import cv2
import numpy as np

from device.errors import ImageRejected, ModelError
from device.inference.config import DoctypeConfig
from device.inference.titles import TitleEvidence, TitleReader, is_card
from protocol.doctypes import DOCTYPES as DOCTYPES  # the classes and their names live in the contract
from protocol.doctypes import LABELS_VI as LABELS_VI
from protocol.doctypes import OTHER as OTHER
from protocol.doctypes import UNSURE as UNSURE
from protocol.doctypes import UNSURE_VI as UNSURE_VI

_log = logging.getLogger(__name__)

#: Where the shipped model lives (inside the installed package).


#: A title read at least this well decides the type whatever the image model says.
STRONG_TITLE = 0.8

#: Classes whose papers always print their title: when the title was read (enough words) but
#: names none of them, the image model's vote for one of them is halved.
_TITLED = ("birth_certificate", "marriage_certificate", "land_certificate", "dossier_receipt",
           "official_document", "application_form", "household_book")
_TFLITE_MAGIC = b"TFL3"
_PAD_VALUE = 128  # letterbox colour: neutral grey, as in training


class DoctypeResult(NamedTuple):
    """A page's document type (a class id) and the model's confidence in [0, 1]."""

    doctype: str
    confidence: float


class DoctypeClassifier(Protocol):
    """What the page pipeline needs from a classifier (the real one or the fallback)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def version(self) -> str: ...

    def classify(self, page_bgr: np.ndarray) -> DoctypeResult: ...

    def close(self) -> None: ...


def prepare(page_bgr: np.ndarray, size: int) -> np.ndarray:
    """The model's input for a page: RGB uint8 ``(size, size, 3)``, the page letterboxed on grey
    so its aspect ratio (card, receipt strip, A4) stays visible. Training uses this very function.

    A 300 dpi A4 page is first decimated (nearest) to four times the target size: area-averaging
    all 24 megapixels would cost ~17 ms on one core, this costs ~2 ms.
    """
    img = _as_bgr(page_bgr)
    h, w = img.shape[:2]
    longest = max(h, w)
    if longest > 4 * size:
        f = 4 * size / longest
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_NEAREST)
    scale = size / longest
    nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.full((size, size, 3), _PAD_VALUE, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small[..., ::-1]
    return out


def _as_bgr(page: np.ndarray) -> np.ndarray:
    if not isinstance(page, np.ndarray) or page.size == 0 or page.dtype != np.uint8:
        raise ImageRejected("page must be a non-empty uint8 image array")
    if page.ndim == 2:
        return np.asarray(cv2.cvtColor(page, cv2.COLOR_GRAY2BGR))
    if page.ndim == 3 and page.shape[2] == 4:
        return page[..., :3]
    if page.ndim == 3 and page.shape[2] == 3:
        return page
    raise ImageRejected(f"page must be grey, BGR or BGRA, not shape {page.shape}")


def read_labels(path: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """Class ids in output order and their Vietnamese labels, from a label file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read doctype label file {path}: {exc}") from exc
    ids: list[str] = []
    names: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cid, _, name = line.partition("\t")
        cid = cid.strip()
        if not cid or cid in names:
            raise ModelError(f"{path}:{n}: empty or repeated class id {cid!r}")
        ids.append(cid)
        names[cid] = name.strip() or cid
    if not ids:
        raise ModelError(f"doctype label file {path} lists no classes")
    return tuple(ids), names


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("no TFLite runtime: install ai-edge-litert (or tflite-runtime)") from exc
    return Interpreter


def fuse(probs: np.ndarray, labels: tuple[str, ...], title: TitleEvidence, min_confidence: float) -> DoctypeResult:
    """One answer from the image model's probabilities (``labels`` order) and the title's evidence.

    A title read at :data:`STRONG_TITLE` or better decides, its confidence raised by the image's
    agreement (noisy-or). Otherwise the title's weaker clues multiply the image's probabilities:
    a class named weakly gains, the national motto rules out shop receipts and `other`, a page
    of foreign text with no title and no motto leans to `other`, and a titled class whose title
    was not found where the text was read loses half. Below ``min_confidence``: :data:`UNSURE`.

    >>> labels = ("birth_certificate", "receipt", "other")
    >>> fuse(np.array([0.1, 0.2, 0.7]), labels, TitleEvidence("birth_certificate", 0.9, read=True), 0.5)
    DoctypeResult(doctype='birth_certificate', confidence=0.91)
    >>> fuse(np.array([0.4, 0.3, 0.3]), labels, TitleEvidence(), 0.5).doctype
    'unsure'
    """
    p = np.clip(np.asarray(probs, np.float64), 0.0, None)
    p = p / p.sum() if p.sum() > 0 else np.full(len(labels), 1.0 / max(1, len(labels)))
    index = {name: i for i, name in enumerate(labels)}
    if title.doctype in index and title.strength >= STRONG_TITLE:
        i = index[title.doctype]
        conf = round(1.0 - (1.0 - title.strength) * (1.0 - float(p[i])), 3)
        return DoctypeResult(labels[i], conf) if conf >= min_confidence else DoctypeResult(UNSURE, conf)
    if title.read:
        weight = np.ones_like(p)
        for name, score in title.scores.items():
            if name in index:
                weight[index[name]] += 4.0 * score
        if title.official:
            for name in ("receipt", OTHER):
                if name in index:
                    weight[index[name]] *= 0.3
        elif title.words >= 40 and title.vietnamese < 0.06 and not title.scores and OTHER in index:
            weight[index[OTHER]] *= 3.0
        if title.words >= 15:
            for name in _TITLED:
                if name in index and title.scores.get(name, 0.0) == 0.0:
                    weight[index[name]] *= 0.5
        p = p * weight
        p = p / p.sum()
    best = int(np.argmax(p))
    conf = round(float(min(1.0, max(0.0, p[best]))), 3)
    if conf < min_confidence:
        return DoctypeResult(UNSURE, conf)
    return DoctypeResult(labels[best], conf)


class Classifier:
    """A loaded document-type model. Thread-safe; one interpreter thread by default.

    >>> with load_classifier(DoctypeConfig()) as clf:      # doctest: +SKIP
    ...     clf.classify(page_bgr).doctype
    'receipt'
    """

    def __init__(self, interpreter: Any, labels: tuple[str, ...], labels_vi: dict[str, str], version: str,
                 min_confidence: float, titles: TitleReader | None = None) -> None:
        self._interp = interpreter
        self.titles = titles
        self._labels = labels
        self.labels_vi = labels_vi
        self._version = version
        self._min_conf = min_confidence
        self._lock = threading.Lock()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._in_index: int = inp["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_q: tuple[float, int] = tuple(inp["quantization"])
        self._out_index: int = out["index"]
        self._out_q: tuple[float, int] = tuple(out["quantization"])
        self._out_dtype = np.dtype(out["dtype"])
        self.input_size: int = int(inp["shape"][1])
        self._closed = False
        #: Pages whose title was read (Tesseract asked), for benchmarks and the health report.
        self.title_readings = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def version(self) -> str:
        return self._version

    def scores(self, prepared_rgb: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, output order) for an input made by :func:`prepare`."""
        x = prepared_rgb[None, ...]
        if self._in_dtype == np.uint8 and self._in_q == (1.0, 0):
            feed = x
        elif self._in_dtype in (np.uint8, np.int8):
            scale, zero = self._in_q
            info = np.iinfo(self._in_dtype)
            feed = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in_dtype)
        else:
            feed = x.astype(self._in_dtype)
        with self._lock:
            if self._closed:
                raise ModelError("the doctype classifier is closed")
            self._interp.set_tensor(self._in_index, feed)
            self._interp.invoke()
            raw = self._interp.get_tensor(self._out_index)[0]
        if self._out_dtype in (np.uint8, np.int8):
            scale, zero = self._out_q
            probs = (raw.astype(np.float32) - zero) * scale
        else:
            probs = raw.astype(np.float32)
        total = float(probs.sum())
        if not 0.9 < total < 1.1:  # logits rather than probabilities
            e = np.exp(probs - probs.max())
            probs = e / e.sum()
        return np.asarray(probs, np.float32)

    def classify(self, page_bgr: np.ndarray) -> DoctypeResult:
        """The page's type from the image and (when a title reader is set) its printed title, or
        :data:`UNSURE` below the confidence floor.

        With the title reader's ``when="unsure"`` (the default) the image model answers first and
        Tesseract is asked only when that answer is below the floor or is ``other``: a page the
        image model is sure is one of the counter's classes is typed in milliseconds, and only the
        pages that would otherwise be a question to the clerk, or set aside as none of the counter's
        papers, wait for a reading (real papers unlike the training renders come out ``other``
        with high confidence: their printed title is what says they are not). With
        ``when="always"`` every page's title is read, in a child process started before the image
        model runs."""
        prepared = prepare(page_bgr, self.input_size)  # checks the page before a reading starts
        if self.titles is None:
            return fuse(self.scores(prepared), self._labels, TitleEvidence(), self._min_conf)
        if self.titles.config.when == "always":
            pending = self.titles.start(page_bgr)
            probs = self.scores(prepared)
            self.title_readings += 1
            return fuse(probs, self._labels, pending.result(), self._min_conf)
        probs = self.scores(prepared)
        image = fuse(probs, self._labels, TitleEvidence(), self._min_conf)
        if image.doctype not in (UNSURE, OTHER):
            return image
        self.title_readings += 1
        title = self.titles.read(page_bgr)
        if title.strength < STRONG_TITLE and not is_card(page_bgr.shape):
            # No title at the head of a tall page: perhaps a photo in which the document was not
            # found (a card lying small on a desk). Read it whole, as a card, once more.
            self.title_readings += 1
            whole = self.titles.read(page_bgr, whole=True)
            if whole.strength > title.strength:
                title = whole
        return fuse(probs, self._labels, title, self._min_conf)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._interp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FallbackClassifier:
    """Stands in when the model cannot be loaded: every page is ``other`` with confidence 0, unless
    a title reader is given and reads a title clearly."""

    def __init__(self, reason: str = "", titles: TitleReader | None = None) -> None:
        self.reason = reason
        self.titles = titles

    @property
    def labels(self) -> tuple[str, ...]:
        return DOCTYPES

    @property
    def version(self) -> str:
        return "none"

    def classify(self, page_bgr: np.ndarray) -> DoctypeResult:
        if self.titles is not None:
            title = self.titles.read(_as_bgr(page_bgr))
            if title.doctype is not None and title.strength >= STRONG_TITLE:
                return DoctypeResult(title.doctype, round(title.strength, 3))
        return DoctypeResult(OTHER, 0.0)

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _read_version(cfg: DoctypeConfig) -> str:
    if cfg.version:
        return cfg.version
    vfile = cfg.model_path.with_name(cfg.model_path.stem + "_version.txt")
    try:
        return vfile.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def load_classifier(cfg: DoctypeConfig) -> Classifier:
    """Load and check the model; raise :class:`ModelError` with a one-line reason if the file is
    missing, truncated or not a TFLite model, or if the label file disagrees with its output."""
    path = cfg.model_path
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"doctype model {path} cannot be read: {exc.strerror or exc}") from exc
    if len(blob) < 16 or blob[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"doctype model {path} is not a TFLite model (wrong or empty file)")
    labels, labels_vi = read_labels(cfg.labels_path)
    interpreter_cls = _interpreter_class()
    try:
        interp = interpreter_cls(model_content=blob, num_threads=cfg.num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"doctype model {path} is damaged or truncated: {str(exc).splitlines()[0]}") from exc
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"doctype model {path} must have one input and one output")
    shape = [int(v) for v in inputs[0]["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"doctype model {path} wants input {shape}, expected [1, N, N, 3]")
    if cfg.input_size is not None and shape[1] != cfg.input_size:
        raise ModelError(f"doctype model {path} takes {shape[1]} px input, config says {cfg.input_size}")
    n_out = int(outputs[0]["shape"][-1])
    if n_out != len(labels):
        raise ModelError(
            f"doctype label file {cfg.labels_path} lists {len(labels)} classes but the model outputs {n_out}"
        )
    version = _read_version(cfg)
    _log.info("doctype model %s loaded: version %s, %d classes, %d px input", path.name, version, n_out, shape[1])
    return Classifier(interp, labels, labels_vi, version, cfg.min_confidence, title_reader(cfg))


def title_reader(cfg: DoctypeConfig) -> TitleReader | None:
    """The title reader ``cfg`` asks for, or None when it is off or Tesseract is missing."""
    reader = TitleReader(cfg.text)
    if not reader.available:
        if cfg.text.enabled is None:
            _log.info("tesseract with %r is not installed: pages are typed from the image alone", cfg.text.language)
        return None
    return reader


def load_classifier_or_fallback(cfg: DoctypeConfig) -> Classifier | FallbackClassifier:
    """:func:`load_classifier`, or, if the model is unusable, log why once and return a
    :class:`FallbackClassifier` so the device keeps scanning with type ``other``."""
    try:
        return load_classifier(cfg)
    except ModelError as exc:
        _log.error("document-type model unusable, pages are typed from their title or 'other': %s", exc)
        return FallbackClassifier(str(exc), title_reader(cfg))
