"""Synthetic Vietnamese administrative documents, deterministic by seed, for the 10 doctypes.

No public set of Vietnamese administrative documents may be used and real ones carry personal
data, so the classifier learns from pages drawn here: the real layouts' structure (agency header
and national motto, titles, dotted fields, tables, red seals, signatures, ID photos, guilloche
backgrounds, QR codes, MRZ lines) with Vietnamese text in several fonts and fictitious names and
numbers. :func:`degrade` then does to a page what scanners and cameras do.

Fonts, layout variants and degradation families are split in two: ``split="train"`` draws only
from the training half and ``split="heldout"`` only from the other half, so a held-out set
measures generalisation to fonts, layouts and degradations the model never saw.

>>> page = render("birth_certificate", seed=7)          # clean page, BGR uint8, 100 dpi
>>> page.shape[2], page.dtype.name
(3, 'uint8')
>>> photo = degrade(page, seed=7)                        # as a scanner/camera would give it
>>> same = sample("receipt", seed=3)                     # render + degrade in one call
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

from device.inference.doctype import DOCTYPES, LABELS_VI
from training.cards import id_card
from training.drawing import (
    COMMUNES,
    HELDOUT_FONTS,
    HELDOUT_VARIANTS,
    PROVINCES,
    TRAIN_FONTS,
    TRAIN_VARIANTS,
    Page,
    digits,
    fake_date,
    fake_name,
    place,
    tint,
)

__all__ = ["DOCTYPES", "LABELS_VI", "Split", "degrade", "render", "sample"]

Split = Literal["train", "heldout"]

# --- one renderer per class ---------------------------------------------------------------------
# Each takes (rng, variant, dpi, fonts); variant 2 is reserved for the held-out set.

def _civil_header(p: Page, variant: int) -> float:
    if variant == 1:
        p.emblem(p.w / 2, 14, 7)
        y = p.motto(p.w / 2, 24)
    else:
        y = p.motto(p.w / 2 if variant == 2 else p.w * 0.62, 12)
        if variant != 2:
            p.text(14, 12, "Số: " + digits(p.rng, 3) + "/" + str(p.rng.randint(2000, 2024)), 10)
    return y


def _birth_certificate(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(210, 297, dpi, rng, fonts, tint(rng, (250, 246, 232), 6))
    p.guilloche(8, 8, 202, 289, tint(rng, (235, 225, 205), 8), 3.0)
    p.rect(8, 8, 202, 289, outline=tint(rng, (120, 90, 60)), width=1.2 if variant != 2 else 0.5)
    y = _civil_header(p, variant)
    p.center(y + 8, "GIẤY KHAI SINH", 20, True, fill=(170, 30, 35) if variant != 2 else p.ink)
    y += 26
    fields = (("Họ, chữ đệm, tên: ", fake_name(rng).upper()), ("Ngày, tháng, năm sinh: ", fake_date(rng)),
              ("Giới tính: ", rng.choice(("Nam", "Nữ"))), ("Dân tộc: ", "Kinh"), ("Quốc tịch: ", "Việt Nam"),
              ("Nơi sinh: ", place(rng)), ("Quê quán: ", place(rng)),
              ("Số định danh cá nhân: ", digits(rng, 12)), ("Họ, chữ đệm, tên người mẹ: ", fake_name(rng)),
              ("Năm sinh: ", str(rng.randint(1960, 2000))), ("Nơi cư trú: ", place(rng)),
              ("Họ, chữ đệm, tên người cha: ", fake_name(rng)), ("Năm sinh: ", str(rng.randint(1955, 2000))),
              ("Nơi cư trú: ", place(rng)), ("Nơi đăng ký khai sinh: ", "UBND " + rng.choice(COMMUNES)))
    step = 10.5 if variant != 1 else 11.5
    for lab, val in fields:
        p.field(20, y, lab, val, 190, 11)
        y += step
    p.text(120, y + 6, f"{rng.choice(PROVINCES)}, ngày {fake_date(rng)}", 10)
    p.center(y + 13, "NGƯỜI KÝ GIẤY KHAI SINH", 10, True, x0=110, x1=200)
    p.signature(135, y + 30, 38)
    p.seal(130, y + 28, 17)
    p.center(y + 44, fake_name(rng), 11, True, x0=110, x1=200)
    return p


def _marriage_certificate(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    w, h = (297.0, 210.0) if variant == 1 else (210.0, 297.0)
    p = Page(w, h, dpi, rng, fonts, tint(rng, (252, 242, 240), 6))
    border = tint(rng, (200, 80, 90), 20)
    for i in range(3):
        p.rect(6 + i * 2.2, 6 + i * 2.2, w - 6 - i * 2.2, h - 6 - i * 2.2, outline=border, width=0.8)
    p.guilloche(14, 14, w - 14, h - 14, tint(rng, (245, 215, 215), 6), 2.0)
    y = p.motto(w / 2, 18)
    if variant == 2:
        p.emblem(30, 24, 9)
    p.center(y + 6, "GIẤY CHỨNG NHẬN KẾT HÔN", 20, True, fill=(180, 30, 40))
    y += 24
    cols = ((22, w / 2 - 4), (w / 2 + 4, w - 22))
    p.center(y, "Thông tin người chồng", 11, True, cols[0][0], cols[0][1])
    p.center(y, "Thông tin người vợ", 11, True, cols[1][0], cols[1][1])
    y += 9
    for lab in ("Họ, chữ đệm, tên:", "Ngày, tháng, năm sinh:", "Dân tộc:", "Quốc tịch:", "Nơi cư trú:",
                "Giấy tờ tùy thân:"):
        for x0, x1 in cols:
            val = fake_name(rng) if lab.startswith("Họ") else fake_date(rng) if "sinh" in lab else rng.choice(PROVINCES)
            p.field(x0, y, lab, val, x1, 9.5)
        y += 10 if w < h else 8.5
    if variant == 1:
        p.line(w / 2, y - 62, w / 2, y, 0.3)
    p.text(22, y + 4, f"Nơi đăng ký kết hôn: UBND {rng.choice(COMMUNES)}", 10)
    p.text(22, y + 10, f"Ngày, tháng, năm đăng ký: {fake_date(rng)}", 10)
    yb = y + 20
    p.center(yb, "Chồng", 10, True, 20, 80)
    p.center(yb, "Vợ", 10, True, 80, 140)
    p.signature(30, yb + 12, 30)
    p.signature(92, yb + 12, 30)
    p.center(yb, "TM. ỦY BAN NHÂN DÂN", 10, True, w - 95, w - 15)
    p.seal(w - 62, yb + 16, 16)
    p.signature(w - 70, yb + 17, 35)
    return p


def _land_certificate(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(190, 265, dpi, rng, fonts, tint(rng, (250, 232, 228), 8))
    p.guilloche(0, 0, 190, 265, tint(rng, (240, 200, 195), 8), 4.0)
    p.rect(5, 5, 185, 260, outline=(190, 60, 60), width=1.5)
    p.center(10, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 11, True, fill=(190, 30, 35))
    p.center(16, "Độc lập - Tự do - Hạnh phúc", 11, True, fill=(190, 30, 35))
    p.emblem(95, 34, 10)
    p.center(48, "GIẤY CHỨNG NHẬN", 22, True, fill=(190, 30, 35))
    p.center(59, "QUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU TÀI SẢN GẮN LIỀN VỚI ĐẤT", 10.5, True, fill=(190, 30, 35))
    if variant != 1:
        p.qr(12 if variant == 0 else 150, 10, 26, "GCN|" + digits(rng, 10))
    y = 72.0
    p.text(14, y, "I. Người sử dụng đất, chủ sở hữu tài sản gắn liền với đất", 10.5, True)
    y += 7
    p.field(18, y, "Ông/Bà: ", fake_name(rng), 180, 10)
    p.field(18, y + 7, "CCCD số: ", digits(rng, 12), 180, 10)
    p.field(18, y + 14, "Địa chỉ: ", place(rng), 180, 10)
    y += 24
    p.text(14, y, "II. Thửa đất, nhà ở và tài sản khác gắn liền với đất", 10.5, True)
    y += 7
    if variant == 2:
        y = p.table(16, y, 158, [0.3, 0.2, 0.25, 0.25], 5, 7, ["Thửa đất số", "Tờ bản đồ", "Diện tích", "Mục đích"])
    else:
        for lab in ("a) Thửa đất số: ", "b) Địa chỉ: ", "c) Diện tích: ", "d) Hình thức sử dụng: ",
                    "đ) Mục đích sử dụng: ", "e) Thời hạn sử dụng: ", "g) Nguồn gốc sử dụng: "):
            p.field(18, y, lab, rng.choice((digits(rng, 3) + " m²", rng.choice(PROVINCES), "Lâu dài")), 180, 10)
            y += 7
    # the parcel sketch
    y += 6
    pts = [(40 + rng.uniform(-8, 8), y + rng.uniform(0, 6)), (140 + rng.uniform(-8, 8), y + rng.uniform(0, 8)),
           (150 + rng.uniform(-8, 8), y + 50 + rng.uniform(-6, 6)), (50 + rng.uniform(-8, 8), y + 55)]
    for i in range(4):
        p.line(*pts[i], *pts[(i + 1) % 4], 0.5)
        p.text(pts[i][0], pts[i][1] - 4, str(i + 1), 8)
    p.text(80, y + 25, f"{rng.randint(50, 900)},{rng.randint(0, 9)} m²", 10, True)
    yb = min(y + 65, 225.0)
    p.text(100, yb, f"{rng.choice(PROVINCES)}, ngày {fake_date(rng)}", 10)
    p.seal(130, yb + 20, 16)
    p.signature(122, yb + 22, 35)
    p.text(14, 250, "Số vào sổ cấp GCN: CS " + digits(rng, 5), 9)
    return p


def _household_book(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(130, 190, dpi, rng, fonts, tint(rng, (232, 240, 246), 8))
    if variant == 2:
        p.guilloche(0, 0, 130, 190, tint(rng, (210, 222, 236), 6), 2.5)
    p.center(6, "SỔ HỘ KHẨU", 12, True, fill=(40, 50, 120))
    p.field(8, 14, "Họ và tên chủ hộ: ", fake_name(rng), 122, 9)
    p.field(8, 20, "Số nhà, đường phố: ", str(rng.randint(1, 300)) + " " + rng.choice(PROVINCES), 122, 9)
    y = 30.0
    for _ in range(2 if variant != 1 else 3):
        p.text(8, y, rng.choice(("Chủ hộ", "Quan hệ với chủ hộ: " + rng.choice(("Vợ", "Con", "Mẹ")))), 8.5, True)
        y += 5
        for lab in ("Họ và tên:", "Ngày sinh:", "Nơi sinh:", "Nghề nghiệp:", "CMND số:"):
            p.field(10, y, lab, rng.choice((fake_name(rng), fake_date(rng), rng.choice(PROVINCES))), 120, 7.5)
            y += 5
        if variant == 0:
            p.rect(100, y - 26, 122, y - 4, outline=p.ink, width=0.3)
            p.seal(111, y - 15, 8)
        p.line(6, y + 1, 124, y + 1, 0.4)
        y += 4
    if y < 150:
        p.table(6, y + 2, 118, [0.3, 0.4, 0.3], 6, 6, ["Ngày", "Nội dung thay đổi", "Cán bộ"], 7)
    p.text(110, 184, str(rng.randint(2, 20)), 8)
    return p


def _application_form(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(210, 297, dpi, rng, fonts)
    if variant == 1:
        p.rect(150, 8, 200, 16, outline=p.ink, width=0.3)
        p.text(152, 10, "Mẫu số " + str(rng.randint(1, 20)) + "/TK", 9)
    y = p.motto(105, 14 if variant != 2 else 22)
    title = rng.choice(("TỜ KHAI ĐĂNG KÝ KHAI SINH", "ĐƠN ĐỀ NGHỊ CẤP GIẤY CHỨNG NHẬN", "TỜ KHAI THAY ĐỔI THÔNG TIN",
                        "ĐƠN ĐĂNG KÝ BIẾN ĐỘNG ĐẤT ĐAI", "TỜ KHAI CĂN CƯỚC", "ĐƠN XIN XÁC NHẬN"))
    p.center(y + 6, title, 14, True)
    y += 18
    p.field(30, y, "Kính gửi: ", "UBND " + rng.choice(COMMUNES), 190)
    y += 10
    labels = ["Họ, chữ đệm, tên người yêu cầu: ", "Giấy tờ tùy thân: ", "Nơi cư trú: ", "Số điện thoại: ",
              "Quan hệ với người được khai: ", "Nội dung đề nghị: ", "Lý do: "]
    rng.shuffle(labels)
    for lab in labels:
        filled = rng.random() < 0.6
        p.field(20, y, lab, fake_name(rng) if filled else None, 192, 11)
        y += 9
        if rng.random() < 0.3:
            p.dotted(20, 192, y + 3.5)
            y += 8
    if variant != 2:
        for i in range(rng.randint(2, 4)):
            p.rect(22, y + i * 8, 26, y + i * 8 + 4, outline=p.ink, width=0.3)
            if rng.random() < 0.5:
                p.text(22.5, y + i * 8 - 0.8, "x", 10, True)
            p.text(29, y + i * 8 - 0.5, p.words(40), 10)
        y += 34
        if variant == 1 and rng.random() < 0.5:  # many forms list the papers attached
            p.text(20, y, "Giấy tờ kèm theo:", 10.5, True)
            y = p.table(20, y + 6, 172, [0.1, 0.6, 0.3], rng.randint(2, 4), 7,
                        ["STT", "Tên giấy tờ kèm theo", "Bản chính/bản sao"], 9) + 4
    else:
        y = p.table(20, y + 2, 172, [0.08, 0.52, 0.2, 0.2], 5, 8, ["STT", "Tên giấy tờ", "Số lượng", "Ghi chú"]) + 6
    y = p.paragraph(20, y, 172, 2, 11)
    p.text(30, y + 2, "Tôi cam đoan những nội dung khai trên đây là đúng sự thật.", 11)
    p.text(115, y + 12, f"{rng.choice(PROVINCES)}, ngày ..... tháng ..... năm 20...", 10)
    p.center(y + 19, "NGƯỜI YÊU CẦU" if variant != 1 else "NGƯỜI KHAI", 11, True, x0=110, x1=200)
    p.center(y + 25, "(Ký, ghi rõ họ tên)", 9, x0=110, x1=200)
    if rng.random() < 0.7:
        p.signature(135, y + 36, 35)
        p.center(y + 46, fake_name(rng), 11, x0=110, x1=200)
    return p


def _official_document(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(210, 297, dpi, rng, fonts)
    y0 = p.agency(55, 15)
    p.motto(138, 15)
    kind = rng.choice(("QĐ-UBND", "UBND-VP", "TB-UBND", "CV-STP"))
    p.text(30, y0 + 1, f"Số: {rng.randint(1, 999)}/{kind}", 10, anchor="la")
    p.text(115, y0 + 1, f"{rng.choice(PROVINCES)}, ngày {fake_date(rng)}", 10, anchor="la")
    y = y0 + 12
    if kind.startswith("QĐ") or variant == 1:
        p.center(y, "QUYẾT ĐỊNH", 14, True)
        p.center(y + 7, "Về việc " + p.words(50), 11, True)
        y += 18
        p.center(y, "CHỦ TỊCH ỦY BAN NHÂN DÂN", 11, True)
        y += 8
        for _ in range(rng.randint(2, 3)):
            y = p.paragraph(25, y, 165, rng.randint(1, 2), 11) + 1
        p.center(y + 1, "QUYẾT ĐỊNH:", 11, True)
        y += 8
        for i in range(rng.randint(2, 3)):
            p.text(25, y, f"Điều {i + 1}.", 11, True)
            y = p.paragraph(25, y, 165, rng.randint(2, 4), 11, indent=16) + 1
    else:
        p.text(20, y, "V/v " + p.words(40), 10)
        y += 10
        p.center(y, "Kính gửi: " + rng.choice(("Sở Tư pháp", "UBND các xã, phường", "Văn phòng UBND tỉnh")), 11)
        y += 9
        for _ in range(rng.randint(3, 5)):
            y = p.paragraph(25, y, 165, rng.randint(2, 4), 11) + 1.5
        if variant == 0 and rng.random() < 0.3:  # a letter listing tasks or figures
            y = p.table(25, y + 2, 165, [0.1, 0.5, 0.2, 0.2], rng.randint(2, 5), 6.5,
                        ["STT", "Nội dung", "Đơn vị", "Thời hạn"], 9) + 3
    yb = min(y + 6, 235.0)
    nx = 20 if variant != 2 else 112
    sx = rng.uniform(95, 118) if variant != 2 else 18
    if variant == 2 or rng.random() < 0.8:  # a short letter may have no distribution list
        p.text(nx, yb, "Nơi nhận:", 9, True)
        for i in range(rng.randint(3, 5)):
            p.text(nx, yb + 4.5 + i * 4.2, "- " + p.words(18) + ";", 8.5)
    p.center(yb, rng.choice(("TM. ỦY BAN NHÂN DÂN", "KT. GIÁM ĐỐC", "CHỦ TỊCH")), 11, True, sx, sx + 80)
    p.signature(sx + 20, yb + 20, 40)
    p.seal(sx + rng.uniform(15, 35), yb + 18, 18 if variant == 2 else rng.uniform(14, 20))
    p.center(yb + 36, fake_name(rng), 11, True, sx, sx + 80)
    return p


def _receipt(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    kind = rng.choice(("thermal", "bienlai", "invoice")) if variant != 2 else rng.choice(("thermal", "bienlai"))
    if kind == "thermal":
        h = rng.uniform(120, 260)
        p = Page(80, h, dpi, rng, fonts, tint(rng, (248, 247, 240), 5))
        p.center(5, rng.choice(("CỬA HÀNG TIỆN LỢI", "SIÊU THỊ MINI", "NHÀ THUỐC", "BƯU ĐIỆN VĂN HÓA XÃ")), 9, True)
        p.center(10, place(rng), 6.5)
        p.center(16, "HÓA ĐƠN BÁN HÀNG" if variant != 2 else "PHIẾU THU", 9, True)
        y = 23.0
        dash = "-" * 48
        p.text(3, y, dash, 7)
        y += 4
        while y < h - 35:
            p.text(3, y, p.words(rng.randint(8, 18))[:18], 7)
            p.text(77, y, f"{rng.randint(1, 999)}.{rng.randint(0, 9)}00", 7, anchor="ra")
            y += 4.2
        p.text(3, y, dash, 7)
        p.text(3, y + 5, "TỔNG CỘNG", 9, True)
        p.text(77, y + 5, f"{rng.randint(10, 9999)}.000 đ", 9, True, anchor="ra")
        p.center(y + 14, "Cảm ơn quý khách!", 7)
        if rng.random() < 0.5:
            bx = 10.0
            for _ in range(40):
                wd = rng.choice((0.3, 0.6, 0.9))
                p.rect(bx, y + 19, bx + wd, y + 28, fill=(20, 20, 20), outline=None, width=0.1)
                bx += wd + rng.choice((0.3, 0.6))
        return p
    if kind == "bienlai":
        p = Page(148, 105 if variant != 1 else 148, dpi, rng, fonts, tint(rng, (250, 250, 245), 5))
        p.text(6, 5, "Mẫu số: 01BLP0-001", 7)
        p.text(6, 9, "Ký hiệu: AA/2" + str(rng.randint(10, 25)) + "E", 7)
        p.text(142, 5, "Số: " + digits(rng, 7), 8, anchor="ra")
        p.center(16, "BIÊN LAI THU PHÍ, LỆ PHÍ", 12, True, fill=(190, 30, 40))
        p.center(22, "(Liên 2: Giao cho người nộp tiền)", 7.5)
        y = 30.0
        for lab in ("Tên đơn vị thu: ", "Người nộp: ", "Địa chỉ: ", "Nội dung thu: ", "Số tiền: ", "Bằng chữ: "):
            p.field(8, y, lab, rng.choice((fake_name(rng), f"{rng.randint(10, 500)}.000 đồng", p.words(20))), 140, 8.5)
            y += 6.5
        p.center(y + 3, "Người nộp tiền", 8, True, 10, 70)
        p.center(y + 3, "Người thu tiền", 8, True, 80, 140)
        p.signature(95, y + 12, 25)
        return p
    p = Page(210, 148, dpi, rng, fonts)
    p.center(8, "HÓA ĐƠN GIÁ TRỊ GIA TĂNG", 14, True, fill=(190, 30, 40))
    p.text(150, 6, "Ký hiệu: 1C24TAA", 8)
    p.text(150, 11, "Số: " + digits(rng, 7), 8)
    y = 20.0
    for lab in ("Đơn vị bán hàng: ", "Mã số thuế: ", "Họ tên người mua: ", "Hình thức thanh toán: "):
        p.field(10, y, lab, p.words(25), 200, 9)
        y += 6
    y = p.table(10, y + 2, 190, [0.07, 0.43, 0.1, 0.1, 0.15, 0.15], rng.randint(3, 7), 6,
                ["STT", "Tên hàng hóa, dịch vụ", "ĐVT", "SL", "Đơn giá", "Thành tiền"], 8)
    p.text(120, y + 3, "Tổng cộng tiền thanh toán:", 9, True)
    p.text(10, y + 10, "Người mua hàng", 9, True)
    p.text(150, y + 10, "Người bán hàng", 9, True)
    return p


def _dossier_receipt(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    p = Page(210, 297, dpi, rng, fonts)
    code = f"{rng.randint(0, 99):03d}.{rng.randint(10, 99)}.{rng.randint(10, 99)}.H{rng.randint(10, 63)}-" \
           f"{rng.randint(230101, 251231)}-{rng.randint(1, 9999):04d}"
    qr_left = variant != 2
    p.qr(8 if qr_left else 168, 8, 30, f"{code}|{digits(rng, 7)}|{digits(rng, 12)}|Giấy tiếp nhận hồ sơ")
    y0 = p.agency(68 if qr_left else 50, 12, 10)
    p.motto(145 if qr_left else 110, 12, 10)
    p.text(42 if qr_left else 20, y0 + 1, "Số: " + code, 9)
    y = max(y0, 40) + 10
    p.center(y, "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", 14, True)
    p.center(y + 7, "Mã hồ sơ: " + code, 11, True)
    y += 18
    p.paragraph(20, y, 172, 1, 10.5)
    y += 7
    for lab, val in (("Tiếp nhận hồ sơ của: ", fake_name(rng)), ("Địa chỉ: ", place(rng)),
                     ("Số điện thoại: ", "09" + digits(rng, 8)), ("Nội dung yêu cầu giải quyết: ", p.words(40))):
        p.field(20, y, lab, val, 192, 10.5)
        y += 8
    p.text(20, y, "Thành phần hồ sơ và số lượng mỗi loại giấy tờ gồm:", 10.5, True)
    y = p.table(20, y + 6, 172, [0.08, 0.52, 0.2, 0.2], rng.randint(3, 6), 7,
                ["STT", "Tên giấy tờ", "Hình thức", "Số lượng"], 9) + 4
    p.field(20, y, "Số lượng hồ sơ: ", "01 (bộ)", 192, 10.5)
    p.field(20, y + 8, "Thời gian giải quyết hồ sơ theo quy định: ", f"{rng.randint(1, 30)} ngày", 192, 10.5)
    p.text(20, y + 16,
           f"Thời gian nhận hồ sơ: {rng.randint(7, 16)} giờ {rng.randint(0, 59)} phút, ngày {fake_date(rng)}", 10.5)
    p.text(20, y + 24, f"Thời gian trả kết quả giải quyết hồ sơ: ngày {fake_date(rng)}", 10.5, True)
    p.field(20, y + 32, "Vào Sổ theo dõi hồ sơ, Quyển số: ", str(rng.randint(1, 20)), 192, 10.5)
    yb = y + 44
    p.center(yb, "NGƯỜI NỘP HỒ SƠ", 10, True, 15, 95)
    p.center(yb, "NGƯỜI TIẾP NHẬN HỒ SƠ", 10, True, 110, 200)
    p.signature(35, yb + 14, 30)
    p.signature(135, yb + 14, 30)
    p.center(yb + 26, fake_name(rng), 10, x0=15, x1=95)
    p.center(yb + 26, fake_name(rng), 10, x0=110, x1=200)
    return p


def _other(rng: random.Random, variant: int, dpi: int, fonts: tuple[str, str]) -> Page:
    kind = rng.choice(("letter", "paper", "article", "blank", "picture", "book", "spreadsheet"))
    if variant == 2:
        kind = rng.choice(("letter", "paper", "article", "book"))
    w, h = (210.0, 297.0) if rng.random() < 0.8 else (148.0, 210.0)
    p = Page(w, h, dpi, rng, fonts, tint(rng, (250, 250, 248), 5))
    english = rng.random() < 0.5
    if kind == "blank":
        if rng.random() < 0.5:
            p.text(w - 20, h - 15, str(rng.randint(1, 99)), 9)
        return p
    if kind == "picture":
        for _ in range(rng.randint(3, 12)):
            x0, y0 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            col = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
            shape = rng.choice(("rect", "ellipse"))
            box = [p.px(x0), p.px(y0), p.px(x0 + rng.uniform(15, w * 0.6)), p.px(y0 + rng.uniform(15, h * 0.5))]
            if shape == "rect":
                p.d.rectangle(box, fill=col)
            else:
                p.d.ellipse(box, fill=col)
        return p
    if kind == "spreadsheet":
        p.text(15, 12, p.words(30, english), 12, True)
        p.table(12, 22, w - 24, [0.1, 0.3, 0.2, 0.2, 0.2], int((h - 40) / 7), 7, None, 8, 0.95)
        return p
    y = 20.0
    if kind == "letter":
        p.text(w - 20, y, fake_date(rng), 10, anchor="ra")
        y += 12
        p.text(20, y, ("Dear " if english else "Gửi ") + fake_name(rng) + ",", 11)
        y += 10
        for _ in range(rng.randint(3, 6)):
            y = p.paragraph(20, y, w - 40, rng.randint(2, 5), 11, english=english) + 3
        p.text(20, y + 5, fake_name(rng), 11)
        if rng.random() < 0.5:
            p.signature(20, y + 15, 30)
        return p
    if kind == "paper":
        p.center(y, p.words(45, True).title(), 14, True)
        p.center(y + 8, ", ".join(fake_name(rng) for _ in range(3)), 9)
        y += 18
        colw = (w - 46) / 2
        for c in range(2):
            yy = y
            while yy < h - 25:
                if rng.random() < 0.15:
                    p.rect(20 + c * (colw + 6), yy, 20 + c * (colw + 6) + colw, yy + 30, outline=p.ink, width=0.3)
                    p.line(24 + c * (colw + 6), yy + 25, 20 + c * (colw + 6) + colw - 4, yy + 5, 0.4)
                    yy += 36
                else:
                    yy = p.paragraph(20 + c * (colw + 6), yy, colw, rng.randint(3, 8), 8.5, 4, english=True) + 2
        p.center(h - 12, str(rng.randint(1, 15)), 9)
        return p
    if kind == "article":
        p.text(15, y, p.words(30, english).upper(), 18, True)
        y += 14
        ncol = rng.choice((2, 3))
        colw = (w - 30 - 5 * (ncol - 1)) / ncol
        for c in range(ncol):
            yy = y
            if c == 0 and rng.random() < 0.6:
                p.d.rectangle([p.px(15), p.px(yy), p.px(15 + colw), p.px(yy + 40)],
                              fill=(rng.randint(60, 200), rng.randint(60, 200), rng.randint(60, 200)))
                yy += 44
            while yy < h - 15:
                yy = p.paragraph(15 + c * (colw + 5), yy, colw, rng.randint(4, 9), 9, 3, english=english) + 2
        return p
    # book page
    for _ in range(rng.randint(5, 9)):
        y = p.paragraph(25, y, w - 50, rng.randint(3, 7), 11, english=english) + 2
        if y > h - 30:
            break
    p.center(h - 15, str(rng.randint(1, 300)), 10)
    return p


_RENDERERS: dict[str, Callable[[random.Random, int, int, tuple[str, str]], Page]] = {
    "id_card": id_card,
    "birth_certificate": _birth_certificate,
    "marriage_certificate": _marriage_certificate,
    "land_certificate": _land_certificate,
    "household_book": _household_book,
    "application_form": _application_form,
    "official_document": _official_document,
    "receipt": _receipt,
    "dossier_receipt": _dossier_receipt,
    "other": _other,
}


def render(doctype: str, seed: int, *, split: Split = "train", dpi: int = 100,
           variant: int | None = None) -> np.ndarray:
    """Render one clean, upright page of ``doctype`` as a BGR uint8 image.

    The same (doctype, seed, split, dpi, variant) always gives the same pixels. ``split`` picks
    the font families and layout variants (training or held-out); ``variant`` forces a layout
    variant (0-2) instead. Names, numbers and codes on the page are fictitious.
    """
    if doctype not in _RENDERERS:
        raise ValueError(f"unknown doctype {doctype!r}; expected one of {', '.join(DOCTYPES)}")
    rng = random.Random(f"{doctype}:{seed}:{split}")
    fonts = rng.choice(TRAIN_FONTS if split == "train" else HELDOUT_FONTS)
    if variant is None:
        variant = rng.choice(TRAIN_VARIANTS if split == "train" else HELDOUT_VARIANTS)
    return _RENDERERS[doctype](rng, variant, dpi, fonts).bgr()


# --- degradations ----------------------------------------------------------------------------------

def _on_background(img: np.ndarray, rng: random.Random, margin: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = int(max(h, w) * margin)
    bed = rng.choice(((245, 245, 245), (40, 40, 40), (120, 120, 120), (200, 200, 200), (90, 70, 55)))
    out = np.empty((h + 2 * m, w + 2 * m, 3), np.uint8)
    out[:] = bed
    ox, oy = rng.randint(0, 2 * m), rng.randint(0, 2 * m)
    out[oy:oy + h, ox:ox + w] = img
    return out


def _warp(img: np.ndarray, rng: random.Random, angle: float, persp: float) -> np.ndarray:
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jit = np.array([[rng.uniform(-persp, persp) * w, rng.uniform(-persp, persp) * h] for _ in range(4)],
                   np.float32)
    dst = src + jit
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rot = np.array([[c, -s], [s, c]], np.float32)
    centre = np.array([w / 2, h / 2], np.float32)
    dst = (dst - centre) @ rot.T + centre
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    border = tuple(int(v) for v in rng.choice(((255, 255, 255), (50, 50, 50), (150, 150, 150))))
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=border)


def _crop(img: np.ndarray, rng: random.Random, frac: float) -> np.ndarray:
    h, w = img.shape[:2]
    t, b = int(h * rng.uniform(0, frac)), int(h * rng.uniform(0, frac))
    lft, r = int(w * rng.uniform(0, frac)), int(w * rng.uniform(0, frac))
    return img[t:h - b, lft:w - r]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return img if out is None else np.asarray(out)


def _train_ops(img: np.ndarray, rng: random.Random, s: float) -> np.ndarray:
    """Scanner-like: small skew, mild perspective, small crops, paper aspect, gaussian blur and
    noise, JPEG, brightness/contrast, uneven lamp (a linear ramp), colour cast."""
    side = min(img.shape[:2])
    if rng.random() < 0.3:
        img = _on_background(img, rng, rng.uniform(0.01, 0.06))
    if rng.random() < 0.5:
        img = _crop(img, rng, 0.05 * s)
    if rng.random() < 0.8:
        img = _warp(img, rng, rng.uniform(-3, 3) * s, rng.uniform(0, 0.03) * s)
    if rng.random() < 0.4:  # paper formats and crops differ a little in aspect
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(8, int(w * rng.uniform(0.88, 1.12))), h), interpolation=cv2.INTER_AREA)
    f = img.astype(np.float32)
    if rng.random() < 0.7:
        f = f * rng.uniform(0.8, 1.15) + rng.uniform(-25, 20) * s
    if rng.random() < 0.3:  # uneven scanner lamp: brightness ramps across the page
        along_h = rng.random() < 0.5
        ramp = np.linspace(1 - rng.uniform(0.05, 0.25) * s, 1, f.shape[0] if along_h else f.shape[1],
                           dtype=np.float32)
        if rng.random() < 0.5:
            ramp = ramp[::-1]
        f *= ramp[:, None, None] if along_h else ramp[None, :, None]
    if rng.random() < 0.5:
        f *= np.array([rng.uniform(0.88, 1.08), rng.uniform(0.92, 1.05), rng.uniform(0.9, 1.1)], np.float32)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.5) * s * side / 800
        img = cv2.GaussianBlur(img, (0, 0), max(0.1, sigma))
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 10) * s, img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        img = _jpeg(img, rng.randint(int(35 + 50 * (1 - s)), 95))
    return img


def _heldout_ops(img: np.ndarray, rng: random.Random, s: float) -> np.ndarray:
    """Camera-like, none of them used in training: motion blur, speckle, folds, shadow and
    vignette lighting, resolution loss, stronger perspective."""
    h, w = img.shape[:2]
    side = min(h, w)
    if rng.random() < 0.5:
        f = img.astype(np.float32)
        for _ in range(rng.randint(1, 2)):  # folds: a crease line with shading on one side
            vertical = rng.random() < 0.5
            pos = rng.uniform(0.3, 0.7)
            ramp = np.linspace(0, 1, w if vertical else h)
            shade = 1 - 0.15 * s * np.clip(1 - np.abs(ramp - pos) * 8, 0, 1) * (ramp > pos)
            crease = np.abs(ramp - pos) < 0.002
            shade = shade - 0.3 * crease
            f *= shade[None, :, None] if vertical else shade[:, None, None]
        img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:  # shadow / vignette from a hand-held phone
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / math.hypot(w, h)
        light = 1 - rng.uniform(0.15, 0.45) * s * d
        img = np.clip(img.astype(np.float32) * light[..., None], 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        img = _warp(img, rng, rng.uniform(-5, 5) * s, rng.uniform(0.02, 0.06) * s)
    if rng.random() < 0.5:  # motion blur
        k = max(3, int(rng.uniform(0.004, 0.012) * s * side) | 1)
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
        kern = np.asarray(cv2.warpAffine(kern, rot, (k, k)), np.float32)
        kern /= max(1e-6, float(kern.sum()))
        img = cv2.filter2D(img, -1, kern)
    if rng.random() < 0.5:  # resolution loss
        f2 = rng.uniform(0.3, 0.6)
        small = cv2.resize(img, (max(8, int(w * f2)), max(8, int(h * f2))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:  # speckle / salt-and-pepper
        g = np.random.default_rng(rng.randint(0, 2**31))
        mask = g.random((h, w)) < 0.01 * s
        img = img.copy()
        img[mask] = g.choice(np.array([0, 255], np.uint8), size=(int(mask.sum()), 1))
    return img


def degrade(image: np.ndarray, seed: int, *, split: Split = "train", strength: float = 1.0) -> np.ndarray:
    """Return ``image`` (BGR uint8) as a scanner or camera might give it. Deterministic by seed.

    ``split="train"`` uses scanner-like degradations (skew, mild perspective, crop, gaussian
    blur and noise, JPEG, lighting, colour cast); ``split="heldout"`` uses camera-like ones the
    training set never has (motion blur, speckle, folds, shadows, resolution loss, stronger
    perspective). ``strength`` in [0, 1] scales every effect (0 returns a copy).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("degrade() wants a BGR uint8 image of shape (h, w, 3)")
    if strength <= 0:
        return image.copy()
    rng = random.Random(f"degrade:{seed}:{split}")
    s = min(1.0, strength)
    return _train_ops(image, rng, s) if split == "train" else _heldout_ops(image, rng, s)


def sample(doctype: str, seed: int, *, split: Split = "train", dpi: int = 100, strength: float = 1.0) -> np.ndarray:
    """``render`` then ``degrade`` with the same seed and split."""
    return degrade(render(doctype, seed, split=split, dpi=dpi), seed, split=split, strength=strength)
