"""Is a page good enough to file? Measures that do not depend on the image's resolution, and a
verdict against thresholds from config, with what to do in Vietnamese and in English.

>>> import numpy as np
>>> m = measure(np.full((400, 300, 3), 245, np.uint8))
>>> [i.code for i in judge(m, QualityConfig()).issues]
['blank']
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from device.inference.config import QualityConfig
from device.inference.geometry import levels, shrink, to_gray

log = logging.getLogger(__name__)

Img = NDArray[Any]  # 8-bit BGR or grey, as OpenCV returns it

IssueCode = Literal[
    "blurry", "too_dark", "too_bright", "glare", "skewed", "cut_off", "too_small", "low_resolution", "blank"
]
Source = Literal["scan", "camera"]

#: What each code tells the person, Vietnamese first (the kiosk's language), then English.
MESSAGES: dict[str, tuple[str, str]] = {
    "blurry": (
        "Ảnh bị mờ, vui lòng giữ yên và chụp lại.",
        "The page is blurred: hold still and capture it again.",
    ),
    "too_dark": (
        "Ảnh quá tối, vui lòng bật thêm đèn hoặc chụp chỗ sáng hơn.",
        "The page is too dark: add light and capture it again.",
    ),
    "too_bright": (
        "Ảnh quá sáng, chữ bị mất, vui lòng giảm ánh sáng và chụp lại.",
        "The page is too bright and the text fades: reduce the light and capture it again.",
    ),
    "glare": (
        "Ảnh bị lóa sáng, vui lòng nghiêng giấy hoặc tránh đèn chiếu thẳng rồi chụp lại.",
        "A reflection hides part of the page: tilt the page or move away from the lamp and capture it again.",
    ),
    "skewed": (
        "Giấy bị đặt lệch, vui lòng đặt thẳng giấy và quét lại.",
        "The page is crooked: place it straight and scan it again.",
    ),
    "cut_off": (
        "Giấy bị thiếu góc hoặc cạnh, vui lòng đặt cả trang vào khung hình.",
        "A corner or edge of the page is outside the frame: fit the whole page in and capture it again.",
    ),
    "too_small": (
        "Giấy quá nhỏ trong khung hình, vui lòng đưa giấy lại gần hơn.",
        "The page is too small in the frame: bring it closer and capture it again.",
    ),
    "low_resolution": (
        "Độ phân giải quá thấp, vui lòng quét lại ở độ phân giải cao hơn.",
        "The resolution is too low: scan it again at a higher resolution.",
    ),
    "blank": (
        "Trang trắng, sẽ không đưa vào hồ sơ.",
        "The page is blank and is left out of the dossier.",
    ),
}

#: Long side the image measures work at, whatever the capture's resolution.
CANONICAL_SIDE = 1000


@dataclass(frozen=True)
class Issue:
    code: IssueCode
    message_vi: str
    message_en: str

    @classmethod
    def of(cls, code: IssueCode) -> "Issue":
        vi, en = MESSAGES[code]
        return cls(code, vi, en)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message_vi": self.message_vi, "message_en": self.message_en}


@dataclass(frozen=True)
class Verdict:
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.issues]

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "issues": [i.as_dict() for i in self.issues]}


@dataclass
class Measures:
    """What the verdict is made from; geometry fields are filled by the pipeline."""

    sharpness: float | None
    paper_level: float
    ink_level: float
    glare_fraction: float
    ink_fraction: float
    clipped_fraction: float = 0.0
    skew_deg: float = 0.0
    perspective_deg: float = 0.0
    border_contact: float = 0.0
    #: Till receipts: blank paper above the first printed line, in line heights (None: not measured).
    top_margin_lines: float | None = None
    corners_outside: int = 0
    fills_frame: bool = False
    area_fraction: float = 1.0
    dpi: float | None = None
    source: Source = "scan"


def sharpness(gray: Img) -> float | None:
    """How steep the page's edges are: the gradient over the local contrast (range in a 7 px
    window) at the canonical scale, 90th percentile over edge pixels. Local contrast makes it
    blind to exposure and glare; taken across and along the page with the lower kept, so motion
    blur in one direction counts. None when the page has too few edges to tell."""
    lo, hi = levels(gray, (1, 99))
    contrast = hi - lo
    if contrast < 25:
        return None
    kernel = np.ones((7, 7), np.uint8)
    local = cv2.subtract(cv2.dilate(gray, kernel), cv2.erode(gray, kernel))
    candidates = local > 0.2 * contrast
    values = []
    for dx, dy in ((1, 0), (0, 1)):
        grad = np.abs(cv2.Sobel(gray, cv2.CV_16S, dx, dy, ksize=3))
        g = grad[candidates].astype(np.float32) / 4.0
        loc = local[candidates].astype(np.float32)
        keep = g > 0.1 * loc
        if int(keep.sum()) < 0.0005 * gray.size:
            return None
        ratio = g[keep] / loc[keep]
        values.append(float(np.partition(ratio, int(0.9 * (ratio.size - 1)))[int(0.9 * (ratio.size - 1))]))
    return min(values)


def ink_fraction(gray: Img) -> float:
    """Share of pixels, away from the edges, markedly darker than the paper around them
    (show-through from the back, paper grain and specks do not count)."""
    h, w = gray.shape[:2]
    # The paper's own brightness, text removed: a max filter on a thumbnail, smoothed.
    small, _ = shrink(gray, 200)
    background = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    background = cv2.resize(cv2.medianBlur(background, 5), (w, h), interpolation=cv2.INTER_LINEAR)
    diff = cv2.subtract(background, gray)
    # No speck filter: a blank page's dust is far below the threshold, and an opening would
    # erase the one-pixel strokes of small print at this scale.
    ink = (diff > np.maximum(45, background.astype(np.int16) // 4)).astype(np.uint8)
    my, mx = max(1, h // 20), max(1, w // 20)
    inner = ink[my : h - my, mx : w - mx]
    return float(inner.mean()) if inner.size else 0.0


def measure(page: Img) -> Measures:
    """Image measures of a flat document (BGR or grey), at the canonical scale."""
    small, _ = shrink(page, CANONICAL_SIDE)
    gray = to_gray(small)
    ink, median, paper = levels(gray, (1, 50, 90))
    if small.ndim == 3:
        sat = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[..., 1]
        burnt = (gray >= 250) & (sat < 40)
    else:
        burnt = gray >= 250
    # Highlights count as glare only when the paper itself is not that white (a scan's white
    # paper is not glare).
    glare = float(burnt.mean()) if median < 225 else 0.0
    return Measures(
        sharpness=sharpness(gray),
        paper_level=paper,
        ink_level=ink,
        glare_fraction=glare,
        ink_fraction=ink_fraction(gray),
        clipped_fraction=float((gray >= 254).mean()),
    )


def judge(m: Measures, config: QualityConfig, doctype: str | None = None) -> Verdict:
    """The verdict for measures ``m``: ok, or the issues in the order a person should fix them."""
    issues: list[Issue] = []
    if m.ink_fraction < config.max_blank_ink and m.paper_level >= config.min_paper_level:
        # A camera frame burnt white all over is overexposed, not an empty page: say so rather
        # than drop it from the dossier.
        if m.source == "camera" and m.clipped_fraction > 0.9:
            return Verdict([Issue.of("too_bright")])
        return Verdict([Issue.of("blank")])
    if (m.corners_outside > 0 or m.border_contact > config.max_border_contact
            or (m.top_margin_lines is not None and m.top_margin_lines < config.min_receipt_top_margin)):
        issues.append(Issue.of("cut_off"))
    if m.source == "camera" and not m.fills_frame and m.area_fraction < config.min_area_fraction:
        issues.append(Issue.of("too_small"))
    blurry = m.sharpness is not None and m.sharpness < config.min_sharpness
    if m.paper_level < config.min_paper_level:
        issues.append(Issue.of("too_dark"))
    elif (
        not blurry  # blur also fades text: say the cause that is there
        and m.clipped_fraction > config.min_clipped_fraction
        and m.paper_level - m.ink_level < config.min_text_contrast
    ):
        issues.append(Issue.of("too_bright"))
    if m.glare_fraction > config.max_glare_fraction:
        issues.append(Issue.of("glare"))
    if blurry:
        issues.append(Issue.of("blurry"))
    if abs(m.skew_deg) > config.max_skew_deg or (
        m.source == "camera" and m.perspective_deg > config.max_perspective_deg
    ):
        issues.append(Issue.of("skewed"))
    floor = config.min_dpi_drawings if doctype in config.drawing_doctypes else config.min_dpi
    if m.dpi is not None and m.dpi < floor - 0.5:  # files often say 199.9999
        issues.append(Issue.of("low_resolution"))
    return Verdict(issues)
