"""Identity papers for the training generator: the citizen identity card (the 2016 card with a
bar code, the 2021 card with a chip, the 2024 "Căn cước" card), front and back, and the passport's
data page and the driving licence.

The cards follow the public description of the real ones, drawn from plain shapes by the
project: a blue-green ground with guilloche and a rosette, the national emblem top left, the
motto, the red title, the holder's photo (no one's: a drawn head), the fields with their English
labels, a QR code top right on the 2021 front; on the back the fingerprint boxes, the issuing
officer's seal and signature, the chip and the three machine-readable (MRZ) lines. Names and
numbers are fictitious. Layout variant 2 (the held-out half) moves the photo and the title block.

>>> import random
>>> from training.drawing import TRAIN_FONTS
>>> card = id_card(random.Random(3), 0, 100, TRAIN_FONTS[0])
>>> card.w in (85.6, 125)
True
"""

from __future__ import annotations

import math
import random
import unicodedata

import numpy as np
from PIL import Image, ImageDraw

from training.drawing import (
    COMMUNES,
    PROVINCES,
    Page,
    Rgb,
    digits,
    fake_date,
    fake_name,
    load_font,
    place,
    tint,
)

__all__ = ["CARD_KINDS", "card", "id_card"]

W, H = 85.6, 54.0  # ISO/IEC 7810 ID-1, millimetres

#: What an ``id_card`` page can be, with how often each is drawn.
CARD_KINDS: tuple[tuple[str, int], ...] = (
    ("cccd2021_front", 5), ("cccd2021_back", 3), ("cccd2016_front", 2), ("cccd2016_back", 1),
    ("cancuoc2024_front", 4), ("cancuoc2024_back", 2), ("passport", 2), ("licence", 1),
)

_NAVY: Rgb = (28, 40, 92)
_TITLE_RED: Rgb = (196, 28, 36)
_MONO = "dejavu/DejaVuSansMono.ttf"
_FEATURES = ("Sẹo chấm C:1cm trên sau đầu mày trái", "Nốt ruồi C:2cm dưới trước mép phải",
             "Sẹo chấm C:3cm dưới sau cánh mũi trái", "Nốt ruồi C:1,5cm trên trước đuôi mắt phải")


