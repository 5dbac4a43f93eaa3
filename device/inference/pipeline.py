"""The page pipeline: find the document, flatten and straighten it, turn it upright, read its
codes, judge its quality, and (when a classifier is given) say what it is.

Analysis runs on reduced copies, so it costs about the same for any capture; the full-resolution
upright page is only made when asked for (:meth:`PageResult.render`), for the PDF.

>>> from device.inference import synthetic
>>> pipeline = PagePipeline()
>>> result = pipeline.process(synthetic.text_page(seed=3, dpi=150), dpi=150)
>>> result.verdict.codes, result.orientation     # a 150 dpi scan is below the 200 dpi rule
(['low_resolution'], 0)
"""

import logging
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from device.errors import ImageRejected
from device.inference import geometry
from device.inference.codes import Code, read_codes
from device.inference.config import PipelineConfig
from device.inference.osd import Osd
from device.inference.quality import Measures, Verdict, judge, measure

log = logging.getLogger(__name__)

Img = NDArray[Any]  # 8-bit BGR or grey, as OpenCV returns it

#: Physical sizes (long, short side in mm) used to estimate a camera frame's effective dpi.
_FORMATS_MM = {"a4": (297.0, 210.0), "id_card": (85.6, 53.98)}


class ImageTooLarge(ImageRejected):
    """The image has more pixels than the pipeline will decode (``max_pixels``)."""


class Classifier(Protocol):
    """What the document-type classifier offers the pipeline: a type id and a confidence."""

    def classify(self, page: Img) -> tuple[str, float]: ...


@dataclass
class LoadedImage:
    image: Img
    dpi: float | None


