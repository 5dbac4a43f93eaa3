"""CSV imports of the unit tree and of dossiers received: every bad row reported with its
line, nothing half-imported, re-imports harmless; through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fleet.progress.units import sample_csv

CSV = {"Content-Type": "text/csv"}


def _import_units(client: TestClient, text: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = client.post("/api/v1/units/import", content=text.encode(), headers=CSV)
    return response.status_code, response.json()


def _problems(body: dict) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    return [(p["line"], p["message"]) for p in body["detail"]["problems"]]


def test_unit_import_reports_every_bad_line_and_writes_nothing(api: TestClient) -> None:
    """Bad input tried, one per line: an unknown tier, a district code of 4 digits, a date
    2025-13-01, valid_to before valid_from, an unknown parent, a commune under a commune, a
    province with a parent, a record twice, a record overlapping one already stored, an empty
    name. Good lines in the same file are not imported either."""
    assert _import_units(api, sample_csv()) == (200, {"inserted": 11, "updated": 0, "unchanged": 0})
    before = api.get("/api/v1/units").json()
    bad = "\n".join([
        "code,name,tier,parent_code,valid_from,valid_to",
        "993,[THỬ] Huyện Mới,district,99,2004-01-01,",           # 2: good
        "99006,[THỬ] Xã X,hamlet,993,2004-01-01,",                # 3: tier
        "9931,[THỬ] Huyện Y,district,99,2004-01-01,",             # 4: code length
        "99007,[THỬ] Xã Z,commune,993,2025-13-01,",               # 5: date
        "99008,[THỬ] Xã W,commune,993,2020-01-01,2019-01-01",     # 6: dates reversed
        "99009,[THỬ] Xã V,commune,994,2004-01-01,",               # 7: unknown parent
        "99010,[THỬ] Xã U,commune,99003,2026-01-01,",             # 8: parent is a commune
        "98,[THỬ] Tỉnh T,province,99,2004-01-01,",                # 9: province with a parent
        "99011,[THỬ] Xã S,commune,993,2004-01-01,",               # 10: good...
        "99011,[THỬ] Xã S,commune,993,2004-01-01,",               # 11: ...twice
        "99003,[THỬ] Xã Đông Sơn mới,commune,99,2026-01-01,",     # 12: overlaps the 2025-07-01 record
        "99012,,commune,993,2004-01-01,",                         # 13: empty name
    ]) + "\n"
    status, body = _import_units(api, bad)
    assert status == 422
    problems = _problems(body)
    assert [line for line, _ in problems] == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    messages = dict(problems)
    assert "tier 'hamlet'" in messages[3] and "not 3 digits" in messages[4] and "2025-13-01" in messages[5]
    assert "before valid_from" in messages[6] and "parent 994 is not a unit" in messages[7]
    assert "is a commune" in messages[8] and "no parent" in messages[9] and "twice" in messages[11]
    assert "overlaps" in messages[12] and "name is empty" in messages[13]
    assert api.get("/api/v1/units").json() == before  # nothing half-imported (not even line 2)


def test_unit_import_again_and_corrections(api: TestClient) -> None:
    """The same file twice changes nothing; a corrected name updates its record; Vietnamese
    dates (DD/MM/YYYY) and tier names, and Excel's byte-order mark, are understood. Bad input
    tried: a header missing a column, a row with a field too many, bytes that are not UTF-8."""
    assert _import_units(api, sample_csv())[0] == 200
    assert _import_units(api, sample_csv())[1] == {"inserted": 0, "updated": 0, "unchanged": 11}
    fixed = ("\ufeffcode,name,tier,parent_code,valid_from,valid_to\n"
             "99003,[THỬ - mã giả định] Xã Đông Sơn (đổi tên),xã,99,01/07/2025,\n")
    assert _import_units(api, fixed)[1] == {"inserted": 0, "updated": 1, "unchanged": 0}
    on = api.get("/api/v1/units", params={"on": "2026-01-01", "tier": "commune"}).json()
    assert [(u["code"], u["name"].endswith("(đổi tên)")) for u in on] == [("99001", False), ("99003", True),
                                                                          ("99004", False)]
    history = [u for u in api.get("/api/v1/units").json() if u["code"] == "99003"]
    assert [(u["parent_code"], u["valid_to"]) for u in history] == [("991", "2025-06-30"), ("99", None)]
    status, body = _import_units(api, "code,name,tier,valid_from,valid_to\n99,x,province,2004-01-01,\n")
    assert status == 422 and _problems(body)[0][0] == 1 and "parent_code" in _problems(body)[0][1]
    status, body = _import_units(api, "code,name,tier,parent_code,valid_from,valid_to\n99,x,province,,2004-01-01,,\n")
    assert status == 422 and _problems(body) == [(2, "7 fields, the header has 6")]
    response = api.post("/api/v1/units/import", content="code,name\n99,T\xe2y\n".encode("latin-1"), headers=CSV)
    assert response.status_code == 422 and "not UTF-8" in _problems(response.json())[0][1]


def test_received_import_is_all_or_nothing_and_idempotent(api: TestClient) -> None:
    """Bad input tried, one per line: an unknown unit code, a negative count, a month 2026-13,
    a count that is not a whole number, a unit not valid in that month (abolished in 2025), the
    same unit and month twice. Good lines in the file are not stored either; the same file
    again changes nothing; a corrected count replaces the old one."""
    assert _import_units(api, sample_csv())[0] == 200
    bad = ("unit_code,period,received\n"
           "99001,2026-01,20\n"      # 2: good
           "12345,2026-01,5\n"       # 3: unknown unit
           "99003,2026-01,-4\n"      # 4: negative
           "99004,2026-13,4\n"       # 5: month
           "99004,2026-02,4.5\n"     # 6: not whole
           "99002,2026-01,3\n"       # 7: abolished on 30/6/2025
           "99001,2026-01,21\n")     # 8: twice
    response = api.post("/api/v1/progress/received/import", content=bad.encode(), headers=CSV)
    assert response.status_code == 422
    problems = _problems(response.json())
    assert [line for line, _ in problems] == [3, 4, 5, 6, 7, 8]
    messages = dict(problems)
    assert "unknown unit code '12345'" in messages[3] and "negative" in messages[4] and "YYYY-MM" in messages[5]
    assert "whole number" in messages[6] and "not valid in 2026-01" in messages[7] and "line 2" in messages[8]
    progress = api.get("/api/v1/progress", params={"from": "2026-01", "unit": "99"}).json()
    assert progress["total"]["received"] == 0  # nothing half-imported

    good = "unit_code,period,received\n99001,2026-01,20\n99003,2026-01,10\n99,2026-02,3\n"
    first = api.post("/api/v1/progress/received/import", content=good.encode(), headers=CSV).json()
    again = api.post("/api/v1/progress/received/import", content=good.encode(), headers=CSV).json()
    assert first == {"inserted": 3, "updated": 0, "unchanged": 0}
    assert again == {"inserted": 0, "updated": 0, "unchanged": 3}
    fix = api.post("/api/v1/progress/received", json=[{"unit_code": "99003", "period": "2026-01", "received": 12}])
    assert fix.json() == {"inserted": 0, "updated": 1, "unchanged": 0}
    progress = api.get("/api/v1/progress", params={"from": "2026-01", "to": "2026-02", "unit": "99"}).json()
    assert progress["total"]["received"] == 35
    negative = api.post("/api/v1/progress/received", json=[{"unit_code": "99003", "period": "2026-01", "received": -1}])
    assert negative.status_code == 422 and _problems(negative.json()) == [(2, "received -1 is negative")]