def id_card(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    """One identity paper, its kind drawn from :data:`CARD_KINDS`."""
    kinds, weights = zip(*CARD_KINDS, strict=True)
    return card(rng.choices(kinds, weights)[0], rng, variant, dpi, fonts)


def card(kind: str, rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    """One identity paper of ``kind`` (a name in :data:`CARD_KINDS`)."""
    if kind not in dict(CARD_KINDS):
        raise ValueError(f"unknown card {kind!r}; expected one of {', '.join(dict(CARD_KINDS))}")
    if kind == "passport":
        return _passport(rng, variant, dpi, fonts)
    if kind == "licence":
        return _licence(rng, variant, dpi, fonts)
    model, side = kind.split("_")
    p = Page(W, H, dpi, rng, fonts)
    _card_ground(p, model)
    if side == "front":
        _front(p, model, variant)
    else:
        _back(p, model, variant)
    return p


def _card_ground(p: Page, model: str) -> None:
    """The blue-green ground: a vertical gradient, a rosette in the middle, guilloche bands."""
    rng = p.rng
    w, h = p.img.size
    top = tint(rng, (214, 238, 233) if model != "cancuoc2024" else (208, 228, 240), 8)
    bottom = tint(rng, (186, 221, 226) if model != "cancuoc2024" else (178, 208, 232), 8)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    ground = (np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t).repeat(w, axis=1)
    p.img.paste(Image.fromarray(ground.astype(np.uint8), "RGB"))
    p.d = ImageDraw.Draw(p.img)
    line = tint(rng, (150, 200, 196) if model != "cancuoc2024" else (150, 186, 218), 10)
    cx, cy = p.px(W * rng.uniform(0.45, 0.6)), p.px(H * rng.uniform(0.45, 0.6))
    for k in range(2, 16):  # the rosette (the bronze drum's rings on the real card)
        r = p.px(1.6 * k)
        p.d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=line, width=1)
    for k in range(36):
        a = math.radians(k * 10)
        p.d.line([(cx + p.px(3) * math.cos(a), cy + p.px(3) * math.sin(a)),
                  (cx + p.px(8) * math.cos(a), cy + p.px(8) * math.sin(a))], fill=line, width=1)
    p.guilloche(0, 0, W, 9, line, 0.8)
    p.guilloche(0, H - 8, W, H, line, 0.8)


def _header(p: Page, model: str, x0: float, x1: float) -> float:
    """Motto, its English line, the red title and its English name; returns the y below."""
    p.center(2.2, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 5.0, True, x0, x1, _NAVY)
    p.center(4.8, "Độc lập - Tự do - Hạnh phúc", 4.8, True, x0, x1, _NAVY)
    y = 7.3
    if model != "cccd2016":
        p.center(y, "SOCIALIST REPUBLIC OF VIET NAM", 3.6, False, x0, x1, _NAVY)
        p.center(y + 1.8, "Independence - Freedom - Happiness", 3.4, False, x0, x1, _NAVY)
        y += 4.0
    title, english = ("CĂN CƯỚC", "IDENTITY CARD") if model == "cancuoc2024" else (
        "CĂN CƯỚC CÔNG DÂN", "Citizen Identity Card")
    p.center(y, title, 8.5 if model == "cancuoc2024" else 7.4, True, x0, x1, _TITLE_RED)
    y += 3.6
    if model != "cccd2016":
        p.center(y, english, 4.2, True, x0, x1, _TITLE_RED)
        y += 2.4
    return y


def _labelled(p: Page, x: float, y: float, label: str, english: str | None, value: str | None,
              pt: float = 4.2, value_pt: float = 5.2, below: bool = False) -> float:
    """``Nhãn / Label: value`` as on the card (the value on the next line when long); returns the
    y of the next field."""
    text = f"{label} / {english}:" if english else f"{label}:"
    lw = p.text(x, y, text, pt, fill=_NAVY)
    if value is None:
        return y + 2.4
    if below:
        p.text(x, y + 2.0, value, value_pt, True, fill=(20, 20, 30))
        return y + 4.6
    p.text(x + lw + 1, y - 0.3, value, value_pt, True, fill=(20, 20, 30))
    return y + 2.9


def _front(p: Page, model: str, variant: int) -> None:
    rng = p.rng
    right = variant == 2  # held-out layout: photo on the right, emblem top right
    p.emblem(W - 8.5 if right else 8.5, 8.5, 6.2)
    x0, x1 = (6.0, W - 16) if right else (16.0, W - 10 if model == "cccd2021" else W - 2)
    y = _header(p, model, x0, x1)
    if model == "cccd2021":
        # As the real card's: number|old 9-digit number|name|birth (DDMMYYYY)|sex|residence|issue date
        p.qr(2.0 if right else W - 13.5, 1.0, 12.5, "|".join((
            "0" + digits(rng, 11), digits(rng, 9), fake_name(rng), fake_date(rng).replace("/", ""),
            rng.choice(("Nam", "Nữ")), place(rng), fake_date(rng).replace("/", ""))))
    photo_x = W - 23 if right else 3.5
    photo_y = max(y + 1.0, 18.0)
    p.photo(photo_x, photo_y, photo_x + 19, photo_y + 25)
    tx = 3.5 if right else 25.0
    end = W - 25 if right else W - 2
    number = ("0" if model != "cccd2016" else rng.choice("03")) + digits(rng, 11)
    yy = photo_y - 0.5
    p.text(tx, yy, "Số / No.:" if model != "cancuoc2024" else "Số định danh cá nhân / Personal identification number:",
           4.2, fill=_NAVY)
    if model == "cancuoc2024":
        yy += 2.3
        p.text(tx, yy, number, 7.0, True, fill=(20, 20, 30))
        yy += 3.6
    else:
        p.text(tx + 11, yy - 1.0, number, 7.0, True, fill=(20, 20, 30))
        yy += 3.4
    full_name = fake_name(rng).upper()
    name_label = "Họ, chữ đệm và tên khai sinh" if model == "cancuoc2024" else "Họ và tên"
    yy = _labelled(p, tx, yy, name_label, None if model == "cccd2016" else "Full name", full_name, below=True)
    yy = _labelled(p, tx, yy, "Ngày sinh" if model != "cccd2016" else "Ngày, tháng, năm sinh",
                   None if model == "cccd2016" else "Date of birth", fake_date(rng))
    sex = rng.choice(("Nam", "Nữ"))
    lw = p.text(tx, yy, "Giới tính / Sex:" if model != "cccd2016" else "Giới tính:", 4.2, fill=_NAVY)
    p.text(tx + lw + 1, yy - 0.3, sex, 5.2, True, fill=(20, 20, 30))
    qx = tx + lw + 10
    lw2 = p.text(qx, yy, "Quốc tịch / Nationality:" if model != "cccd2016" else "Quốc tịch:", 4.2, fill=_NAVY)
    p.text(qx + lw2 + 1, yy - 0.3, "Việt Nam", 5.2, True, fill=(20, 20, 30))
    yy += 2.9
    if model == "cancuoc2024":
        _chip(p, tx + (end - tx) * 0.62, yy + 0.5, 9.5, 7.5)
    else:
        yy = _labelled(p, tx, yy, "Quê quán", None if model == "cccd2016" else "Place of origin", place(rng),
                       below=True)
        _labelled(p, tx, yy, "Nơi thường trú", None if model == "cccd2016" else "Place of residence",
                  f"{rng.choice(COMMUNES)}, {rng.choice(PROVINCES)}", below=True)
        p.text(photo_x, photo_y + 26.5, "Có giá trị đến:", 3.8, fill=_NAVY)
        p.text(photo_x, photo_y + 28.3, fake_date(rng), 4.2, True, fill=(20, 20, 30))


def _back(p: Page, model: str, variant: int) -> None:
    rng = p.rng
    swap = variant == 2
    mrz_top = H - 14.5
    if model == "cancuoc2024":
        p.qr(W - 17 if swap else 3, 3, 14, digits(rng, 12) + "|" + fake_date(rng).replace("/", ""))
        tx = 3.5 if swap else 19.5
        y = 3.5
        for label, english, value in (
            ("Nơi cư trú", "Place of residence", place(rng)),
            ("Nơi đăng ký khai sinh", "Place of birth", place(rng)),
        ):
            y = _labelled(p, tx, y, label, english, value, 3.9, 4.6, below=True)
        y = _labelled(p, tx, y, "Ngày, tháng, năm cấp", "Date of issue", fake_date(rng), 3.9, 4.6)
        _labelled(p, tx, y, "Ngày, tháng, năm hết hạn", "Date of expiry", fake_date(rng), 3.9, 4.6)
        p.center(27.5, "BỘ CÔNG AN", 4.6, True, 3, 40, _NAVY)
        p.center(29.5, "MINISTRY OF PUBLIC SECURITY", 3.4, False, 3, 40, _NAVY)
        p.seal(21, 34, 5.5)
    else:
        fx = 3.0 if swap else W - 42
        for k, (vi, en) in enumerate((("Ngón trỏ trái", "Left index finger"), ("Ngón trỏ phải", "Right index finger"))):
            bx = fx + k * 20
            p.text(bx + 0.5, 2.5, vi, 3.6, True, fill=_NAVY)
            if model != "cccd2016":
                p.text(bx + 0.5, 4.3, en, 3.0, fill=_NAVY)
            p.rect(bx, 6.5, bx + 18, 30, outline=_NAVY, width=0.25)
            _fingerprint(p, bx + 9, 18.3, 6.0, 8.5)
        tx = W - 40 if swap else 3.0
        if model == "cccd2021":
            _chip(p, tx + 1, 3.0, 9.5, 7.5)
            y = 12.0
        else:
            _barcode(p, tx, 2.5, 34, 6.0)
            y = 10.5
        p.text(tx, y, "Đặc điểm nhân dạng" + (" / Personal identification:" if model != "cccd2016" else ":"),
               3.7, fill=_NAVY)
        p.text(tx, y + 2.0, rng.choice(_FEATURES), 3.9, fill=(20, 20, 30))
        p.text(tx, y + 4.4, "Ngày, tháng, năm" + (" / Date, month, year: " if model != "cccd2016" else ": ")
               + fake_date(rng), 3.7, fill=_NAVY)
        office = ("CỤC TRƯỞNG CỤC CẢNH SÁT", "QUẢN LÝ HÀNH CHÍNH VỀ TRẬT TỰ XÃ HỘI") if model == "cccd2021" else (
            "CỤC TRƯỞNG CỤC CẢNH SÁT", "ĐKQL CƯ TRÚ VÀ DLQG VỀ DÂN CƯ")
        p.center(y + 7.0, office[0], 3.8, True, tx, tx + 36, _NAVY)
        p.center(y + 8.8, office[1], 3.6, True, tx, tx + 36, _NAVY)
        p.seal(tx + 12, y + 15.5, 5.5)
        p.signature(tx + 14, y + 15.5, 14)
        p.center(y + 20.5 if model == "cccd2016" else y + 19.5, fake_name(rng), 4.2, True, tx, tx + 36, _NAVY)
        if model == "cccd2016":
            return  # the 2016 card has no machine-readable zone
    p.rect(0, mrz_top - 1, W, H, fill=tint(rng, (236, 242, 240), 6), outline=None)
    p.d = ImageDraw.Draw(p.img)
    for k, line in enumerate(_mrz(rng)):
        p.d.text((p.px(3), p.px(mrz_top + k * 4.2)), line, font=load_font(_MONO, max(4, round(8.2 * p.dpi / 72))),
                 fill=(25, 25, 30))


def _chip(p: Page, x: float, y: float, w: float, h: float) -> None:
    """A contact chip: a gold rounded rectangle cut into six pads."""
    gold, edge = tint(p.rng, (214, 178, 92), 10), (150, 118, 52)
    p.d.rounded_rectangle([p.px(x), p.px(y), p.px(x + w), p.px(y + h)], radius=p.px(1.3), fill=gold,
                          outline=edge, width=max(1, p.px(0.2)))
    for k in (1, 2):
        p.line(x, y + h * k / 3, x + w * 0.38, y + h * k / 3, 0.2, edge)
        p.line(x + w * 0.62, y + h * k / 3, x + w, y + h * k / 3, 0.2, edge)
    p.rect(x + w * 0.38, y + h * 0.22, x + w * 0.62, y + h * 0.78, outline=edge, width=0.2)


def _fingerprint(p: Page, cx: float, cy: float, rx: float, ry: float) -> None:
    """Ridges of no one's finger: nested wavy loops."""
    col = (70, 70, 80)
    for k in range(1, 13):
        f = k / 12
        pts = []
        wobble = p.rng.uniform(0, 6.3)
        for i in range(48):
            a = 2 * math.pi * i / 48
            r = 1 + 0.05 * math.sin(5 * a + wobble)
            pts.append((p.px(cx + rx * f * r * math.cos(a)), p.px(cy + ry * f * r * math.sin(a) - (1 - f) * 1.5)))
        p.d.line([*pts, pts[0]], fill=col, width=max(1, p.px(0.18)))


def _barcode(p: Page, x: float, y: float, w: float, h: float) -> None:
    bars = [p.rng.choice((1, 1, 2, 3)) for _ in range(70)]
    unit = w / sum(bars)
    pos = x
    for k, b in enumerate(bars):
        if k % 2 == 0:
            p.rect(pos, y, pos + b * unit, y + h, fill=(20, 20, 25), outline=None)
        pos += b * unit


def _ascii(text: str) -> str:
    """Vietnamese letters without their marks (as in the MRZ and the QR payload)."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _mrz(rng: random.Random) -> tuple[str, str, str]:
    """Three 30-character lines in the layout of an ICAO TD1 card (check digits not computed)."""
    number = "0" + digits(rng, 11)
    line1 = f"IDVNM{number[3:]}{rng.randint(0, 9)}{number}<<{rng.randint(0, 9)}"[:30].ljust(30, "<")
    birth, expiry = f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", \
        f"{rng.randint(30, 45)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    line2 = f"{birth}{rng.randint(0, 9)}{rng.choice('MF')}{expiry}{rng.randint(0, 9)}VNM"
    line2 = line2.ljust(29, "<") + str(rng.randint(0, 9))
    parts = _ascii(fake_name(rng)).upper().split()
    line3 = (parts[0] + "<<" + "<".join(parts[1:]))[:30].ljust(30, "<")
    return line1, line2, line3


def _passport(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(125, 88, dpi, rng, fonts, tint(rng, (236, 240, 232)))
    p.guilloche(0, 0, 125, 88, tint(rng, (200, 215, 205)), 1.4)
    p.center(4, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 8, True)
    p.center(9, "HỘ CHIẾU / PASSPORT", 9, True, fill=(150, 30, 40))
    px0 = 84 if variant == 2 else 5
    p.photo(px0, 16, px0 + 34, 60)
    tx = 5 if variant == 2 else 44
    y = 16.0
    for lab, val in (("Họ và tên / Surname", fake_name(rng).upper()), ("Quốc tịch", "VIỆT NAM"),
                     ("Ngày sinh", fake_date(rng)), ("Nơi sinh", rng.choice(PROVINCES)),
                     ("Số hộ chiếu", "C" + digits(rng, 7))):
        p.text(tx, y, lab, 6)
        p.text(tx, y + 3, val, 8, True)
        y += 8.5
    mrz = "P<VNM" + _ascii(fake_name(rng)).upper().replace(" ", "<") + "<" * 44
    mono = load_font(_MONO, max(4, round(9 * dpi / 72)))
    p.d.text((p.px(4), p.px(70)), mrz[:44], font=mono, fill=(30, 30, 30))
    p.d.text((p.px(4), p.px(77)), ("C" + digits(rng, 7) + "<" + digits(rng, 20) + "<" * 20)[:44], font=mono,
             fill=(30, 30, 30))
    return p


def _licence(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(W, H, dpi, rng, fonts, tint(rng, (245, 222, 215)))
    p.guilloche(0, 0, W, H, tint(rng, (235, 190, 185)), 1.2)
    p.center(3, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 5, True)
    p.center(9, "GIẤY PHÉP LÁI XE / DRIVER'S LICENSE", 6.5, True, fill=(170, 30, 40))
    x0 = 60 if variant == 2 else 4
    p.photo(x0, 16, x0 + 20, 42)
    tx = 4 if variant == 2 else 27
    for i, (lab, val) in enumerate((("Số/No", digits(rng, 12)), ("Họ tên", fake_name(rng).upper()),
                                    ("Ngày sinh", fake_date(rng)), ("Hạng/Class", rng.choice("ABC") + "1"))):
        p.text(tx, 16 + i * 6.5, f"{lab}: {val}", 5.5)
    return p
