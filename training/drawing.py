"""The drawing kit of the training generator: a page in millimetres with the parts Vietnamese
papers are made of (motto, agency header, dotted fields, tables, seals, the national emblem,
guilloche, ID photos of no one, QR codes), the font families split into training and held-out
halves, and fictitious names, dates, numbers and places.

>>> import random
>>> page = Page(85.6, 54, 100, random.Random(1), TRAIN_FONTS[0])
>>> page.img.size
(337, 213)
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts/truetype")
# (regular, bold) per family. Every family here covers Vietnamese diacritics.
TRAIN_FONTS: tuple[tuple[str, str], ...] = (
    ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
    ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf"),
    ("liberation/LiberationSans-Regular.ttf", "liberation/LiberationSans-Bold.ttf"),
    ("liberation/LiberationSerif-Regular.ttf", "liberation/LiberationSerif-Bold.ttf"),
    ("noto/NotoSans-Regular.ttf", "noto/NotoSans-Bold.ttf"),
    ("noto/NotoSerif-Regular.ttf", "noto/NotoSerif-Bold.ttf"),
)
HELDOUT_FONTS: tuple[tuple[str, str], ...] = (
    ("dejavu/DejaVuSerifCondensed.ttf", "dejavu/DejaVuSerifCondensed-Bold.ttf"),
    ("liberation/LiberationSansNarrow-Regular.ttf", "liberation/LiberationSansNarrow-Bold.ttf"),
    ("noto/NotoSerifDisplay-Regular.ttf", "noto/NotoSerifDisplay-Bold.ttf"),
    ("dejavu/DejaVuSansCondensed.ttf", "dejavu/DejaVuSansCondensed-Bold.ttf"),
)
#: Layout variants per class: training draws 0 and 1, the held-out set only 2.
TRAIN_VARIANTS = (0, 1)
HELDOUT_VARIANTS = (2,)

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
           "Hồ", "Ngô", "Dương", "Lý", "Đinh", "Trịnh")
MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang", "Thu", "Xuân", "Hoài", "Bảo")
GIVEN = ("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hòa", "Hùng", "Hương", "Khánh",
          "Lan", "Linh", "Long", "Mai", "Nam", "Nga", "Phúc", "Phương", "Quân", "Sơn", "Tâm", "Thảo",
          "Trang", "Tuấn", "Vy", "Yến", "Đạt", "Hiếu", "Nhung", "Thắng")
PROVINCES = ("Hà Nội", "Bắc Ninh", "Hải Phòng", "Quảng Ninh", "Thanh Hóa", "Nghệ An", "Huế", "Đà Nẵng",
              "Quảng Ngãi", "Gia Lai", "Đắk Lắk", "Khánh Hòa", "Lâm Đồng", "Đồng Nai", "Tây Ninh",
              "Cần Thơ", "Vĩnh Long", "An Giang", "Cà Mau", "Lào Cai", "Thái Nguyên", "Phú Thọ")
COMMUNES = ("Phường Đông Ngạc", "Xã Tân Lập", "Phường Hòa Khánh", "Xã Yên Phong", "Phường Bến Thành",
             "Xã Cát Hải", "Phường Thủy Xuân", "Xã Mỹ Đức", "Xã Hòa Bình", "Phường An Phú")
WORDS = ("theo", "quy", "định", "của", "pháp", "luật", "về", "việc", "thực", "hiện", "thủ", "tục",
          "hành", "chính", "hồ", "sơ", "công", "dân", "được", "cấp", "giấy", "chứng", "nhận", "ủy",
          "ban", "nhân", "dân", "xã", "phường", "tỉnh", "thành", "phố", "căn", "cứ", "nghị", "số",
          "năm", "ngày", "tháng", "đề", "nghị", "xem", "xét", "giải", "quyết", "trách", "nhiệm",
          "cơ", "quan", "tổ", "chức", "cá", "nhân", "liên", "quan", "thi", "hành", "đất", "đai",
          "quản", "lý", "hộ", "tịch", "đăng", "ký", "thường", "trú", "kết", "quả", "tiếp", "nhận",
          "điều", "khoản", "mục", "kể", "từ", "hiệu", "lực", "phối", "hợp", "kiểm", "tra", "báo",
          "cáo", "số", "hóa", "dịch", "vụ", "trực", "tuyến", "một", "cửa", "văn", "phòng")
EN_WORDS = ("the", "model", "results", "section", "method", "data", "analysis", "figure", "table",
             "we", "propose", "network", "performance", "training", "baseline", "experiments", "and",
             "of", "in", "for", "with", "is", "are", "shown", "using", "approach", "learning")

Rgb = tuple[int, int, int]
INK: tuple[Rgb, ...] = ((20, 20, 20), (35, 35, 50), (10, 10, 30), (40, 30, 30))
RED: Rgb = (200, 30, 35)


def _dejavu_for(path: str) -> str:
    """The DejaVu face (installed with the project's Debian packages) closest to ``path``."""
    name = path.rsplit("/", 1)[-1]
    family = "DejaVuSerif" if "Serif" in name else "DejaVuSans"
    if "Narrow" in name or "Condensed" in name:
        family += "Condensed"
    return f"dejavu/{family}{'-Bold' if 'Bold' in name else ''}.ttf"


@functools.lru_cache(maxsize=1024)
def load_font(path: str, px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in (path, _dejavu_for(path)):
        try:
            return ImageFont.truetype(str(FONT_ROOT / candidate), px)
        except OSError:
            continue
    # Pillow's own font has no Vietnamese letters (they come out as boxes): last resort only.
    return ImageFont.load_default(px)


class Page:
    """A page being drawn, with coordinates in millimetres."""

    def __init__(self, w_mm: float, h_mm: float, dpi: int, rng: random.Random,
                 fonts: tuple[str, str], paper: Rgb = (250, 250, 247)) -> None:
        self.k = dpi / 25.4
        self.w, self.h = w_mm, h_mm
        self.dpi = dpi
        self.rng = rng
        self.fonts = fonts
        self.ink: Rgb = rng.choice(INK)
        self.img = Image.new("RGB", (max(8, round(w_mm * self.k)), max(8, round(h_mm * self.k))), paper)
        self.d = ImageDraw.Draw(self.img)

    def px(self, mm: float) -> int:
        return round(mm * self.k)

    def font(self, pt: float, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return load_font(self.fonts[1 if bold else 0], max(4, round(pt * self.dpi / 72)))

    def text(self, x: float, y: float, s: str, pt: float = 11, bold: bool = False,
             fill: Rgb | None = None, anchor: str = "la") -> float:
        """Draw ``s`` at (x, y) mm; returns its width in mm."""
        f = self.font(pt, bold)
        self.d.text((self.px(x), self.px(y)), s, font=f, fill=fill or self.ink, anchor=anchor)
        return float(f.getlength(s)) / self.k

    def center(self, y: float, s: str, pt: float = 11, bold: bool = False, x0: float = 0,
               x1: float | None = None, fill: Rgb | None = None) -> None:
        x1 = self.w if x1 is None else x1
        self.text((x0 + x1) / 2, y, s, pt, bold, fill, anchor="ma")

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float = 0.3,
             fill: Rgb | None = None) -> None:
        self.d.line([(self.px(x0), self.px(y0)), (self.px(x1), self.px(y1))], fill=fill or self.ink,
                    width=max(1, self.px(width)))

    def rect(self, x0: float, y0: float, x1: float, y1: float, outline: Rgb | None = None,
             fill: Rgb | None = None, width: float = 0.3) -> None:
        self.d.rectangle([self.px(x0), self.px(y0), self.px(x1), self.px(y1)], outline=outline,
                         fill=fill, width=max(1, self.px(width)))

    def dotted(self, x0: float, x1: float, y: float) -> None:
        step = max(1, self.px(1.2))
        for xp in range(self.px(x0), self.px(x1), step):
            self.d.point((xp, self.px(y)), fill=self.ink)

    def words(self, n_chars: int, english: bool = False) -> str:
        vocab = EN_WORDS if english else WORDS
        out: list[str] = []
        total = 0
        while total < n_chars:
            w = self.rng.choice(vocab)
            out.append(w)
            total += len(w) + 1
        return " ".join(out)

    def paragraph(self, x: float, y: float, w: float, n_lines: int, pt: float = 11,
                  indent: float = 8, leading: float = 1.45, english: bool = False) -> float:
        """Justified-looking lines of random words; returns the y after the paragraph."""
        char_mm = pt * 0.353 * 0.48
        step = pt * 0.353 * leading
        for i in range(n_lines):
            x0 = x + (indent if i == 0 else 0)
            frac = self.rng.uniform(0.3, 0.9) if i == n_lines - 1 else 1.0
            self.text(x0, y, self.words(int((w - (x0 - x)) * frac / char_mm) - 2, english), pt)
            y += step
        return y

    def field(self, x: float, y: float, label: str, value: str | None, x1: float, pt: float = 11) -> None:
        """``Label: value`` with a dotted rule after the label (how forms are filled by hand)."""
        lw = self.text(x, y, label, pt)
        base = y + pt * 0.353 * 0.95
        self.dotted(x + lw + 1, x1, base)
        if value:
            self.text(x + lw + 2, y - 0.3, value, pt + 0.5, fill=self.rng.choice(((20, 30, 120), self.ink)))

    def seal(self, cx: float, cy: float, r: float) -> None:
        """A red round seal: two rings, a star, text-like dashes on the ring."""
        col = (self.rng.randint(170, 225), self.rng.randint(10, 60), self.rng.randint(20, 70))
        overlay = Image.new("RGBA", self.img.size, (0, 0, 0, 0))
        od = ImageDraw.Draw(overlay)
        alpha = self.rng.randint(150, 230)
        c = (*col, alpha)
        x, y, rp = self.px(cx), self.px(cy), self.px(r)
        wid = max(1, self.px(0.7))
        od.ellipse([x - rp, y - rp, x + rp, y + rp], outline=c, width=wid)
        ri = int(rp * 0.68)
        od.ellipse([x - ri, y - ri, x + ri, y + ri], outline=c, width=max(1, wid // 2))
        for a in range(0, 360, 11):
            t = math.radians(a + self.rng.uniform(-2, 2))
            r0, r1 = rp * 0.76, rp * 0.9
            od.line([(x + r0 * math.cos(t), y + r0 * math.sin(t)), (x + r1 * math.cos(t), y + r1 * math.sin(t))],
                    fill=c, width=max(1, wid // 2))
        self._star(od, x, y, ri * 0.45, c)
        self.img.paste(overlay, (0, 0), overlay)
        self.d = ImageDraw.Draw(self.img)

    @staticmethod
    def _star(d: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple[int, ...]) -> None:
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else r * 0.4
            t = math.radians(-90 + 36 * i)
            pts.append((x + rr * math.cos(t), y + rr * math.sin(t)))
        d.polygon(pts, fill=fill)

    def emblem(self, cx: float, cy: float, r: float) -> None:
        """The national emblem as the project draws it from plain shapes (no copied artwork): a
        red disc with a yellow five-pointed star, ringed by golden rice ears, a gold cog wheel at
        its foot and a red ribbon across the ears' stems."""
        x, y, rp = self.px(cx), self.px(cy), self.px(r)
        gold, red, star = (222, 172, 48), (200, 38, 32), (252, 214, 44)
        d = self.d
        # rice ears: leaf-shaped grains along two arcs from the foot up to the top
        grain = max(1.0, rp * 0.16)
        for side in (-1, 1):
            for i in range(11):
                t = math.radians(25 + i * 14.5)  # from the foot (0) up to the top (180)
                gx, gy = x + side * rp * 0.86 * math.sin(t), y + rp * 0.86 * math.cos(t)
                d.ellipse([gx - grain, gy - grain * 0.6, gx + grain, gy + grain * 0.6], fill=gold)
        d.ellipse([x - rp * 0.72, y - rp * 0.72, x + rp * 0.72, y + rp * 0.72], fill=red,
                  outline=gold, width=max(1, round(rp * 0.05)))
        self._star(d, x, y - rp * 0.08, rp * 0.5, star)
        # the cog wheel, its upper half hidden behind the disc
        cog_y, cog_r = y + rp * 0.62, rp * 0.3
        for k in range(12):
            t = math.radians(k * 30)
            tx, ty = x + cog_r * 1.12 * math.cos(t), cog_y + cog_r * 1.12 * math.sin(t)
            d.rectangle([tx - rp * 0.05, ty - rp * 0.05, tx + rp * 0.05, ty + rp * 0.05], fill=gold)
        d.ellipse([x - cog_r, cog_y - cog_r, x + cog_r, cog_y + cog_r], fill=gold)
        d.ellipse([x - cog_r * 0.4, cog_y - cog_r * 0.4, x + cog_r * 0.4, cog_y + cog_r * 0.4], fill=red)
        ribbon_y = y + rp * 0.92
        d.polygon([(x - rp * 0.75, ribbon_y - rp * 0.12), (x + rp * 0.75, ribbon_y - rp * 0.12),
                   (x + rp * 0.62, ribbon_y + rp * 0.12), (x - rp * 0.62, ribbon_y + rp * 0.12)], fill=red)

    def signature(self, x: float, y: float, w: float) -> None:
        col = self.rng.choice(((25, 40, 140), (20, 20, 25), (40, 40, 110)))
        pts = []
        n = self.rng.randint(6, 12)
        for i in range(n * 4):
            t = i / (n * 4 - 1)
            pts.append((self.px(x + w * t + self.rng.uniform(-1, 1)),
                        self.px(y + 4 * math.sin(t * n * 2.1 + self.rng.uniform(0, 0.6)) * self.rng.uniform(0.4, 1))))
        self.d.line(pts, fill=col, width=max(1, self.px(0.45)), joint="curve")

    def guilloche(self, x0: float, y0: float, x1: float, y1: float, col: Rgb, density: float = 1.0) -> None:
        """Interleaved sine curves, as printed on certificates and ID cards against forgery."""
        n = int(14 * density)
        xs = np.linspace(self.px(x0), self.px(x1), 200)
        span_y = self.px(y1) - self.px(y0)
        f1 = self.rng.uniform(2, 6)
        for i in range(n):
            base = self.px(y0) + span_y * (i + 0.5) / n
            amp = span_y / n * self.rng.uniform(0.8, 2.2)
            ph = self.rng.uniform(0, 6.3)
            ys = base + amp * np.sin(np.linspace(0, f1 * math.pi, 200) + ph)
            self.d.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=col, width=1)

    def photo(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """An ID photo: plain background, head and shoulders (no real person)."""
        bg = self.rng.choice(((200, 220, 245), (240, 240, 240), (215, 230, 250)))
        w, h = max(4, self.px(x1) - self.px(x0)), max(4, self.px(y1) - self.px(y0))
        sub = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(sub)
        skin = (self.rng.randint(190, 235), self.rng.randint(150, 195), self.rng.randint(120, 165))
        cloth = self.rng.choice(((30, 30, 40), (240, 240, 240), (50, 60, 110)))
        d.ellipse([0.1 * w, 0.72 * h, 0.9 * w, 1.4 * h], fill=cloth)
        d.ellipse([0.28 * w, 0.18 * h, 0.72 * w, 0.72 * h], fill=skin)
        d.chord([0.26 * w, 0.12 * h, 0.74 * w, 0.5 * h], 180, 360, fill=(25, 20, 20))
        self.img.paste(sub, (self.px(x0), self.px(y0)))

    def qr(self, x: float, y: float, size: float, payload: str) -> None:
        """A real QR code (segno) when available, else a QR-like pattern of the same look."""
        try:
            import segno  # dev extra; the generator works without it

            rows = [list(r) for r in segno.make(payload, error="m", micro=False).matrix]
            grid = np.array(rows, dtype=np.uint8)
        except ImportError:
            n = 29
            grid = (np.array([self.rng.random() for _ in range(n * n)]).reshape(n, n) > 0.5).astype(np.uint8)
            for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):
                grid[r0:r0 + 7, c0:c0 + 7] = 1
                grid[r0 + 1:r0 + 6, c0 + 1:c0 + 6] = 0
                grid[r0 + 2:r0 + 5, c0 + 2:c0 + 5] = 1
        n = grid.shape[0] + 8
        cell = max(1, self.px(size) // n)
        img = np.full((n * cell, n * cell), 255, np.uint8)
        big = np.kron(1 - grid, np.ones((cell, cell), np.uint8)) * 255
        img[4 * cell:4 * cell + big.shape[0], 4 * cell:4 * cell + big.shape[1]] = big
        self.img.paste(Image.fromarray(img).convert("RGB"), (self.px(x), self.px(y)))

    def table(self, x: float, y: float, w: float, cols: list[float], n_rows: int, row_h: float,
              header: list[str] | None = None, pt: float = 9, fill_frac: float = 0.8) -> float:
        """A ruled table; ``cols`` are column width fractions. Returns the y below it."""
        edges = [x]
        for c in cols:
            edges.append(edges[-1] + c * w)
        y1 = y + row_h * (n_rows + (1 if header else 0))
        for e in edges:
            self.line(e, y, e, y1, 0.25)
        for r in range(n_rows + (1 if header else 0) + 1):
            self.line(x, y + r * row_h, x + w, y + r * row_h, 0.25)
        yy = y
        if header:
            for i, hname in enumerate(header[: len(cols)]):
                self.center(yy + row_h * 0.2, hname, pt, True, edges[i], edges[i + 1])
            yy += row_h
        for r in range(n_rows):
            if self.rng.random() < fill_frac:
                for i in range(len(cols)):
                    chars = int(cols[i] * w / (pt * 0.353 * 0.5)) - 2
                    if chars > 1:
                        s = str(r + 1) if i == 0 else self.words(self.rng.randint(1, chars))[:chars]
                        self.text(edges[i] + 1, yy + row_h * 0.2, s, pt)
            yy += row_h
        return y1

    def motto(self, cx: float, y: float, pt: float = 11) -> float:
        """National motto block, centred at cx; returns y below it."""
        self.text(cx, y, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", pt, True, anchor="ma")
        y2 = y + pt * 0.353 * 1.45
        self.text(cx, y2, "Độc lập - Tự do - Hạnh phúc", pt + 1, True, anchor="ma")
        half = pt * 0.353 * 9
        self.line(cx - half, y2 + pt * 0.353 * 1.4, cx + half, y2 + pt * 0.353 * 1.4, 0.3)
        return y2 + pt * 0.353 * 2.4

    def agency(self, cx: float, y: float, pt: float = 11) -> float:
        upper = self.rng.choice(("UBND TỈNH " + self.rng.choice(PROVINCES).upper(), "BỘ TƯ PHÁP",
                                 "UBND " + self.rng.choice(COMMUNES).upper(), "SỞ TÀI NGUYÊN VÀ MÔI TRƯỜNG"))
        lower = self.rng.choice(("VĂN PHÒNG", "SỞ TƯ PHÁP", "TRUNG TÂM PHỤC VỤ HÀNH CHÍNH CÔNG",
                                 "PHÒNG TƯ PHÁP", "CHI CỤC THUẾ"))
        self.text(cx, y, upper, pt - 1, False, anchor="ma")
        y2 = y + pt * 0.353 * 1.45
        self.text(cx, y2, lower, pt, True, anchor="ma")
        self.line(cx - 12, y2 + pt * 0.353 * 1.4, cx + 12, y2 + pt * 0.353 * 1.4, 0.3)
        return y2 + pt * 0.353 * 2.4

    def bgr(self) -> np.ndarray:
        return cv2.cvtColor(np.asarray(self.img), cv2.COLOR_RGB2BGR)


# --- fictitious data --------------------------------------------------------------------------

def fake_name(rng: random.Random) -> str:
    return f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"


def fake_date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2024)}"


def digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def place(rng: random.Random) -> str:
    return f"{rng.choice(COMMUNES)}, {rng.choice(PROVINCES)}"


def tint(rng: random.Random, base: Rgb, spread: int = 12) -> Rgb:
    return (min(255, max(0, base[0] + rng.randint(-spread, spread))),
            min(255, max(0, base[1] + rng.randint(-spread, spread))),
            min(255, max(0, base[2] + rng.randint(-spread, spread))))


