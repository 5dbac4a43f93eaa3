"""Codes on pages: QR round trips through a printed, photographed page; the CCCD parsed and kept
out of logs; garbage and partial codes give "unreadable", never an exception."""

import logging

import cv2
import numpy as np
import pytest

from device.inference import synthetic
from device.inference.codes import Code, parse_cccd, parse_receipt, parse_text, read_codes
from device.inference.config import PipelineConfig, ReceiptRules
from device.inference.pipeline import PagePipeline

RECEIPT = "000.00.10.H10-250101-0001|1.000894.000.00.00.H10|001099012345|Giấy khai sinh bản sao"
CCCD7 = "001099012345|123456789|Nguyễn Thị Hoa|15031990|Nữ|Số 1, Phường Trúc Bạch, Hà Nội|20042021"
CCCD6 = "001099012345|Nguyễn Thị Hoa|15031990|Nữ|Số 1, Phường Trúc Bạch, Hà Nội|20042021"


def test_receipt_qr_round_trip_through_a_photographed_page() -> None:
    """Generate the receipt slip's QR, print it top-left on a page, photograph the page under
    perspective on a desk, read it back: the dossier code and fields come out intact."""
    page = synthetic.text_page(seed=1, dpi=200, qr_text=RECEIPT)
    quad = [(300, 120), (1480, 190), (1540, 2060), (230, 1990)]  # about 160 dpi on the page
    scene = synthetic.camera_scene(page, frame=(1800, 2200), quad=quad, seed=2)
    result = PagePipeline(PipelineConfig(source="camera")).process(scene.image)
    receipts = [c for c in result.codes if c.kind == "dossier_receipt"]
    assert len(receipts) == 1
    assert receipts[0].dossier_code == "000.00.10.H10-250101-0001"
    assert receipts[0].fields["document_name"] == "Giấy khai sinh bản sao"


def test_cccd_qr_round_trip_and_personal_data_kept_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A CCCD QR on a scanned card: the 7 fields are parsed, masked in the JSON form, absent
    from repr and from every log record."""
    card = synthetic.text_page(seed=2, dpi=300, size_mm=synthetic.ID_CARD_MM, font_pt=6, qr_text=CCCD7)
    with caplog.at_level(logging.DEBUG):
        codes = read_codes(card)
    assert [c.kind for c in codes] == ["cccd"]
    assert codes[0].fields["full_name"] == "Nguyễn Thị Hoa"
    assert codes[0].fields["old_id_number"] == "123456789"
    shown = str(codes[0].as_dict())
    assert "Hoa" not in shown and "001099012345" not in shown
    assert "Hoa" not in repr(codes[0])
    assert codes[0].as_dict(personal=True)["fields"]["date_of_birth"] == "15031990"
    for record in caplog.records:
        assert "Hoa" not in record.getMessage() and "001099012345" not in record.getMessage()


def test_cccd_six_fields() -> None:
    """Some cards leave out the old ID number: 6 fields."""
    fields = parse_cccd(CCCD6)
    assert fields is not None and fields["issue_date"] == "20042021" and "old_id_number" not in fields


@pytest.mark.parametrize(
    "text",
    [
        "001099012345|123456789|Nguyễn Thị Hoa",  # cut short
        "001099012345|123456789|Nguyễn Thị Hoa|31021990|Nữ|Hà Nội|20042021",  # 31 February
        "001099012345|12345|Nguyễn Thị Hoa|15031990|Nữ|Hà Nội|20042021",  # old id not 9 digits
        '{"ma_ho_so": "H10 25 0001", "ma_thu_tuc": "1.1", "cccd": "1", "ten_giay_to": "x"}',  # spaces
    ],
)
def test_partial_or_damaged_content_is_unreadable(text: str) -> None:
    """Codes that look like a CCCD or a receipt but are incomplete or wrong."""
    code = parse_text("QRCode", text)
    assert code.kind == "unreadable"
    assert code.error and code.error.startswith("unreadable code")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RECEIPT.replace("|", ";"), "000.00.10.H10-250101-0001"),
        (RECEIPT.replace("|", "\n"), "000.00.10.H10-250101-0001"),
        ('{"ma_ho_so": "H10.25-9", "ma_thu_tuc": "1.0001", "cccd": "001099012345", "ten_giay_to": "Đơn"}', "H10.25-9"),
        ("dossier_code=H10.25-7; procedure_code=1.2; applicant_id=0123; document_name=Tờ khai", "H10.25-7"),
    ],
)
def test_receipt_separators_parsed_defensively(text: str, expected: str) -> None:
    """The separator inside the receipt QR is not fixed: |, ;, newline, JSON, key=value."""
    fields = parse_receipt(text)
    assert fields is not None and fields["dossier_code"] == expected


def test_shop_receipt_codes_are_not_taken_for_dossier_receipts() -> None:
    """A cash-register QR with comma- and underscore-separated fields is just 'other'."""
    text = "_R1-AT1_840002_00008400_2021-12-03T10:55:26_29,22_0,00_0,00_0,00_0,00_EUR"
    assert parse_text("QRCode", text).kind == "other"


def test_other_codes_are_passed_through() -> None:
    """A URL QR and a Code128 barcode on a receipt: kind 'other' with their text."""
    import zxingcpp

    page = np.full((900, 1000, 3), 250, np.uint8)
    qr = synthetic.qr_image("https://dichvucong.gov.vn/p/home/dvc-tra-cuu-ho-so.html", 4)
    page[40 : 40 + qr.shape[0], 40 : 40 + qr.shape[1]] = qr
    symbol = zxingcpp.create_barcode("BL-2025-000123", zxingcpp.BarcodeFormat.Code128)
    bar = np.asarray(zxingcpp.write_barcode_to_image(symbol, scale=4))
    bar = cv2.resize(bar, (bar.shape[1], 120), interpolation=cv2.INTER_NEAREST)
    page[600 : 600 + bar.shape[0], 60 : 60 + bar.shape[1]] = cv2.cvtColor(bar, cv2.COLOR_GRAY2BGR)
    found = {c.text: c for c in read_codes(page)}
    assert "BL-2025-000123" in found and found["BL-2025-000123"].kind == "other"
    assert any(t and t.startswith("https://dichvucong") for t in found)


def test_damaged_qr_gives_unreadable_not_an_exception() -> None:
    """A QR with a third of its data area scratched out: reported as an unreadable code."""
    page = np.full((700, 600, 3), 250, np.uint8)
    qr = synthetic.qr_image(RECEIPT, 6)
    h = qr.shape[0]
    page[50 : 50 + h, 50 : 50 + h] = qr
    rng = np.random.default_rng(0)
    for _ in range(60):
        y = int(rng.integers(50 + h // 3, 50 + h - 40))
        x = int(rng.integers(50 + h // 3, 50 + h - 40))
        page[y : y + 12, x : x + 12] = 255 - page[y : y + 12, x : x + 12]
    codes = read_codes(page)
    assert codes and all(c.kind == "unreadable" for c in codes)
    assert codes[0].error is not None and "unreadable code" in codes[0].error


def test_noise_and_empty_images_do_not_raise() -> None:
    """Random noise, a black frame, a one-pixel image: a list (maybe empty), never an exception."""
    rng = np.random.default_rng(1)
    for img in (
        rng.integers(0, 255, (500, 500), dtype=np.uint8),
        np.zeros((300, 300, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
    ):
        assert isinstance(read_codes(img), list)


def test_code_json_form_hides_applicant_id() -> None:
    """The receipt's applicant id is personal: masked unless asked for."""
    code = Code("dossier_receipt", "QRCode", {"dossier_code": "X1", "applicant_id": "001099012345"})
    assert code.as_dict()["fields"]["applicant_id"] == "***"


