"""Workbooks the fleet hands out carry values only, never formulas.

openpyxl writes any text starting with ``=`` as a formula. Text that reaches a workbook often
came from outside (a dossier or procedure code in an imported CSV, a unit's name): written as a
formula, ``=HYPERLINK(...)`` or ``=WEBSERVICE(...)`` would run when an official opens the file.
:func:`values_only_bytes` turns every such cell back into text, then saves.

>>> from openpyxl import Workbook, load_workbook
>>> import io
>>> book = Workbook(); sheet = book.active; sheet.append(["=1+1", 2])
>>> cell = load_workbook(io.BytesIO(values_only_bytes(book))).active["A1"]
>>> cell.value, cell.data_type
('=1+1', 's')
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpyxl import Workbook


def values_only_bytes(book: Workbook) -> bytes:
    """The workbook as XLSX bytes, with every cell that would be a formula kept as its text."""
    for worksheet in book.worksheets:
        for row_cells in worksheet.iter_rows():
            for cell in row_cells:
                if cell.data_type == "f":
                    cell.data_type = "s"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
