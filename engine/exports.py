"""Cells of the spreadsheets we hand out (CSV, XLSX): text in them never runs as a formula, nor breaks the file.

Their text comes from people (a figure's 数据来源, a unit's name): `=HYPERLINK(…)` or `=cmd|…` typed there would run
in the spreadsheet program of whoever opens the file, a file from the city's own system (CSV injection).
"""
from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet program reads a formula from
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?%?\Z")


def csv_text(value: Any) -> Any:
    """Return a CSV cell's value: text a spreadsheet would take for a formula gets a leading apostrophe, which shows
    it as text; a number written as text ("-0.5") stays as it is."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS and not _NUMBER.match(value):
        return "'" + value
    return value


def xlsx_row(values: list[Any]) -> list[Any]:
    """Return a row for an openpyxl sheet: text without the control characters an XLSX cell cannot hold (openpyxl
    refuses them, and one stored value would make the whole file a failure)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    return [ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in values]


def no_formulas(sheet: Any) -> None:
    """Make every cell of an openpyxl sheet that it took for a formula (text beginning with "=") plain text."""
    for row in sheet.iter_rows():
        for cell in row:
            if cell.data_type == "f":
                cell.data_type = "s"


__all__ = ["FORMULA_STARTS", "csv_text", "no_formulas", "xlsx_row"]
