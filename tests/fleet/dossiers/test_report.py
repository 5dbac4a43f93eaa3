"""The periodic report on the dossiers basis, on SQLite and PostgreSQL, read back with openpyxl:
the share digitized by the postal service's staff and the dossiers per operator id, the
procedures with the most dossiers, the previous period beside this one (the whole and each
unit's rate)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from protocol.messages import Operator
from tests.fleet.dossiers.conftest import at, closed, load_units, send, status

POSTAL, CLERK = Operator(kind="postal_staff", id="op-1"), Operator(kind="unit_staff", id="op-2")


def test_report_adds_postal_share_procedures_and_the_previous_period(api: TestClient) -> None:
    from openpyxl import load_workbook

    load_units(api)
    received = [("D1", "99003", "2025-12-03", "1.001"), ("D2", "99003", "2025-12-04", "1.001"),
                ("J1", "99003", "2026-01-05", "2.002"), ("J2", "99003", "2026-01-06", "2.002"),
                ("J3", "99003", "2026-01-07", "2.002"), ("J4", "99001", "2026-01-08", "1.001")]
    items = [{"code": f"H99-{c}", "unit_code": u, "received_date": d, "procedure_code": p} for c, u, d, p in received]
    assert api.post("/api/v1/dossiers/received", json=items).status_code == 200
    send(api, [status("kiosk-c", "99003", at("2025-12-01"))] + [
        closed("kiosk-c", f"H99-{code}", [f"H99-{code}.1.pdf"], at(day), operator=who)
        for code, day, who in (("D1", "2025-12-03", CLERK), ("J1", "2026-01-05", POSTAL),
                               ("J2", "2026-01-06", CLERK), ("J3", "2026-01-09", POSTAL))])

    response = api.get("/api/v1/progress/report.xlsx", params={"from": "2026-01", "unit": "99"})
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = [list(r) for r in load_workbook(io.BytesIO(response.content))["Báo cáo"]
                             .iter_rows(values_only=True)]
    text = " ".join(str(r[0]) for r in rows if r[0])
    assert "Hồ sơ đã số hóa do nhân viên bưu điện thực hiện: 2 (66,7%); cán bộ đơn vị: 1." in text
    assert "Thủ tục có nhiều hồ sơ nhất: 2.002 (3 hồ sơ); 1.001 (1 hồ sơ)." in text
    assert "Kỳ trước (12/2025): tiếp nhận 2; đã số hóa 1; tỷ lệ 50,0% (thay đổi +25,0 điểm %)." in text

    def section(title: str) -> list[list[Any]]:
        start = next(i for i, r in enumerate(rows) if r[0] == title) + 2
        end = next((i for i in range(start, len(rows)) if not any(rows[i])), len(rows))
        return [r[:4] for r in rows[start:end]]

    assert section("So sánh với kỳ trước (12/2025)")[:3] == [
        ["Hồ sơ tiếp nhận", "4", "2", "+2"], ["Hồ sơ đã số hóa", "3", "1", "+2"],
        ["Tỷ lệ số hóa", "75,0%", "50,0%", "+25,0 điểm %"]]
    assert section("Thủ tục có nhiều hồ sơ nhất") == [["2.002", 3, 3, 1.0], ["1.001", 1, 0, 0.0]]
    assert section("Người thực hiện số hóa") == [["Cán bộ đơn vị", 1, pytest.approx(1 / 3), None],
                                                 ["Nhân viên bưu điện", 2, pytest.approx(2 / 3), None]]
    assert section("Hồ sơ đã số hóa theo mã cán bộ") == [["op-1", "Nhân viên bưu điện", 2, None],
                                                        ["op-2", "Cán bộ đơn vị", 1, None]]
    commune = next(r for r in rows if r[0] == "99003")
    assert (commune[5], commune[14]) == (pytest.approx(1.0), 0.5)  # this month's rate, the previous one's


def test_a_control_character_in_the_report_header_is_a_422_naming_the_parameter(api: TestClient) -> None:
    """Found by the API fuzz pass: a tab or a NUL in the header parameters made openpyxl raise
    (500). Tried: a NUL in `signer`, a bell in one recipient; a plain header still renders."""
    load_units(api)
    for params in ({"signer": "Nguyễn\x00A"}, {"recipient": ["Lưu VT", "Sở\x07"]}):
        for fmt in ("xlsx", "pdf"):
            response = api.get(f"/api/v1/progress/report.{fmt}", params={"from": "2026-01", "unit": "99", **params})
            assert response.status_code == 422, response.text
            assert [p["loc"] for p in response.json()["detail"]] == [["query", next(iter(params))]]
    ok = api.get("/api/v1/progress/report.xlsx", params={"from": "2026-01", "unit": "99", "signer": "Nguyễn Văn A"})
    assert ok.status_code == 200, ok.text