def _looks_truncated(data: bytes) -> bool:
    if data[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" not in data[-65536:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-64:]
    return False


def load_image(path: Path, max_pixels: int = 80_000_000) -> LoadedImage:
    """Decode an image file to BGR, refusing unreadable, truncated and oversized files with
    :class:`ImageRejected` before they cost memory."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
            dpi_info = im.info.get("dpi")
            fmt = im.format
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "its size"
        raise ImageTooLarge(f"{path.name}: {size} is more than the {max_pixels:,} this device will decode") from None
    except UnidentifiedImageError as exc:
        raise ImageRejected(f"{path.name}: not an image file we can read ({type(exc).__name__})") from None
    except OSError as exc:
        raise ImageRejected(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # Pillow answers a hostile header with any of a dozen types
        raise ImageRejected(f"{path.name}: not an image file we can read ({type(exc).__name__})") from None
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{path.name}: {width}x{height} pixels is more than the {max_pixels:,} this device will decode"
        )
    dpi: float | None = None
    if isinstance(dpi_info, tuple) and dpi_info and float(dpi_info[0]) > 1:
        dpi = float(dpi_info[0])
    data = path.read_bytes()
    if _looks_truncated(data):
        raise ImageRejected(f"{path.name}: the file is truncated")
    image: Img | None = None
    if fmt in ("JPEG", "PNG"):
        image = decode_image(data)
    if image is None:
        try:
            with Image.open(path) as im:
                im.load()
                rgb = np.asarray(im.convert("RGB"))
        except Exception as exc:  # as above: damaged data surfaces as any type
            raise ImageRejected(f"{path.name}: the image data is damaged ({type(exc).__name__})") from None
        image = np.ascontiguousarray(rgb[..., ::-1])
    return LoadedImage(image, dpi)


def decode_image(data: bytes) -> Img | None:
    """A page file (PNG, JPEG, ...) as the BGR image the pipeline takes; None when it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class _Flat:
    """The document located on an image: the reduced copy, the outline (None: not found) and
    the flattened working copy."""

    reduced: Img = field(repr=False)
    small_factor: float
    doc: geometry.Document | None
    quad: NDArray[np.float32] | None
    flat_w: float
    flat_h: float
    work: Img = field(repr=False)


@dataclass
class PageResult:
    """What the pipeline found out about one page. ``quad`` is in the input's pixels, clockwise
    from the corner nearest the input's top-left; ``orientation`` the clockwise turn the
    flattened page needed; ``skew_deg`` the counter-clockwise lean that was corrected."""

    source_image: Img = field(repr=False)
    quad: NDArray[np.float32] | None
    skew_deg: float
    orientation: int
    orientation_confidence: float
    measures: Measures
    verdict: Verdict
    codes: list[Code]
    dpi: float | None
    doctype: str | None = None
    confidence: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        return "blank" in self.verdict.codes

    @property
    def quality(self) -> Verdict:
        """The verdict under the name the ``inspect`` output and the session use."""
        return self.verdict

    @cached_property
    def page(self) -> Img:
        """The rendered full-resolution page (made on first use, then kept)."""
        return self.render()

    def render(self) -> Img:
        """The page at full resolution: cropped, flattened, deskewed and upright."""
        page = self.source_image
        if self.quad is not None:
            page = geometry.warp(page, self.quad)
        if self.skew_deg:
            page = geometry.rotate_small_angle(page, -self.skew_deg, _paper_colour(page))
        return geometry.turn(page, self.orientation)


def _paper_colour(img: Img) -> tuple[int, int, int]:
    small, _ = geometry.shrink(img, 64)
    c = np.percentile(small.reshape(-1, small.shape[-1] if small.ndim == 3 else 1), 90, axis=0)
    if c.size == 1:
        return (int(c[0]), int(c[0]), int(c[0]))
    return (int(c[0]), int(c[1]), int(c[2]))


def _edge_ink(mask: Img) -> float:
    """How much of the page's text the frame's edges cut through: for the side where it is
    most, the share of the side's length taken by letter-sized ink marks that touch it.

    A page scanned or photographed edge to edge is whole although its paper fills the frame:
    what says it continues past the frame is writing cut by the edge. Long marks along a side
    (the dark line a scanner leaves, a printed frame, a guilloche border, the paper's own edge)
    and big ones (a photo printed to the edge) say nothing about missing text, so they are not
    counted; nor is ink that stops short of the edge, however close (a tight crop's margin)."""
    h, w = mask.shape
    if h < 20 or w < 20:
        return 0.0
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return 0.0
    x, y = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    bw, bh = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    letter = max(3.0, 0.08 * min(h, w))  # the largest a letter can be on a page (a big title)
    band = max(1, round(0.002 * min(h, w)))  # "touches": within a pixel or two of the edge
    # A letter cut by the edge still reaches into the page a good part of a letter's height; the
    # flecks of a scanner's or a bed's edge shading do not.
    inner = (x >= band) & (y >= band) & (x + bw <= w - band) & (y + bh <= h - band)
    glyphs = bh[inner & (bh >= 3) & (bh <= letter) & (bw <= letter)]
    depth = max(2.0, 0.5 * float(np.median(glyphs))) if len(glyphs) >= 20 else 2.0
    shares = []
    for touches, along, across, length in (
        (y < band, bw, bh, w),
        (y + bh > h - band, bw, bh, w),
        (x < band, bh, bw, h),
        (x + bw > w - band, bh, bw, h),
    ):
        cut = touches & (along <= letter) & (across <= letter) & (across >= depth)
        shares.append(float(along[cut].sum()) / length)
    return float(max(shares))


def _top_margin_lines(mask: Img) -> float | None:
    """The blank paper above a till receipt's first line of print, in heights of its lines.

    A receipt cut across by the frame's top edge between two lines has no letter on that edge
    (:func:`_edge_ink` sees nothing) but its first line then starts at once, where a whole one
    has the paper fed out before its header. Rows inked across most of the width (the bed's
    shadow along a found receipt's side, a rule) are not print lines. None when the page has
    too few lines to tell. Marks touching the top edge are left out: a letter cut there is
    :func:`_edge_ink`'s to see, and the rest is the scanner's or the found outline's edge."""
    h, w = mask.shape
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    band = max(1, round(0.002 * min(h, w)))
    edge = np.flatnonzero(stats[:, cv2.CC_STAT_TOP] < band)
    edge = edge[edge > 0]
    ink = mask > 0
    if len(edge):
        ink &= ~np.isin(labels, edge)
    share = ink.mean(axis=1)
    text = (share > 0.01) & (share < 0.6)
    rows = np.flatnonzero(text)
    if len(rows) < 3 or len(rows) > 0.85 * h:  # print on nearly every row: lines not across, no receipt
        return None
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    ends = np.concatenate([rows[breaks], [rows[-1]]])
    heights = ends - starts + 1
    if len(heights) < 4:
        return None
    line = float(np.median(heights))
    lead = np.flatnonzero(share[: starts[0]] >= 0.6)  # a shadow or rule along the top: paper begins after it
    top = int(lead[-1]) + 1 if len(lead) else 0
    return max(0.0, (int(starts[0]) - top) / max(1.0, line))


def _lines_along(gray: Img, card: bool) -> Literal["any", "rows", "columns"]:
    """Which way the text lines can run, from the page's shape: a till receipt and an ID card
    carry their lines along their long side."""
    gh, gw = gray.shape[:2]
    if gh > 1.8 * gw:
        return "rows"
    if gw > 1.8 * gh:
        return "columns"
    if card:
        return "rows" if gw > gh else "columns"
    return "any"


def _effective_dpi(flat_size: tuple[float, float], file_dpi: float | None, scale_to_file: float) -> float:
    """Pixels per inch on the document: the scanner's dpi when the file has one, else from the
    page's size in pixels and the format its proportions suggest (A4 or ID card)."""
    if file_dpi is not None:
        return file_dpi * scale_to_file
    long_px, short_px = max(flat_size), min(flat_size)
    ratio = long_px / max(1.0, short_px)
    name = "id_card" if abs(ratio - 85.6 / 53.98) < abs(ratio - 297 / 210) else "a4"
    long_mm = _FORMATS_MM[name][0]
    return long_px / long_mm * 25.4


class PagePipeline:
    """Runs every stage on one page. ``classifier`` is optional (the document-type model).

    >>> PagePipeline(PipelineConfig(source="camera")).config.source
    'camera'
    """

    def __init__(self, config: PipelineConfig | None = None, classifier: Classifier | None = None) -> None:
        self.config = config or PipelineConfig()
        self.classifier = classifier
        self.osd = Osd(self.config.osd)

    def close(self) -> None:
        self.osd.close()
        close = getattr(self.classifier, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> "PagePipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def smoke_test(self) -> bool:
        """Process a small made-up page end to end (an update's health check: the pipeline and
        its model load and run in the new slot). True, or the error."""
        page = np.full((877, 620, 3), 245, np.uint8)
        page[100:140, 60:560] = 20  # a line of "text"
        self.process(page, source="folder", dpi=200)
        return True

    def _orientation(
        self, gray: Img, mask: Img, work: Img, found: bool, dpi: float | None, flat: tuple[float, float]
    ) -> tuple[int, float]:
        """The clockwise turn that makes the page upright and the pipeline's confidence in it.

        The ink-shape measure is cheap and runs on every page; Tesseract's OSD costs a few hundred
        milliseconds and is asked only when the measure sees the page turned, is unsure that it is
        upright, or cannot tell a till receipt from the same receipt upside down. The page is
        turned when OSD gives the measure's turn (``osd.min_confidence``), or when OSD alone is
        sure of another (``osd.min_confidence_to_overrule``), or, when OSD named a turn without
        being sure, a second reading with more letters names it again surely; otherwise it is
        left as it is: a page turned wrongly is worse than a page left alone."""
        ratio = max(flat) / max(1.0, min(flat))
        card = found and 1.45 <= ratio <= 1.75  # an ID card or a passport page, found in the frame
        lines = _lines_along(gray, card)
        turn, confidence = geometry.estimate_orientation(gray, mask=mask, lines=lines)
        osd = self.config.osd
        # A till receipt, its lines across: the measure cannot tell it from the same receipt
        # upside down however sure it says it is.
        receipt = turn == 0 and lines == "rows" and not card and gray.shape[0] > gray.shape[1]
        if turn == 0 and confidence >= osd.check_upright_below and not receipt:
            return 0, confidence  # the fast path: most pages arrive upright
        page_dpi = _effective_dpi(flat, dpi, 1.0) * min(work.shape[:2]) / max(1.0, min(flat))
        answer = self.osd.detect(work, page_dpi)
        if answer is None or answer.turn == 0:
            return 0, confidence if turn == 0 else 0.0
        agree = answer.turn == turn and confidence >= self.config.min_orientation_confidence
        if agree and answer.confidence >= osd.min_confidence:
            return turn, confidence
        if answer.confidence >= osd.min_confidence_to_overrule:
            return answer.turn, min(1.0, answer.confidence / (2 * osd.min_confidence_to_overrule))
        if answer.confidence >= osd.min_confidence and osd.second_reading_letters > osd.max_letters:
            # Named but not sure: a longer reading settles most of these.
            second = self.osd.detect(work, page_dpi, osd.second_reading_letters)
            sure = second is not None and second.confidence >= osd.second_reading_min_confidence
            if second is not None and sure and second.turn == answer.turn:
                return second.turn, min(1.0, second.confidence / (4 * osd.second_reading_min_confidence))
        log.debug("page left as it is: own measure %s (%.2f), OSD %s", turn, confidence, answer)
        return 0, 0.0

    def process_file(self, path: Path) -> PageResult:
        """Load and process an image file (see :func:`load_image` for what is refused)."""
        start = time.perf_counter()
        loaded = load_image(path, self.config.max_pixels)
        decode_ms = (time.perf_counter() - start) * 1000
        result = self.process(loaded.image, dpi=loaded.dpi)
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result

    def process(self, image: Img, dpi: float | None = None, source: str | None = None) -> PageResult:
        """Analyse a BGR (or grey) page image. ``dpi``: the scanner's, when known. ``source``:
        ``scan``/``scanner``, ``camera``, or None/``folder`` to decide from the config and dpi."""
        return self._analyse(image, dpi, source, preview=False)

    def analyze_preview(self, image: Img) -> PageResult:
        """What live camera guidance needs from one preview frame: the outline and the quality
        issues. Orientation, codes and the document type are left out (``orientation`` 0, no
        codes, no type): the classifier alone is most of :meth:`process`'s time, and a kiosk
        looks at several frames a second on a small board.

        >>> from device.inference import synthetic
        >>> PagePipeline().analyze_preview(synthetic.text_page(seed=3, dpi=60)).codes
        []
        """
        return self._analyse(image, None, "camera", preview=True)

    def read_codes(self, image: Img) -> list[Code]:
        """Only the codes on a camera image: the document found and flattened as :meth:`process`
        does (so a small slip keeps its resolution), then read; no orientation (the reader finds
        codes at any angle), no classifier, no quality. The kiosk reads a receipt slip's QR this
        way, at a fraction of :meth:`process`'s cost."""
        image = self._bgr(image)
        return read_codes(self._flatten(image, "camera").work, self.config.codes)

    def _bgr(self, image: Img) -> Img:
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ImageRejected(f"unsupported image shape {image.shape}")
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.shape[0] * image.shape[1] > self.config.max_pixels:
            raise ImageTooLarge(f"{image.shape[1]}x{image.shape[0]} pixels is more than {self.config.max_pixels:,}")
        return image

    def _flatten(self, image: Img, kind: Literal["scan", "camera"]) -> _Flat:
        """The document found on a reduced copy and flattened at working size (or the whole
        reduced image when no document outline is found)."""
        cfg = self.config
        h, w = image.shape[:2]
        # One reduction of the full image serves every later copy.
        reduced, _ = geometry.shrink(image, 1 << 30, cfg.work_short_side)
        small, small_factor = geometry.shrink(reduced, cfg.detect_long_side)
        detect_factor = small_factor * reduced.shape[0] / h
        doc = geometry.find_document(small)
        if doc is not None and kind == "scan" and doc.area_frac > 0.6 and doc.corners_outside >= 2:
            # A page filling most of the bed, split by a dark picture: the bed is the page.
            doc = None
        quad: NDArray[np.float32] | None = None
        if doc is not None:
            quad = (doc.quad / detect_factor).astype(np.float32)
            flat_w, flat_h = geometry.quad_size(quad)
            scale = min(1.0, cfg.work_short_side / max(1.0, min(flat_w, flat_h)))
            work = geometry.warp(image, quad, scale)
        else:
            flat_w, flat_h = float(w), float(h)
            work = reduced
        return _Flat(reduced, small_factor, doc, quad, flat_w, flat_h, work)

    def _analyse(self, image: Img, dpi: float | None, source: str | None, *, preview: bool) -> PageResult:
        cfg = self.config
        image = self._bgr(image)
        kind: Literal["scan", "camera"]
        if source in ("scan", "scanner"):
            kind = "scan"
        elif source == "camera":
            kind = "camera"
        elif cfg.source != "auto":
            kind = cfg.source
        else:
            kind = "scan" if dpi is not None and dpi >= 100 else "camera"
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = (now - clock) * 1000
            clock = now

        flat = self._flatten(image, kind)
        reduced, small_factor, doc, quad, work = flat.reduced, flat.small_factor, flat.doc, flat.quad, flat.work
        flat_w, flat_h = flat.flat_w, flat.flat_h
        analysis, _ = geometry.shrink(work, 2 * cfg.analysis_short_side, cfg.analysis_short_side)
        gray = geometry.to_gray(analysis)
        mask = geometry.ink_mask(gray)
        lap("geometry")

        skew = 0.0
        if doc is None:
            angle, conf = geometry.estimate_skew(gray, mask=mask)
            if conf > 0.05 and abs(angle) >= cfg.min_skew_correction_deg:
                skew = angle
                work = geometry.rotate_small_angle(work, -skew, _paper_colour(work))
                gray = geometry.rotate_small_angle(gray, -skew, 255)
                mask = geometry.ink_mask(gray)
        lap("deskew")

        if preview:
            orientation, o_conf = 0, 0.0
        else:
            orientation, o_conf = self._orientation(gray, mask, work, doc is not None, dpi, (flat_w, flat_h))
        work = geometry.turn(work, orientation)
        mask = geometry.turn(mask, orientation)
        lap("orientation")

        codes = read_codes(work, cfg.codes) if cfg.codes.enabled and not preview else []
        lap("codes")

        doctype: str | None = None
        confidence: float | None = None
        if self.classifier is not None and not preview:
            try:
                doctype, confidence = self.classifier.classify(work)
            except ImageRejected:
                raise
            except Exception as exc:  # a broken model must not stop the scan: type left empty
                log.warning("document-type classifier failed on a page: %s", type(exc).__name__)
        lap("doctype")

        m = measure(work)
        m.source = kind
        m.dpi = _effective_dpi((flat_w, flat_h), dpi, 1.0)
        edge_ink = _edge_ink(mask)
        if doc is not None:
            m.skew_deg = geometry.quad_angle(doc.quad)
            m.perspective_deg = geometry.quad_distortion(doc.quad)
            m.area_fraction = doc.area_frac
            if kind == "camera":
                m.border_contact = doc.border_contact
                m.corners_outside = doc.corners_outside
            else:
                # On a scanner a small document is laid against the bed's corner: touching the
                # frame is normal there; text cut by the frame's edge is not.
                # Only the document's own ink counts: marks on the bed or its cover are not text.
                bed, bed_factor = geometry.shrink(reduced, 2 * cfg.analysis_short_side, cfg.analysis_short_side)
                inside = np.zeros(bed.shape[:2], np.uint8)
                corners = doc.quad / small_factor * bed_factor
                cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 255)
                m.border_contact = _edge_ink(cv2.bitwise_and(geometry.ink_mask(geometry.to_gray(bed)), inside))
        else:
            m.skew_deg = skew
            m.fills_frame = True
            m.area_fraction = 1.0
            m.border_contact = edge_ink
        # A till receipt, upright, filling the frame or running into it: a receipt seen whole on
        # a bed or desk shows its top end, however close its print comes to the found outline.
        if work.shape[0] > 1.8 * work.shape[1] and (doc is None or doc.border_contact > 0):
            m.top_margin_lines = _top_margin_lines(mask)
        verdict = judge(m, cfg.quality, doctype)
        lap("quality")

        return PageResult(
            source_image=image,
            quad=quad,
            skew_deg=skew,
            orientation=orientation,
            orientation_confidence=o_conf,
            measures=m,
            verdict=verdict,
            codes=codes,
            dpi=m.dpi,
            doctype=doctype,
            confidence=confidence,
            timings_ms=timings,
        )