CODE = "000.00.12.H10-260101-0001"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "H10.25-0001|1.000123||Tờ khai",
            {"dossier_code": "H10.25-0001", "procedure_code": "1.000123", "document_name": "Tờ khai"},
        ),
        (CODE, {"dossier_code": CODE}),
        (f"  {CODE}\n", {"dossier_code": CODE}),
        (f"https://dichvucong.gov.vn/p/home/dvc-tra-cuu-ho-so.html?maHoSo={CODE}", {"dossier_code": CODE}),
        (f"https://motcua.bacgiang.gov.vn/tra-cuu/{CODE}", {"dossier_code": CODE}),
        (f"https://motcua.bacgiang.gov.vn/tra-cuu?MAHOSO={CODE}&lang=vi", {"dossier_code": CODE}),
        ('{"ma_ho_so": "H10.25-9", "ma_thu_tuc": "", "cccd": "", "ten_giay_to": ""}', {"dossier_code": "H10.25-9"}),
    ],
)
def test_receipt_forms_name_the_dossier(text: str, expected: dict[str, str]) -> None:
    """A slip without an applicant id, a QR holding only the code, a look-up URL with the code in
    its query or path: each names the dossier, with only the fields the slip gives."""
    assert parse_receipt(text) == expected
    assert parse_text("QRCode", text).dossier_code == expected["dossier_code"]


@pytest.mark.parametrize(
    "text",
    [
        "https://dichvucong.gov.vn/p/home/dvc-tra-cuu-ho-so.html",  # the portal, no code in it
        f"https://example.com/tra-cuu?maHoSo={CODE}",  # a foreign host: not taken
        f"http://dichvucong.gov.vn.example.com/{CODE}",  # a look-alike host
        "BL-2025-000123",  # a fee receipt's number: not the national dossier code form
        "H10.25-0001",  # a code alone not in the configured form
        f"{CODE}X",
    ],
)
def test_lookalike_codes_are_not_taken_for_a_dossier(text: str) -> None:
    """Only the configured hosts and code form name a dossier: anything else stays 'other'."""
    assert parse_text("QRCode", text).kind == "other"


def test_receipt_rules_are_configurable() -> None:
    """A province whose slips hold only the code in its own form, looked up on its own host; the
    URL form switched off leaves URLs as 'other'."""
    rules = ReceiptRules(forms=["code_only"], code_pattern=r"HS-\d{8}")
    assert parse_text("QRCode", "HS-20260101", rules).dossier_code == "HS-20260101"
    assert parse_text("QRCode", CODE, rules).kind == "other"
    assert parse_text("QRCode", f"https://dichvucong.gov.vn/x?maHoSo={CODE}", rules).kind == "other"
    assert parse_text("QRCode", RECEIPT, rules).kind == "other"
    hosts = ReceiptRules(url_hosts=["motcua.example.vn"])
    assert parse_text("QRCode", f"https://motcua.example.vn/{CODE}", hosts).dossier_code == CODE
    with pytest.raises(ValueError, match="not a regular expression"):
        ReceiptRules(code_pattern="(")


def test_a_malformed_code_in_a_key_value_slip_is_unreadable_not_taken() -> None:
    """Key-value slips whose dossier code has spaces: said unreadable to the clerk."""
    code = parse_text("QRCode", "dossier_code=H10 25 7; procedure_code=1.2")
    assert code.kind == "unreadable" and code.error and "malformed" in code.error
