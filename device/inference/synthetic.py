"""Generated pages with known truth, for tests, benchmarks and calibration (a fake, as
``capture/fake.py`` is for scanners): a text page with Vietnamese lines, optional QR code, placed
on a cluttered desk under a known perspective, or degraded in a controlled way.

Nothing here is used on a real page; everything is deterministic by ``seed``.

>>> page = text_page(seed=1, dpi=100)
>>> page.shape[2]
3
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

Img = NDArray[Any]  # 8-bit BGR or grey, as OpenCV returns it

A4_MM = (210.0, 297.0)
ID_CARD_MM = (85.6, 53.98)

_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/noto"))
_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "NotoSans-Regular.ttf", "NotoSerif-Regular.ttf")

_WORDS = tuple(
    " ".join(
        (
            "cộng hòa xã hội chủ nghĩa việt nam độc lập tự do hạnh phúc giấy tiếp nhận hồ sơ và hẹn trả",
            "kết quả ủy ban nhân dân xã phường thị trấn bộ phận một cửa thủ tục hành chính đăng ký khai",
            "sinh kết hôn chứng thực bản sao quyền sử dụng đất người nộp địa chỉ số điện thoại ngày tháng",
            "năm công dân căn cước thường trú cán bộ tiếp nhận ký ghi rõ họ tên thành phần gồm có bản chính",
            "quyết định công văn biên lai thu phí lệ phí tờ khai đơn đề nghị",
        )
    ).split(" ")
)


@lru_cache(maxsize=32)
def _font(index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = _FONTS[index % len(_FONTS)]
    for folder in _FONT_DIRS:
        path = folder / name
        if path.exists():
            return ImageFont.truetype(str(path), size)
    for folder in _FONT_DIRS:
        found = sorted(folder.glob("*.ttf"))
        if found:
            return ImageFont.truetype(str(found[0]), size)
    return ImageFont.load_default(size)


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    return " ".join(words)


def text_page(
    seed: int = 0,
    dpi: int = 150,
    size_mm: tuple[float, float] = A4_MM,
    qr_text: str | None = None,
    font_pt: float = 11.0,
    fill: float = 1.0,
) -> Img:
    """An upright white page (BGR) of ``size_mm`` at ``dpi`` with a header, paragraphs and a
    table; ``qr_text`` prints a QR code top-left (where the rules put it); ``fill`` < 1 leaves
    the lower part empty."""
    rng = random.Random(seed)
    w = round(size_mm[0] / 25.4 * dpi)
    h = round(size_mm[1] / 25.4 * dpi)
    img = Image.new("RGB", (w, h), (250, 250, 248))
    draw = ImageDraw.Draw(img)
    px = dpi / 72.0
    margin = round(min(w, h) * 0.09)
    font_idx = rng.randrange(len(_FONTS))
    body = _font(font_idx, max(6, round(font_pt * px)))
    bold = _font(font_idx, max(7, round(font_pt * 1.25 * px)))
    y = margin
    if qr_text is not None:
        qr = qr_image(qr_text, module_px=max(2, round(dpi / 50)))
        img.paste(Image.fromarray(cv2.cvtColor(qr, cv2.COLOR_BGR2RGB)), (margin, y))
        y += qr.shape[0] + round(6 * px)
    title = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    tw = draw.textlength(title, font=bold)
    draw.text(((w - tw) / 2, y), title, fill=(20, 20, 20), font=bold)
    y += round(font_pt * 2.2 * px)
    motto = "Độc lập - Tự do - Hạnh phúc"
    mw = draw.textlength(motto, font=body)
    draw.text(((w - mw) / 2, y), motto, fill=(20, 20, 20), font=body)
    y += round(font_pt * 3 * px)
    line_h = round(font_pt * 1.6 * px)
    bottom = margin + (h - 2 * margin) * fill
    while y + line_h < bottom:
        kind = rng.random()
        if kind < 0.12 and y + 6 * line_h < bottom:
            cols = 3
            cw = (w - 2 * margin) // cols
            for r in range(4):
                for c in range(cols):
                    x0 = margin + c * cw
                    y0 = y + r * line_h
                    draw.rectangle((x0, y0, x0 + cw, y0 + line_h), outline=(40, 40, 40), width=max(1, dpi // 100))
                    draw.text((x0 + 4, y0 + 2), _sentence(rng, 2), fill=(25, 25, 25), font=body)
            y += 5 * line_h
            continue
        for _ in range(rng.randint(2, 6)):
            if y + line_h >= bottom:
                break
            text = _sentence(rng, rng.randint(4, 12))
            while draw.textlength(text, font=body) > w - 2 * margin and " " in text:
                text = text.rsplit(" ", 1)[0]
            draw.text((margin, y), text, fill=(15, 15, 20), font=body)
            y += line_h
        y += line_h // 2
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def staff_card(token: str, operator_id: str, dpi: int = 300) -> Img:
    """A counter clerk's staff card (ID-1 size, BGR) as the admin page prints it: a title band,
    the operator id (never a name here) and the QR holding the card's ``token``, right side."""
    w = round(ID_CARD_MM[0] / 25.4 * dpi)
    h = round(ID_CARD_MM[1] / 25.4 * dpi)
    img = Image.new("RGB", (w, h), (250, 250, 248))
    draw = ImageDraw.Draw(img)
    px = dpi / 72.0
    band = round(h * 0.2)
    draw.rectangle((0, 0, w, band), fill=(11, 61, 145))
    draw.text((round(w * 0.05), round(band * 0.25)), "THẺ CÁN BỘ SỐ HÓA", fill=(255, 255, 255),
              font=_font(0, round(9 * px)))
    qr = qr_image(token, module_px=max(2, round(dpi / 60)))
    side = min(qr.shape[0], h - band - round(h * 0.06))
    qr = cv2.resize(qr, (side, side), interpolation=cv2.INTER_NEAREST)
    corner = (w - side - round(w * 0.04), band + round(h * 0.03))
    img.paste(Image.fromarray(cv2.cvtColor(qr, cv2.COLOR_BGR2RGB)), corner)
    body = _font(0, round(7 * px))
    draw.text((round(w * 0.05), band + round(h * 0.15)), "Mã cán bộ:", fill=(20, 20, 20), font=body)
    draw.text((round(w * 0.05), band + round(h * 0.32)), operator_id, fill=(20, 20, 20), font=body)
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def qr_image(text: str, module_px: int = 4) -> Img:
    """A QR code (ISO/IEC 18004, error correction M) as a BGR image with its quiet zone."""
    import segno  # dev dependency: only tests and benchmarks make codes

    qr = segno.make_qr(text, error="m")
    matrix = np.array([[0 if v else 255 for v in row] for row in qr.matrix], dtype=np.uint8)
    matrix = np.pad(matrix, 4, constant_values=255)
    big = cv2.resize(matrix, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def desk(width: int, height: int, seed: int = 0) -> Img:
    """A cluttered background: wood-like gradient, a dark keyboard with keys, a skin-toned
    hand-like blob, a mug, pens."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 30 * np.sin(xx / (width / 7.0) + seed) + 12 * np.sin(yy / 9.0 + xx / 40.0)
    bg = np.stack([base * 0.55, base * 0.8, base * 1.1], axis=-1)
    bg += rng.normal(0, 6, bg.shape)
    img = np.clip(bg, 0, 255).astype(np.uint8)
    r = random.Random(seed)
    kx, ky = r.randint(0, width // 2), r.choice([0, height - height // 5])
    cv2.rectangle(img, (kx, ky), (kx + width // 2, ky + height // 5), (35, 35, 38), -1)
    step = max(6, width // 40)
    for x in range(kx + 4, kx + width // 2 - step, step):
        for y in range(ky + 4, ky + height // 5 - step, step):
            cv2.rectangle(img, (x, y), (x + step - 4, y + step - 4), (70, 70, 72), -1)
    cx, cy = r.randint(0, width), r.randint(0, height)
    cv2.ellipse(img, (cx, cy), (width // 10, height // 7), r.randint(0, 180), 0, 360, (120, 150, 200), -1)
    cv2.circle(img, (r.randint(0, width), r.randint(0, height)), width // 14, (50, 60, 170), -1)
    for _ in range(3):
        p0 = (r.randint(0, width), r.randint(0, height))
        p1 = (p0[0] + r.randint(-width // 4, width // 4), p0[1] + r.randint(-height // 4, height // 4))
        cv2.line(img, p0, p1, (r.randint(0, 255), r.randint(0, 255), r.randint(0, 255)), max(2, width // 150))
    return np.asarray(img, dtype=np.uint8)


@dataclass(frozen=True)
class Scene:
    """A generated camera frame and its truth: ``quad`` clockwise from the image's top-left."""

    image: Img
    quad: NDArray[np.float32]


def camera_scene(
    page: Img,
    frame: tuple[int, int] = (1280, 960),
    quad: Sequence[tuple[float, float]] | None = None,
    seed: int = 0,
    light: float = 0.85,
) -> Scene:
    """Place ``page`` on a desk with the perspective that maps its corners to ``quad`` (pixels in
    the frame, clockwise from top-left); soft shading and noise as a phone camera gives."""
    fw, fh = frame
    if quad is None:
        quad = [(fw * 0.22, fh * 0.1), (fw * 0.76, fh * 0.13), (fw * 0.8, fh * 0.9), (fw * 0.18, fh * 0.86)]
    dst = np.array(quad, dtype=np.float32)
    h, w = page.shape[:2]
    src = np.array([(0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1)], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    bg = desk(fw, fh, seed)
    # Smooth the page before the (downscaling) warp, as a lens would.
    scale = max(1.0, w / max(1.0, float(np.linalg.norm(dst[1] - dst[0]))))
    src_img = cv2.GaussianBlur(page, (0, 0), 0.5 * scale) if scale > 1.5 else page
    warped = cv2.warpPerspective(src_img, m, (fw, fh), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, (fw, fh), flags=cv2.INTER_NEAREST)
    out = np.where(mask[..., None] > 0, warped, bg).astype(np.float32)
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    shade = light * (1.0 - 0.12 * ((xx / fw - 0.3) ** 2 + (yy / fh - 0.4) ** 2))
    out = out * shade[..., None]
    out += np.random.default_rng(seed).normal(0, 2.5, out.shape)
    return Scene(np.clip(out, 0, 255).astype(np.uint8), dst)


def on_scan_bed(doc: Img, bed_size: tuple[int, int], at: tuple[int, int], angle: float = 0.0, seed: int = 0) -> Scene:
    """Lay a small ``doc`` (receipt, ID card) on a grey scanner bed of ``bed_size`` (w, h), its
    centre at ``at``, turned ``angle`` degrees (counter-clockwise, OpenCV's sense)."""
    bw, bh = bed_size
    rng = np.random.default_rng(seed)
    bed = np.clip(rng.normal(150, 12, (bh, bw, 3)), 0, 255).astype(np.uint8)
    bed[..., 0] = np.clip(bed[..., 0].astype(np.int16) - 12, 0, 255).astype(np.uint8)
    h, w = doc.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 2] += at[0] - w / 2
    m[1, 2] += at[1] - h / 2
    warped = cv2.warpAffine(doc, m, (bw, bh), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (bw, bh), flags=cv2.INTER_NEAREST)
    out = np.where(mask[..., None] > 0, warped, bed).astype(np.uint8)
    corners = np.array([(0, 0, 1), (w - 1, 0, 1), (w - 1, h - 1, 1), (0, h - 1, 1)], dtype=np.float64)
    quad = (m @ corners.T).T.astype(np.float32)
    return Scene(out, quad)


# Controlled degradations (the labelled calibration set is made with these).


def blur(img: Img, sigma_frac: float) -> Img:
    """Gaussian blur with sigma given as a fraction of the image's long side (resolution-free)."""
    sigma = sigma_frac * max(img.shape[:2])
    return img if sigma <= 0 else cv2.GaussianBlur(img, (0, 0), sigma)


def motion_blur(img: Img, length_frac: float, angle: float = 0.0) -> Img:
    """Linear motion blur over ``length_frac`` of the long side."""
    n = max(3, round(length_frac * max(img.shape[:2])) | 1)
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), angle, 1.0)
    kernel = np.asarray(cv2.warpAffine(k, rot, (n, n)), dtype=np.float32)
    kernel /= max(1e-6, float(kernel.sum()))
    return np.asarray(cv2.filter2D(img, -1, kernel), dtype=np.uint8)


