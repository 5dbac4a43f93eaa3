"""Reading the CSV files the province sends (units, dossiers received): UTF-8 (with or without
Excel's byte-order mark), a header row, one problem reported per bad line."""

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from fleet.errors import FleetError


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one line of an input (line 1 is the header)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(FleetError, ValueError):
    """An import had bad rows: nothing was written. ``problems`` lists them line by line."""

    def __init__(self, problems: list[LineProblem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} bad row(s), nothing imported: {shown}{more}")


def read_rows(
    data: str | bytes, columns: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[tuple[int, dict[str, str]]]:
    """The rows as (line number, {column: stripped text}); raises :class:`ImportRejected` when
    the header lacks a column or a row has the wrong number of fields."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportRejected([LineProblem(1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from exc
    else:
        text = data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _rows(reader, columns, optional)
    except csv.Error as exc:  # a stray line break inside a field: the csv module gives up there
        raise ImportRejected([LineProblem(reader.line_num, f"not readable as CSV ({exc})")]) from None


def _rows(reader: Any, columns: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a ``csv.reader`` (its ``line_num`` names the lines)."""
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    unknown = [h for h in header if h not in columns and h not in optional]
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(unknown)}")
        raise ImportRejected([LineProblem(1, "header: " + "; ".join(what) + f" (expected {','.join(columns)})")])
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[LineProblem] = []
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            problems.append(LineProblem(line, f"{len(fields)} fields, the header has {len(header)}"))
            continue
        rows.append((line, {h: f.strip() for h, f in zip(header, fields, strict=True)}))
    if problems:
        raise ImportRejected(problems)
    return rows


_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$|^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$")


def parse_date(text: str) -> date:
    """ISO ``2025-07-01`` or Vietnamese ``01/07/2025`` (a million rows' worth: no strptime).

    >>> parse_date("2025-07-01"), parse_date("1/7/2025")
    (datetime.date(2025, 7, 1), datetime.date(2025, 7, 1))
    """
    found = _DATE.match(text)
    if found is not None:
        year, month, day = found.group(1, 2, 3) if found.group(1) else found.group(6, 5, 4)
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            pass
    raise ValueError(f"date {text!r} is neither YYYY-MM-DD nor DD/MM/YYYY")
