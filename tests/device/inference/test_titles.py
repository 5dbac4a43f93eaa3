"""The title reader: matching OCR text to document types, reading the project's own rendered
pages with Tesseract, and fusing the title with the image model into an answer or `unsure`."""

from __future__ import annotations

import numpy as np
import pytest

from device.inference.config import DoctypeConfig, TitleConfig
from device.inference.doctype import (
    DOCTYPES,
    STRONG_TITLE,
    UNSURE,
    fuse,
    load_classifier,
)
from device.inference.pipeline import PagePipeline
from device.inference.titles import (
    TitleEvidence,
    TitleReader,
    find_phrase,
    match_titles,
    normalise,
    tesseract_has,
    title_crop,
)
from training.generator import degrade, render

needs_tesseract = pytest.mark.skipif(not tesseract_has("vie"), reason="tesseract with Vietnamese is not installed")
#: These tests are about what is read, not how fast: a busy machine's slow reading is waited for.
PATIENT = TitleConfig(timeout_s=300)


def _probs(**named: float) -> np.ndarray:
    p = np.full(len(DOCTYPES), 0.01)
    for name, value in named.items():
        p[DOCTYPES.index(name)] = value
    return np.asarray(p / p.sum(), np.float64)


def test_normalise_strips_accents_case_and_punctuation_but_keeps_lines() -> None:
    assert normalise("Căn cước công dân\nSố: 01/QĐ-UBND.") == "CAN CUOC CONG DAN\nSO 01 QD UBND"
    assert normalise("ĐƠN ĐỀ NGHỊ") == "DON DE NGHI"
    assert normalise("  \n--\n") == ""


def test_find_phrase_tolerates_ocr_errors_on_word_boundaries_only() -> None:
    assert find_phrase("GIAY KHAI SINH", "GIAY KHAI SINH") == [(0, 14)]
    assert find_phrase("GIAY KHAI SINH", "GIXY KHAI SINH")[0][0] == 1
    # Inside a longer word is no match, nor is a phrase with too many wrong letters.
    assert find_phrase("HOA DON", "THOA DONG") == []
    assert find_phrase("GIAY KHAI SINH", "DANG KY KHAI SINH") == []
    # Short phrases must be exact.
    assert find_phrase("V V", "V V NOI DUNG") and not find_phrase("V V", "V W")
    # A title broken over two lines.
    assert find_phrase("GIAY CHUNG NHAN KET HON", "GIAY CHUNG NHAN\nKET HON")


@pytest.mark.parametrize(
    ("text", "doctype"),
    [
        ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\nGIẤY KHAI SINH", "birth_certificate"),
        ("CONG HOA XA HOI CHU NGHIA VIET NAM\nCAN CUOC CONG DAN\nSo / No.: 001", "id_card"),
        ("UBND TỈNH\nSố: 12/QĐ-UBND\nQUYẾT ĐỊNH\nVề việc cấp giấy chứng nhận quyền sử dụng đất", "official_document"),
        ("GIẤY CHỨNG NHẬN\nQUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU NHÀ Ở", "land_certificate"),
        ("TỜ KHAI ĐĂNG KÝ KHAI SINH\nKính gửi: UBND xã", "application_form"),
        ("GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ\nMã hồ sơ: 000.00", "dossier_receipt"),
        ("HÓA ĐƠN GIÁ TRỊ GIA TĂNG\nTổng cộng 125.000", "receipt"),
        ("GIẤY CHỨNG NHẬM KẾT H0N", "marriage_certificate"),  # two letters misread
    ],
)
def test_the_first_line_naming_a_type_decides(text: str, doctype: str) -> None:
    evidence = match_titles(text)
    assert evidence.doctype == doctype
    assert evidence.strength >= STRONG_TITLE


def test_a_title_in_running_text_is_only_a_clue() -> None:
    """Titles are printed in capitals: "quyết định" inside a sentence does not make a decision."""
    running = match_titles("Căn cứ quyết định số 12 của ủy ban nhân dân")
    assert running.scores["official_document"] < STRONG_TITLE
    assert match_titles("QUYẾT ĐỊNH\nVề việc cấp đất").strength == 1.0


def test_text_without_a_title_is_no_type_but_says_what_it_saw() -> None:
    english = match_titles("We propose a network for the analysis of the data. " * 8)
    assert english.doctype is None and english.words >= 40 and english.vietnamese < 0.02
    motto = match_titles("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\nnội dung")
    assert motto.official and motto.doctype is None and motto.vietnamese > 0.1
    figures = match_titles("0.85 0.91 12.50 3.25 1,250,000")
    assert figures.prices == 5 and figures.scores["receipt"] < STRONG_TITLE  # a clue, never a title


