"""The periodic report ("Báo cáo định kỳ") downloaded through the API for the known data set,
opened by real readers: openpyxl for the XLSX, poppler's ``pdftotext`` for the PDF."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

PARAMS = {"from": "2026-01", "to": "2026-02", "unit": "99"}


def test_xlsx_report_has_the_figures(filled: TestClient, artifacts: Path) -> None:
    """Rows per unit, totals per tier, the summary and the devices sheet hold the known figures
    (numbers as numbers, rates as fractions with a percent format)."""
    from openpyxl import load_workbook

    response = filled.get("/api/v1/progress/report.xlsx", params=PARAMS)
    assert response.status_code == 200
    assert "bao-cao-dinh-ky_99_2026-01_2026-02.xlsx" in response.headers["content-disposition"]
    (artifacts / "progress").mkdir(exist_ok=True)
    (artifacts / "progress" / "bao-cao-dinh-ky.xlsx").write_bytes(response.content)
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Báo cáo", "Thiết bị"]
    rows: list[list[Any]] = [list(r) for r in book["Báo cáo"].iter_rows(values_only=True)]
    # The administrative header: agency and number left, national name, motto, place and date right.
    assert "TỈNH SƠN THỦY" in rows[0][0] and rows[1][0].startswith("Số: ")
    assert rows[0][7:8] + rows[1][7:8] == ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
    assert rows[2][7] == "…………, ngày 01 tháng 03 năm 2026"  # NOW is 1 March 00:00 in Vietnam
    title = next(i for i, r in enumerate(rows) if str(r[0] or "").startswith("BÁO CÁO ĐỊNH KỲ TIẾN ĐỘ SỐ HÓA"))
    summary = " ".join(str(r[0]) for r in rows[title + 1:title + 9] if r[0])
    assert "Kỳ báo cáo: 01/2026 – 02/2026" in summary and "Tổng số hồ sơ tiếp nhận: 44; đã số hóa: 16" in summary
    assert "tỷ lệ số hóa: 36,4%" in summary and "Số đơn vị đạt chỉ tiêu: 2/4; chưa đạt: 2" in summary
    units = {r[0]: r for r in rows if r[0] in ("99", "99001", "99003", "99004")}
    assert units["99"][3:11] == [6, 3, 0.5, 0.5, "Đạt", 44, 16, pytest.approx(16 / 44)]
    assert units["99003"][3:8] == [10, 3, 0.3, 0.35, "Chưa đạt"]
    assert units["99004"][3:8] == [8, 0, 0.0, 0.35, "Chưa đạt"]
    assert "Xã Đông Sơn" in units["99003"][1]
    assert units["99003"][11:14] == [0, 0, "Số tổng hợp"]  # only monthly counts in this data set
    start = next(i for i, r in enumerate(rows) if r[0] == "Tổng hợp theo cấp") + 2
    tiers = {r[0]: r for r in rows[start:start + 4] if r[0]}
    assert tiers["Tỉnh"][:8] == ["Tỉnh", 1, 6, 3, 0.5, 0.5, 1, 0]
    assert tiers["Xã"][:8] == ["Xã", 3, 38, 13, pytest.approx(13 / 38), 0.35, 1, 2]
    devices: dict[Any, tuple[Any, ...]] = {r[0]: r for r in book["Thiết bị"].iter_rows(min_row=2, values_only=True)}
    assert set(devices) == {"kiosk-a", "kiosk-c", "kiosk-p"}  # kiosk-n has no unit
    assert devices["kiosk-a"][2] == "Trực tuyến" and devices["kiosk-c"][2] == "Mất kết nối"
    assert devices["kiosk-a"][5:8] == (1409, 1409, 1.0)
    assert devices["kiosk-p"][5:8] == (704, 1409, pytest.approx(704 / 1409))
    assert devices["kiosk-c"][5:8] == (0, 1409, 0.0)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed")
def test_pdf_report_reads_back_in_vietnamese(filled: TestClient, artifacts: Path) -> None:
    """pdftotext finds the title, unit names and statuses with their Vietnamese letters (not
    boxes or question marks) and the figures in Vietnamese notation (36,4%)."""
    header = {"number": "12/BC-UBND", "place": "Sơn Thủy", "agency": "ỦY BAN NHÂN DÂN TỈNH SƠN THỦY",
              "recipient": ["Chủ tịch UBND tỉnh;", "Lưu: VT, VP."], "signer_title": "Chủ tịch",
              "signer": "Nguyễn Văn An"}
    response = filled.get("/api/v1/progress/report.pdf", params={**PARAMS, **header})
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    (artifacts / "progress").mkdir(exist_ok=True)
    path = artifacts / "progress" / "bao-cao-dinh-ky.pdf"
    path.write_bytes(response.content)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    flat = re.sub(r"\s+", " ", text)
    for expected in ("BÁO CÁO ĐỊNH KỲ TIẾN ĐỘ SỐ HÓA HỒ SƠ", "Kỳ báo cáo: 01/2026 – 02/2026",
                     "Tổng số hồ sơ tiếp nhận: 44; đã số hóa: 16; tỷ lệ số hóa: 36,4%",
                     "Số đơn vị đạt chỉ tiêu: 2/4; chưa đạt: 2", "Tổng hợp theo cấp", "Thiết bị và mức sẵn sàng",
                     "Tỉnh Sơn Thủy", "Xã Hòa Bình", "Chưa đạt", "Trực tuyến", "Mất kết nối",
                     "ỦY BAN NHÂN DÂN TỈNH SƠN THỦY", "Số: 12/BC-UBND", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
                     "Độc lập - Tự do - Hạnh phúc", "Sơn Thủy, ngày 01 tháng 03 năm 2026", "Nơi nhận:",
                     "- Chủ tịch UBND tỉnh;", "- Lưu: VT, VP.", "CHỦ TỊCH", "(Ký, ghi rõ họ tên, đóng dấu)",
                     "Nguyễn Văn An", "So sánh với kỳ trước (11/2025 – 12/2025)"):
        assert expected in flat, expected
    assert "\ufffd" not in text and "?" not in text
    lines = text.splitlines()
    row_99003 = next(line for line in lines if line.strip().startswith("99003"))
    assert re.search(r"\b10\s+3\s+30,0%\s+35,0%\s+Chưa đạt", row_99003), row_99003
    tier_commune = next(line for line in lines if line.strip().startswith("Xã ") and "34,2%" in line)
    assert re.search(r"Xã\s+3\s+38\s+13\s+34,2%\s+35,0%\s+1\s+2", tier_commune), tier_commune
    kiosk_a = next(line for line in lines if "kiosk-a" in line)
    assert "99001" in kiosk_a and "1409" in kiosk_a and "100,0%" in kiosk_a
    kiosk_p = next(line for line in lines if "kiosk-p" in line)
    assert "704" in kiosk_p and "50,0%" in kiosk_p


def test_xlsx_keeps_formula_like_names_as_text(filled: TestClient) -> None:
    """Bad input tried: a unit imported with the name ``=HYPERLINK(...)`` (a CSV/spreadsheet
    injection): the workbook holds it as text, not as a formula."""
    from openpyxl import load_workbook

    csv = ("code,name,tier,parent_code,valid_from,valid_to\n"
           '99099,"=HYPERLINK(""http://example.invalid"",""x"")",commune,99,2025-07-01,\n')
    imported = filled.post("/api/v1/units/import", content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200
    # The unit as the report's root: its name is not indented, it starts with "=".
    response = filled.get("/api/v1/progress/report.xlsx", params={"from": "2026-01", "unit": "99099"})
    sheet = load_workbook(io.BytesIO(response.content))["Báo cáo"]
    row = next(r for r in sheet.iter_rows() if r[0].value == "99099")
    assert row[1].data_type == "s" and str(row[1].value).startswith("=HYPERLINK")
