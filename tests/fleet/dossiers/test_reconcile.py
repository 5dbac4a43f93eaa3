"""Received dossiers matched with digitized ones, on SQLite and PostgreSQL, through the API and
the real ingest writer: 1,000 received dossiers (with rows repeated, and codes typed in another
case) against pages, component and result documents, a second device on some dossiers and 40
mistyped codes; a re-import; a corrected row; bad rows."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from protocol.messages import Message
from tests.fleet.dossiers.conftest import at, closed, load_units, page, send, status

UNITS = ("99001", "99003", "99004")
KIOSKS = {"99001": "kiosk-a", "99003": "kiosk-c", "99004": "kiosk-h"}
N = 1000
SPAN = {"from": "2026-01", "to": "2026-02"}


def code(i: int) -> str:
    return f"000.00.00.H99-2601-{i:04d}"


def unit_of(i: int) -> str:
    return UNITS[i % 3]


def received_on(i: int) -> date:
    return date(2026, 1, 1) + timedelta(days=i % 59)  # January and February


def is_component(i: int) -> bool:
    return i % 2 == 0 or (i % 3 == 0 and i % 2 == 1)  # pages for the even ones, a document for the others


def is_result(i: int) -> bool:
    return i % 5 == 1


def received_csv(rows: list[int], *, unit: dict[int, str] | None = None) -> bytes:
    lines = ["code,procedure_code,unit_code,received_date,due_date,result_date"]
    for i in rows:
        got = received_on(i)
        lines.append(f"{code(i)},1.00{i % 4},{(unit or {}).get(i, unit_of(i))},{got:%d/%m/%Y},"
                     f"{got + timedelta(days=15)},{'' if i % 9 else got + timedelta(days=10)}")
    return ("\n".join(lines) + "\n").encode()


def _import(client: TestClient, data: bytes) -> dict[str, Any]:
    response = client.post("/api/v1/dossiers/received/import", content=data, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _digitizing() -> list[Message]:
    msgs: list[Message] = [status(k, u, at("2026-01-01")) for u, k in KIOSKS.items()]
    msgs.append(status("kiosk-x", "99004", at("2026-01-01")))
    for i in range(N):
        kiosk, when = KIOSKS[unit_of(i)], at(str(received_on(i) + timedelta(days=1)))
        if i % 2 == 0:
            typed = code(i).lower() if i % 10 == 0 else code(i)  # the case a clerk typed does not matter
            msgs.append(page(kiosk, typed, when))
            msgs.append(page(kiosk, typed, when + timedelta(minutes=1)))
        elif i % 3 == 0:
            msgs.append(closed(kiosk, code(i), [f"{code(i)}.1.pdf"], when))
        elif i % 7 == 0:
            msgs.append(page(kiosk, code(i), when, ok=False))  # rejected only: not digitized
        if i % 22 == 0:  # a second device on a dossier digitized already: still one dossier
            msgs.append(page("kiosk-x", code(i), when + timedelta(days=2)))
        if is_result(i):
            msgs.append(closed(kiosk, code(i), [f"{code(i)}-KQ1.pdf"], when + timedelta(days=3)))
    for j in range(40):  # mistyped codes: digitized, received nowhere
        msgs.append(page("kiosk-a", f"000.00.00.H99-2601-9{j:03d}", at("2026-01-20")))
    return msgs


def _expected() -> dict[str, tuple[int, int, int]]:
    out = {u: (0, 0, 0) for u in UNITS}
    for i in range(N):
        r, d, k = out[unit_of(i)]
        out[unit_of(i)] = (r + 1, d + is_component(i), k + is_result(i))
    return out


def _figures(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/progress", params=SPAN)
    assert response.status_code == 200, response.text
    return {u["code"]: u for u in response.json()["units"]}


def test_a_thousand_received_dossiers_reconciled_exactly(api: TestClient) -> None:
    load_units(api)
    rows = list(range(N)) + [i for i in range(N) if i % 20 == 0]  # 50 rows repeated identically
    first = _import(api, received_csv(rows))
    assert first == {"inserted": N, "updated": 0, "unchanged": 0, "repeated": 50}
    digitizing = _digitizing()
    send(api, digitizing)
    send(api, digitizing[::-1])  # every message delivered again, in another order: nothing changes

    units = _figures(api)
    for unit, (received, digitized, results) in _expected().items():
        own = units[unit]["own"]
        assert (own["received"], own["digitized"], own["results"]) == (received, digitized, results), unit
        assert units[unit]["basis"] == "dossiers"
        assert own["rate"] == digitized / received <= 1
    assert units["99001"]["own"]["unmatched"] == 40  # the typos: apart, not in the rate
    assert units["99003"]["own"]["unmatched"] == units["99004"]["own"]["unmatched"] == 0
    province = units["99"]
    assert province["basis"] == "counts" and province["total"]["received"] == N
    assert province["total"]["digitized"] == sum(is_component(i) for i in range(N))
    # Month by month: received in January count in January, wherever their pages fell.
    jan = sum(1 for i in range(N) if received_on(i).month == 1)
    assert [m["received"] for m in province["trend"]] == [jan, N - jan]

    report = api.get("/api/v1/progress/report.xlsx", params={**SPAN, "unit": "99"})
    book = load_workbook(io.BytesIO(report.content))["Báo cáo"]
    lines = [str(r[0]) for r in book.iter_rows(max_col=1, values_only=True) if r[0]]
    results = sum(is_result(i) for i in range(N))
    assert any(line.startswith("Đối chiếu theo từng hồ sơ (3/4 đơn vị): kết quả giải quyết đã số hóa "
                               f"{results} ") and "tiếp nhận nào (không tính vào tỷ lệ): 40." in line for line in lines)
    unit_rows = {r[0]: r for r in book.iter_rows(values_only=True) if r[0] in UNITS}
    assert unit_rows["99001"][11:14] == (_expected()["99001"][2], 40, "Từng hồ sơ")

    unmatched = api.get("/api/v1/dossiers", params={"state": "unmatched", "limit": 1000}).json()
    assert len(unmatched) == 40 and all(d["code"].startswith("000.00.00.H99-2601-9") for d in unmatched)
    one = api.get(f"/api/v1/dossiers/{code(22).lower()}").json()  # i=22: pages twice (kiosk-x), a component
    assert one["state"] == "digitized" and one["received_unit"] == unit_of(22) and one["procedure_code"] == "1.002"
    assert one["digitized_unit"] == unit_of(22) and one["device_id"] == KIOSKS[unit_of(22)]
    assert len(one["pages"]) == 3 and one["documents"] == []
    six = api.get(f"/api/v1/dossiers/{code(21)}").json()  # odd, a multiple of 3 and 7: a document, a result
    assert [(d["name"], d["kind"]) for d in six["documents"]] == [(f"{code(21)}.1.pdf", "component"),
                                                                  (f"{code(21)}-KQ1.pdf", "result")]
    assert six["result_at"] is not None and six["state"] == "digitized"
    seven = api.get(f"/api/v1/dossiers/{code(7)}").json()  # a rejected page only
    assert seven["state"] == "received" and [p["quality_ok"] for p in seven["pages"]] == [False]

    # The same export again changes nothing; a corrected row (another unit) moves its dossier.
    assert _import(api, received_csv(rows)) == {"inserted": 0, "updated": 0, "unchanged": N, "repeated": 50}
    assert _import(api, received_csv([1], unit={1: "99004"})) == {"inserted": 0, "updated": 1, "unchanged": 0,
                                                                  "repeated": 0}
    after = _figures(api)
    assert after["99003"]["own"]["received"] == units["99003"]["own"]["received"] - 1
    assert after["99004"]["own"]["received"] == units["99004"]["own"]["received"] + 1


def test_bad_received_rows_are_reported_by_line_and_nothing_is_stored(api: TestClient) -> None:
    load_units(api)
    data = (b"code,procedure_code,unit_code,received_date,due_date\n"
            b"H99-1,1.001,99001,2026-01-05,2026-01-20\n"
            b"H99-2,1.001,88888,2026-01-05,2026-01-20\n"  # unknown unit
            b"H99-3,1.001,99001,2026-13-05,\n"  # no such date
            b"H99-1,1.002,99001,2026-01-05,2026-01-20\n"  # the code again, other content
            b"H99-4,1.001,99001,2026-01-05,2026-01-01\n"  # due before received
            b"H99-5,1.001,991,2026-01-05,\n"  # a district abolished on 1/7/2025
            b",1.001,99001,2026-01-05,\n")
    response = api.post("/api/v1/dossiers/received/import", content=data, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422
    problems = response.json()["detail"]["problems"]
    assert [p["line"] for p in problems] == [3, 4, 5, 6, 7, 8]
    assert "already given on line 2" in problems[2]["message"] and "not valid on 2026-01-05" in problems[4]["message"]
    assert api.get("/api/v1/dossiers").json() == []
    assert api.post("/api/v1/dossiers/received/import", content=b"code,unit_code\nX,99001\n",
                    headers={"Content-Type": "text/csv"}).status_code == 422
    json_rows = [{"code": "H99-9", "procedure_code": "1.001", "unit_code": "99001", "received_date": "2026-01-05",
                  "due_date": "2026-01-20"}]
    assert api.post("/api/v1/dossiers/received", json=json_rows).json()["inserted"] == 1
    assert api.post("/api/v1/dossiers/received", json=[{**json_rows[0], "extra": 1}]).status_code == 422


def test_the_chase_list_is_oldest_first_and_reads_back_from_xlsx(api: TestClient) -> None:
    load_units(api)
    rows = [(f"H99-C{n}", unit, day) for n, (unit, day) in enumerate([
        ("99003", "2026-01-20"), ("99003", "2026-01-03"), ("99001", "2026-01-03"), ("99003", "2026-02-10"),
        ("99003", "2026-01-15"), ("99004", "2026-01-01")])]
    csv = "code,procedure_code,unit_code,received_date,due_date\n" + "".join(
        f"{c},1.001,{u},{d},\n" for c, u, d in rows)
    _import(api, csv.encode())
    send(api, [status("kiosk-c", "99003", at("2026-01-01")), page("kiosk-c", "H99-C4", at("2026-01-16"))])

    body = api.get("/api/v1/dossiers/chase", params={**SPAN, "unit": "99003"}).json()
    assert [d["code"] for d in body["dossiers"]] == ["H99-C1", "H99-C0", "H99-C3"]  # C4 digitized
    everything = api.get("/api/v1/dossiers/chase", params=SPAN).json()["dossiers"]
    assert [(d["received_on"], d["code"]) for d in everything] == [
        ("2026-01-01", "H99-C5"), ("2026-01-03", "H99-C1"), ("2026-01-03", "H99-C2"), ("2026-01-20", "H99-C0"),
        ("2026-02-10", "H99-C3")]
    response = api.get("/api/v1/dossiers/chase.xlsx", params=SPAN)
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    read = list(sheet.iter_rows(min_row=3, values_only=True))
    assert [(r[0], r[1], r[3].date() if isinstance(r[3], datetime) else r[3]) for r in read] == [
        (d["code"], d["unit_code"], date.fromisoformat(d["received_on"])) for d in everything]