def test_title_crop_reads_the_top_of_a_page_a_whole_card_and_the_head_of_a_receipt() -> None:
    cfg = TitleConfig(width_px=500, top_fraction=0.25)
    assert title_crop(np.zeros((400, 300, 3), np.uint8), cfg).shape == (100, 300)  # A4-like: top quarter
    assert title_crop(np.zeros((54, 86, 3), np.uint8), cfg).shape == (1005, 1600)  # a card: whole, enlarged
    assert title_crop(np.zeros((1080, 3440, 3), np.uint8), cfg).shape == (502, 1600)  # a large one reduced
    assert title_crop(np.zeros((2560, 1184, 3), np.uint8), cfg, whole=True).shape == (3459, 1600)  # a photo, whole
    assert title_crop(np.zeros((1000, 250, 3), np.uint8), cfg).shape == (350, 250)  # till receipt: head
    assert title_crop(np.zeros((1400, 1000), np.uint8), cfg).shape == (175, 500)  # grey, scaled down


def test_fusion_a_clear_title_decides_over_the_image() -> None:
    result = fuse(_probs(other=0.9), DOCTYPES, TitleEvidence("birth_certificate", 0.93, read=True), 0.6)
    assert result.doctype == "birth_certificate" and result.confidence >= 0.93


def test_fusion_weak_or_no_title_leaves_the_image_model_and_unsure_below_the_floor() -> None:
    sure = _probs(receipt=0.9)
    assert fuse(sure, DOCTYPES, TitleEvidence(), 0.6).doctype == "receipt"
    torn = _probs(receipt=0.4, other=0.4)
    unsure = fuse(torn, DOCTYPES, TitleEvidence(), 0.6)
    assert unsure.doctype == UNSURE and 0.4 < unsure.confidence < 0.6  # the confidence is kept
    # A weak reading of a title tips a torn image model.
    weak = TitleEvidence("receipt", 0.6, {"receipt": 0.6}, words=20, read=True)
    assert fuse(torn, DOCTYPES, weak, 0.6).doctype == "receipt"
    # The national motto rules out a shop receipt; what is left is not sure enough.
    motto = TitleEvidence(None, 0.0, {}, words=30, official=True, vietnamese=0.25, read=True)
    assert fuse(_probs(receipt=0.7, application_form=0.2), DOCTYPES, motto, 0.6).doctype == UNSURE
    # A titled class the text never names, on a page where plenty was read, is doubted.
    untitled = TitleEvidence(None, 0.0, {}, words=60, vietnamese=0.0, read=True)
    assert fuse(_probs(birth_certificate=0.6, other=0.3), DOCTYPES, untitled, 0.6).doctype == "other"
    # Even a clear title is `unsure` under a floor above its confidence.
    assert fuse(sure, DOCTYPES, TitleEvidence("land_certificate", 0.85, read=True), 0.99).doctype == UNSURE


@needs_tesseract
@pytest.mark.parametrize(
    "doctype",
    ["id_card", "birth_certificate", "marriage_certificate", "land_certificate", "application_form",
     "official_document", "dossier_receipt"],
)
def test_reader_finds_the_title_on_rendered_scans(doctype: str) -> None:
    """Pages the project renders itself (fictitious content), scanned at 200 dpi with the held-out
    fonts and degradations: the title is read and names the class."""
    page = degrade(render(doctype, 700_001, split="heldout", dpi=200), 700_001, split="heldout", strength=0.4)
    evidence = TitleReader(PATIENT).read(page)
    assert evidence.read and evidence.doctype == doctype, evidence


@needs_tesseract
def test_reader_on_a_page_without_text_is_no_evidence_and_a_broken_reader_is_harmless() -> None:
    blank = np.full((800, 600, 3), 250, np.uint8)
    assert TitleReader(PATIENT).read(blank).doctype is None
    off = TitleReader(TitleConfig(enabled=False))
    assert off.read(render("birth_certificate", 1, dpi=100)) == TitleEvidence()


@needs_tesseract
def test_demo_birth_certificate_is_typed_birth_certificate() -> None:
    """The sample `make demo` feeds (seed 3 at 200 dpi) comes back as a birth certificate through
    the whole page pipeline with the shipped model."""
    page = render("birth_certificate", seed=3, dpi=200)
    with load_classifier(DoctypeConfig(text=PATIENT)) as clf:
        result = PagePipeline(classifier=clf).process(page, dpi=200)
    assert result.doctype == "birth_certificate"
    assert result.confidence is not None and result.confidence >= DoctypeConfig().min_confidence


def test_a_machine_readable_zone_names_an_identity_card() -> None:
    back = ("Đặc điểm nhân dạng\nI<VNM0960123456<<<<<<<<<<<<<<<\n9001014M3001012VNM<<<<<<<<<<<6\n"
            "NGUYEN<<VAN<A<<<<<<<<<<<<<<<")
    evidence = match_titles(back)
    assert evidence.doctype == "id_card" and evidence.strength >= STRONG_TITLE
    assert match_titles("Ghi chú <<< xem trang sau").doctype is None  # one run of filler is no zone
    titled = match_titles("GIẤY KHAI SINH\nI<VNM096<<<<<<<\nAB<<<<<<<<")
    assert titled.doctype == "birth_certificate"  # a title read above the zone comes first
