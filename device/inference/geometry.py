"""Where the document is in a frame, how it is turned, and how to make it flat and upright.

Everything here works on a small analysis copy of the image (a few hundred pixels a side), so it
costs the same for a 640x480 preview frame and a 300 dpi A4 scan; coordinates are scaled back by
the caller.

>>> import numpy as np
>>> frame = np.full((480, 640, 3), 60, np.uint8)
>>> frame[100:380, 200:420] = 235
>>> found = find_document(frame)
>>> bool(np.abs(found.quad - [[200, 100], [419, 100], [419, 379], [200, 379]]).max() < 4)
True
"""

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

Img = NDArray[Any]  # 8-bit BGR or grey, as OpenCV returns it
Quad = NDArray[np.float32]


@dataclass(frozen=True)
class Document:
    """A document found in a frame.

    ``quad``: its corners in the frame's pixels, clockwise from the one nearest the frame's
    top-left. ``area_frac``: its share of the frame. ``border_contact``: the largest share of any
    frame side that the document runs into (0 when it lies wholly inside). ``corners_outside``:
    how many corners fall on or beyond the frame's edge.
    """

    quad: Quad
    area_frac: float
    border_contact: float
    corners_outside: int


def shrink(img: Img, long_side: int, short_side: int | None = None) -> tuple[Img, float]:
    """A copy whose long side is at most ``long_side`` (and short side at most ``short_side``,
    when given), and the factor applied."""
    h, w = img.shape[:2]
    factor = min(1.0, long_side / max(h, w))
    if short_side is not None:
        factor = min(1.0, short_side / min(h, w))
    if factor >= 1.0:
        return img, 1.0
    # Area averaging where pixels are dropped in bulk (no aliasing); bilinear for mild
    # reductions, where it looks the same and OpenCV's area path is several times slower.
    interpolation = cv2.INTER_AREA if factor < 0.6 or factor == 0.5 else cv2.INTER_LINEAR
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interpolation)
    return small, factor


def levels(gray: Img, percents: tuple[float, ...]) -> list[float]:
    """Percentiles of an 8-bit image from its histogram (much faster than sorting pixels)."""
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist)
    total = float(cdf[-1]) or 1.0
    return [float(np.searchsorted(cdf, p / 100.0 * total)) for p in percents]


