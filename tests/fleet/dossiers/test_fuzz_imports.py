"""Bad input: hostile CSV files into the received-dossier import (and the unit tree's), then the
chase list's XLSX built from what was imported. Formula injection (``=``, ``+``, ``-``, ``@``
cells), a byte-order mark, Windows-1258 and UTF-16 encodings, stray quotes and delimiters, NUL
bytes, very long fields and a file over the size limit: each import answers 200 or a clear 413 /
422 with problems by line (never 5xx), an answer of 422 stores nothing, and the workbook holds
what was imported as text, never as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from fleet.api.app import create_app
from fleet.config import HttpConfig
from tests.authn import login
from tests.fleet.conftest import make_config
from tests.fleet.dossiers.conftest import load_units
from tests.fuzzing import fuzz_settings, tried

pytestmark = pytest.mark.fuzz

HEADER = "code,procedure_code,unit_code,received_date,due_date,result_date"
LIMIT = 64 * 1024
CSV = {"Content-Type": "text/csv"}
FORMULAS = ["=1+1", "=HYPERLINK(\"http://x.invalid\",\"a\")", "+1+1", "-1+1", "@SUM(A1)", "=cmd|' /C calc'!A0",
            "\t=1", "=WEBSERVICE(\"http://x.invalid\")"]


@pytest.fixture(scope="module")
def small_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The fleet app (no MQTT, SQLite) taking imports of at most 64 KiB, with the sample units; one
    for the module (each test compares what is held before and after, never assumes it empty)."""
    tmp_path = tmp_path_factory.mktemp("fuzz-imports")
    config = make_config(tmp_path, f"sqlite:///{tmp_path}/fleet.db").model_copy(
        update={"http": HttpConfig(max_import_bytes=LIMIT)})
    with TestClient(create_app(config)) as client:
        login(client)
        load_units(client)
        yield client


CELL = (st.sampled_from(FORMULAS) | st.text(max_size=30)
        | st.text(alphabet=st.sampled_from("=+-@,\"\n\r\t;ăđươ\x00"), max_size=12)
        | st.sampled_from(["", " ", "99001", "2026-01-05", "05/01/2026", "2026-02-30", "x" * 5000]))


@st.composite
def received_csv(draw: st.DrawFn) -> tuple[bytes, list[list[str]]]:
    """(the file's bytes, its rows as written): mostly well-formed rows with hostile cells."""
    rows: list[list[str]] = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        code = draw(st.sampled_from(FORMULAS) | st.just(f"H99-F{i}") | CELL)
        row = [code, draw(st.sampled_from(FORMULAS) | CELL), draw(st.sampled_from(["99001", "99003"]) | CELL),
               draw(st.sampled_from(["2026-01-05", "05/01/2026"]) | CELL), draw(st.just("") | CELL),
               draw(st.just("") | CELL)]
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(HEADER.split(","))
    writer.writerows(rows)
    text = out.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "cp1258", "utf-16"]))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "junk", "no_header"]))
    if damage == "truncate":
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    elif damage == "junk":
        data = data + draw(st.binary(max_size=64))
    elif damage == "no_header":
        data = data.split(b"\n", 1)[-1]
    return data, rows


def _no_formulas(workbook: bytes) -> list[Any]:
    sheet = load_workbook(io.BytesIO(workbook)).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"], "a cell became a formula"
    return [c.value for c in cells]


def _held(api: TestClient) -> list[str]:
    answer = api.get("/api/v1/dossiers/chase", params={"from": "2000-01", "to": "2099-12", "limit": 10000})
    assert answer.status_code == 200, answer.text
    return [d["code"] for d in answer.json()["dossiers"]]


def test_hostile_received_csv_is_refused_by_line_or_imported_as_text(small_api: TestClient) -> None:
    api = small_api

    @given(received_csv())
    @fuzz_settings(20)
    def check(case: tuple[bytes, list[list[str]]]) -> None:
        data, rows = case
        tried("csv_received_import")
        before = _held(api)
        response = api.post("/api/v1/dossiers/received/import", content=data, headers=CSV)
        assert response.status_code in (200, 413, 422), (response.status_code, response.text[:300])
        if response.status_code == 422:
            problems = response.json()["detail"]["problems"]
            assert problems and all(isinstance(p["line"], int) and p["message"] for p in problems)
        if response.status_code != 200:
            assert _held(api) == before, "a refused import stored something"
        else:  # (a refused one stored nothing: the workbook is as last checked)
            assert response.json()["inserted"] + response.json()["updated"] + response.json()["unchanged"] <= len(rows)
            workbook = api.get("/api/v1/dossiers/chase.xlsx", params={"from": "2026-01", "to": "2026-12"})
            assert workbook.status_code == 200
            _no_formulas(workbook.content)

    check()


def test_formula_codes_stay_text_in_the_chase_list(small_api: TestClient) -> None:
    """Found by the generator: a dossier code written ``=1+1`` (the import takes it: it has no
    space or '/') became a live formula in chase.xlsx. It reads back as text now."""
    data = (HEADER + "\n=1+1,=HYPERLINK(\"http://x.invalid\"),99001,2026-01-05,,\n").encode()
    assert small_api.post("/api/v1/dossiers/received/import", content=data, headers=CSV).status_code == 200
    workbook = small_api.get("/api/v1/dossiers/chase.xlsx", params={"from": "2026-01", "to": "2026-01"})
    values = _no_formulas(workbook.content)
    assert "=1+1" in values and "=HYPERLINK(\"http://x.invalid\")" in values


def test_a_line_break_inside_a_field_is_a_problem_by_line(small_api: TestClient) -> None:
    """Found by the generator: a bare carriage return inside an unquoted field made the csv
    module raise, and the import answered 500. A bare carriage return ends a line (as Excel reads
it), so the row is short: one problem on its line, on every import."""
    data = (HEADER + "\nH99-1,1.001,99001,2026-01-05,,\nH99-2,1\r.001,99001,2026-01-05,,\n").encode()
    before = _held(small_api)
    for path in ("/api/v1/dossiers/received/import", "/api/v1/progress/received/import", "/api/v1/units/import"):
        refused = small_api.post(path, content=data, headers=CSV)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"]["problems"][0]["line"] >= 1  # the units import: its header
    assert _held(small_api) == before


def test_encodings_and_size_get_one_clear_answer(small_api: TestClient) -> None:
    """Windows-1258 and UTF-16 files (what Excel saves besides UTF-8) are refused with the line and
    the reason; a BOM is taken; a file over http.max_import_bytes is 413 (declared or streamed),
    on every CSV import."""
    api = small_api
    text = HEADER + "\nH99-ĐBOM1,1.001,99001,2026-01-05,,\n"  # a code the generator never writes
    for encoding in ("cp1258", "utf-16"):
        refused = api.post("/api/v1/dossiers/received/import", content=text.encode(encoding), headers=CSV)
        assert refused.status_code == 422
        assert "not UTF-8" in refused.json()["detail"]["problems"][0]["message"]
    assert api.post("/api/v1/dossiers/received/import", content=text.encode("utf-8-sig"),
                    headers=CSV).json()["inserted"] == 1
    huge = (HEADER + "\n").encode() + b"H99-X,1.001,99001,2026-01-05,,\n" * (LIMIT // 20)
    for path in ("/api/v1/dossiers/received/import", "/api/v1/progress/received/import", "/api/v1/units/import"):
        assert api.post(path, content=huge, headers=CSV).status_code == 413

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(huge), 8192):
                yield huge[start:start + 8192]

        assert api.post(path, content=chunks(), headers=CSV).status_code == 413  # no length declared
    tried("csv_received_import", 8)