def exposure(img: Img, gain: float, offset: float = 0.0) -> Img:
    """Multiply and shift brightness, clipping as a sensor does."""
    out: Img = np.clip(img.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return out


def glare(img: Img, centre: tuple[float, float], radius_frac: float, seed: int = 0) -> Img:
    """A saturated specular highlight (lamp reflected on glossy paper) centred at fractional
    ``centre`` with radius ``radius_frac`` of the short side."""
    h, w = img.shape[:2]
    r = radius_frac * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt((xx - centre[0] * w) ** 2 + ((yy - centre[1] * h) * 1.4) ** 2) / max(1.0, r)
    boost = np.clip(1.6 - d, 0, 1.0) * 400
    out: Img = np.clip(img.astype(np.float32) + boost[..., None], 0, 255).astype(np.uint8)
    return out


def rotate(img: Img, degrees: float, fill: tuple[int, int, int] = (250, 250, 248)) -> Img:
    """Turn by ``degrees`` counter-clockwise, growing the canvas so nothing is cut."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=fill)


def turn(img: Img, clockwise: int) -> Img:
    """Turn by a multiple of 90 degrees clockwise."""
    k = (clockwise // 90) % 4
    codes = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return img if k == 0 else np.asarray(cv2.rotate(img, codes[k]), dtype=np.uint8)


def downscale(img: Img, factor: float) -> Img:
    """Resample to ``factor`` of the size (what a low-dpi scan or a far camera gives)."""
    return np.asarray(cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def blank_back(width: int, height: int, seed: int = 0, show_through: bool = True) -> Img:
    """The back of a single-sided sheet: paper texture, faint mirrored show-through, specks."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(244, 3, (height, width, 3)), 0, 255).astype(np.uint8)
    if show_through:
        ghost = text_page(seed=seed, dpi=max(30, round(width / 8.27)))
        ghost = cv2.resize(cv2.flip(ghost, 1), (width, height))
        faint = 255 - (255 - ghost.astype(np.float32)) * 0.08
        img = np.minimum(img, faint.astype(np.uint8))
    for _ in range(6):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(img, (x, y), 1, (90, 90, 90), -1)
    return img