def to_gray(img: Img) -> Img:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def order_quad(points: NDArray[Any]) -> Quad:
    """Four points clockwise (on screen, y down) starting from the one nearest the top-left."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]
    first = int(np.argmin(pts.sum(axis=1)))
    return np.roll(pts, -first, axis=0)


def _quad_from_contour(contour: NDArray[np.int32]) -> Quad:
    hull = cv2.convexHull(contour)
    perimeter = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.05, 0.08):
        approx = cv2.approxPolyDP(hull, eps * perimeter, True)
        if len(approx) == 4:
            return order_quad(approx.reshape(4, 2).astype(np.float32))
        if len(approx) < 4:
            break
    # Rounded or occluded outline: the rectangle of least area still gives the right corners
    # for a flat page; the diagonal extremes are better under perspective, so keep whichever
    # covers the hull more tightly.
    pts = hull.reshape(-1, 2).astype(np.float32)
    s = pts.sum(axis=1)
    d = pts[:, 0] - pts[:, 1]
    extremes = np.array([pts[np.argmin(s)], pts[np.argmax(d)], pts[np.argmax(s)], pts[np.argmin(d)]])
    box = cv2.boxPoints(cv2.minAreaRect(pts))
    hull_area = cv2.contourArea(hull)
    ext_area = cv2.contourArea(extremes)
    box_area = cv2.contourArea(box)
    if len({tuple(p) for p in extremes.tolist()}) == 4 and ext_area >= 0.9 * hull_area and ext_area <= box_area:
        return order_quad(extremes)
    return order_quad(box)


def paper_mask(small: Img) -> Img:
    """Pixels that look like paper: bright and unsaturated, text gaps closed."""
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    whiteness = cv2.subtract(hsv[..., 2], cv2.convertScaleAbs(hsv[..., 1], alpha=0.6))
    whiteness = cv2.GaussianBlur(whiteness, (5, 5), 0)
    _, mask = cv2.threshold(whiteness, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # A light background (grey scanner lid, cardboard, a pale desk) falls on the paper's side
    # of the first split; split the bright side again and keep the upper part when the two are
    # clearly different materials rather than shading of one sheet.
    upper = whiteness[mask > 0]
    if upper.size > 100:
        t2, _ = cv2.threshold(upper.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        hi = upper[upper > t2]
        lo = upper[upper <= t2]
        big_enough = hi.size > max(0.02 * whiteness.size, 0.1 * upper.size)
        # A burnt highlight on the page is not a second sheet: clipped white, and small.
        burnt = float(np.median(hi)) >= 253 if hi.size else False
        glare_spot = burnt and hi.size < 0.3 * upper.size
        if big_enough and not glare_spot and lo.size and float(hi.mean()) - float(lo.mean()) > 45:
            _, mask = cv2.threshold(whiteness, t2, 255, cv2.THRESH_BINARY)
    k = max(3, round(min(small.shape[:2]) * 0.02)) | 1
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return mask


def find_document(small: Img, min_area_frac: float = 0.02) -> Document | None:
    """The largest paper-like region of ``small`` (BGR) as a quadrilateral, or None when there is
    none or when the page fills the whole frame (a full-bed scan: the frame is the page)."""
    h, w = small.shape[:2]
    mask = paper_mask(small)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = float(stats[best, cv2.CC_STAT_AREA])
    if area < min_area_frac * h * w:
        return None
    comp = (labels == best).astype(np.uint8)
    contact = [
        float(comp[0, :].mean()),
        float(comp[-1, :].mean()),
        float(comp[:, 0].mean()),
        float(comp[:, -1].mean()),
    ]
    if area > 0.85 * h * w and sum(c > 0.6 for c in contact) >= 3:
        return None
    contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    quad = _quad_from_contour(contour)
    margin = 0.01 * min(h, w)
    outside = int(
        np.sum(
            (quad[:, 0] <= margin)
            | (quad[:, 1] <= margin)
            | (quad[:, 0] >= w - 1 - margin)
            | (quad[:, 1] >= h - 1 - margin)
        )
    )
    quad_area = float(cv2.contourArea(quad))
    return Document(quad, quad_area / (h * w), max(contact), outside)


def quad_size(quad: Quad) -> tuple[float, float]:
    """Width and height of the flat page the quad shows (longer of each pair of opposite sides)."""
    q = quad.astype(np.float64)
    width = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
    height = max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))
    return float(width), float(height)


def quad_angle(quad: Quad) -> float:
    """How far the quad's top and bottom edges turn from horizontal, in degrees (signed,
    positive = counter-clockwise on screen), folded into -45..45."""
    q = quad.astype(np.float64)
    angles = []
    for a, b in ((q[0], q[1]), (q[3], q[2])):
        angles.append(math.degrees(math.atan2(-(b[1] - a[1]), b[0] - a[0])))
    angle = float(np.mean(angles))
    return (angle + 45.0) % 90.0 - 45.0


def quad_distortion(quad: Quad) -> float:
    """Largest departure of a corner's angle from 90 degrees: how much perspective there is."""
    q = quad.astype(np.float64)
    worst = 0.0
    for i in range(4):
        a, b, c = q[i - 1], q[i], q[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(np.dot(u, v) / max(1e-9, np.linalg.norm(u) * np.linalg.norm(v)))
        worst = max(worst, abs(math.degrees(math.acos(max(-1.0, min(1.0, cos)))) - 90.0))
    return worst


def warp(img: Img, quad: Quad, scale: float = 1.0) -> Img:
    """The quad's content as a flat rectangle (same turn as in the frame), its size times
    ``scale`` (a reduced copy costs only its own pixels)."""
    width, height = quad_size(quad)
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    dst = np.array([(0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1)], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ink_mask(gray: Img) -> Img:
    """Dark marks on paper (text, lines), robust to uneven lighting."""
    block = max(15, (min(gray.shape[:2]) // 20) | 1)
    # 25 levels below the local mean: thermal-paper grain and JPEG noise stay out of it.
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 25)


def _profile_score(ys: NDArray[np.float64], size: int) -> float:
    hist = np.bincount(np.clip(ys, 0, size - 1).astype(np.int64), minlength=size).astype(np.float64)
    return float(np.dot(hist, hist))


def estimate_skew(gray: Img, max_deg: float = 15.0, mask: Img | None = None) -> tuple[float, float]:
    """Angle of the text lines from horizontal in degrees (positive = counter-clockwise on
    screen) and a confidence in 0..1, from projection profiles of the ink (``mask``: the ink
    mask when the caller has it already)."""
    if mask is None:
        mask = ink_mask(gray)
    ys, xs = np.nonzero(mask)
    if ys.size < 200:
        return 0.0, 0.0
    if ys.size > 25000:
        step = ys.size // 25000 + 1
        ys, xs = ys[::step], xs[::step]
    x = xs.astype(np.float64) - gray.shape[1] / 2
    y = ys.astype(np.float64)
    size = int(math.hypot(*gray.shape[:2])) + 2
    offset = size / 2 - gray.shape[0] / 2

    def score(deg: float) -> float:
        t = math.radians(deg)
        return _profile_score(y * math.cos(t) + x * math.sin(t) + offset, size)

    coarse = np.arange(-max_deg, max_deg + 0.01, 1.0)
    scores = [score(float(a)) for a in coarse]
    best = float(coarse[int(np.argmax(scores))])
    fine = np.arange(best - 1.0, best + 1.01, 0.1)
    fine_scores = [score(float(a)) for a in fine]
    angle = float(fine[int(np.argmax(fine_scores))])
    baseline = float(np.median(scores))
    confidence = 0.0 if baseline <= 0 else min(1.0, (max(fine_scores) / baseline - 1.0) / 2.0)
    return angle, confidence


def rotate_small_angle(img: Img, degrees: float, border: tuple[int, int, int] | int = (255, 255, 255)) -> Img:
    """Turn by ``degrees`` counter-clockwise about the centre, keeping the size (for deskew)."""
    if abs(degrees) < 0.05:
        return img
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    value: tuple[int, int, int] | int = border if img.ndim == 3 else (border if isinstance(border, int) else 255)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=value)


def turn(img: Img, clockwise: int) -> Img:
    """Turn by a multiple of 90 degrees clockwise (0, 90, 180, 270)."""
    k = (clockwise // 90) % 4
    codes = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return img if k == 0 else cv2.rotate(img, codes[k])


def _text_components(mask: Img) -> tuple[Img, float]:
    """The letter-like blobs of an ink mask, and their median size. Big blobs (photos, seals,
    rules) and specks say nothing about text direction."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return mask, 0.0
    limit = 0.1 * min(mask.shape[:2])
    heights = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    widths = stats[1:, cv2.CC_STAT_WIDTH].astype(np.float64)
    short = np.minimum(heights, widths)
    plausible = (heights < limit) & (widths < limit) & (stats[1:, cv2.CC_STAT_AREA] >= 3)
    if plausible.sum() < 20:
        return mask, 0.0
    med = float(np.median(short[plausible]))
    small = plausible & (short <= 3 * med)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = small
    text_mask = np.where(keep[labels], 255, 0).astype(np.uint8)
    return text_mask, med


def _line_segments(mask: Img, med: float) -> tuple[float, list[tuple[int, int, int, int]]]:
    """Smear the letters sideways by about a letter's size: horizontal text becomes long thin
    line segments, anything else stays blobby. Returns the share of the ink in such segments
    and their boxes (x, y, w, h)."""
    k = max(3, round(1.2 * med))
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, 1)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if n <= 1:
        return 0.0, []
    w = stats[1:, cv2.CC_STAT_WIDTH]
    h = stats[1:, cv2.CC_STAT_HEIGHT]
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    line = (w >= 4 * h) & (h >= 0.5 * med) & (h <= 3 * med)
    share = float(area[line].sum() / max(1.0, area.sum()))
    boxes = [tuple(int(v) for v in stats[1 + i, :4]) for i in np.nonzero(line)[0]]
    return share, boxes  # type: ignore[return-value]


def _ascender_balance(mask: Img, boxes: list[tuple[int, int, int, int]]) -> tuple[float, int]:
    """For horizontal text lines: (ink above the x-height band - ink below) / ink outside it;
    positive when the text is upright (Latin and Vietnamese carry far more marks above,
    ascenders, capitals and diacritics, than below)."""
    above = below = 0.0
    lines = 0
    height = mask.shape[0]
    for x, y, w, h in boxes:
        pad = round(0.15 * h)
        y0, y1 = max(0, y - pad), min(height, y + h + pad)
        rows = mask[y0:y1, x : x + w].sum(axis=1, dtype=np.float64)
        if rows.max(initial=0) <= 0:
            continue
        core = np.nonzero(rows >= 0.45 * rows.max())[0]
        a = float(rows[: core[0]].sum())
        b = float(rows[core[-1] + 1 :].sum())
        if a + b > 0:
            above += a
            below += b
            lines += 1
    total = above + below
    return (0.0 if total <= 0 else (above - below) / total), lines


def estimate_orientation(
    gray: Img, mask: Img | None = None, lines: Literal["any", "rows", "columns"] = "any"
) -> tuple[int, float]:
    """The clockwise turn (0, 90, 180, 270) that makes a deskewed page's text upright, and a
    confidence in 0..1 (0 when there is too little text to tell; then 0 is returned).
    ``lines``: when the caller knows the text runs along the rows (a tall receipt) or the
    columns (the same receipt lying on its side), only the two turns that allow it are weighed."""
    mask, med = _text_components(ink_mask(gray) if mask is None else mask)
    if med <= 0:
        return 0, 0.0
    h_share, h_boxes = _line_segments(mask, med)
    turned = cv2.rotate(mask, cv2.ROTATE_90_CLOCKWISE)
    v_share, v_boxes = _line_segments(turned, med)
    if lines == "columns" or (lines == "any" and v_share > h_share):
        # Text runs top-to-bottom: turning the page 90 degrees clockwise makes it horizontal;
        # the ascender balance then tells 90 from 270.
        balance, counted = _ascender_balance(turned, v_boxes)
        base = 90 if balance >= 0 else 270
    else:
        balance, counted = _ascender_balance(mask, h_boxes)
        base = 0 if balance >= 0 else 180
    if counted < 3:
        return 0, 0.0
    layout = abs(h_share - v_share) / max(1e-6, h_share + v_share)
    if lines != "any":
        layout = 1.0  # the shape settled the axis
    confidence = float(min(1.0, 4 * abs(balance)) * min(1.0, 2 * layout))
    return base, confidence

