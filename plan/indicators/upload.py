"""指标数据录入: read an uploaded XLSX or CSV file into rows of text (checking the rows is `preview`'s)."""
from __future__ import annotations

import csv
import io
import itertools
from typing import Any

from engine.errors import InvalidInput
from plan.indicators import sheets

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 2000
MAX_TABLE_ROWS = MAX_ROWS + 100  # read no further: a header, blank lines, and enough to say "too many rows"


class UploadInvalid(InvalidInput):
    """The file (or form) has bad rows; nothing was stored. `errors` lists each line's reason."""

    code = "indicator_upload_invalid"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()


def read_table(filename: str, data: bytes) -> list[list[str]]:
    """Return the rows of a CSV (UTF-8, UTF-8 with BOM or GB18030) or XLSX file's first sheet as text.

    Raises: UploadInvalid (not a readable CSV/XLSX, too large, a CSV cell past 128 KiB, a NUL character in a cell)
    """
    if len(data) > MAX_BYTES:
        raise UploadInvalid(f"文件超过 {MAX_BYTES // 1024 // 1024} MB (file too large)", field="file")
    table = _read(filename.lower(), data)
    for line, row in enumerate(table, 1):  # a text column may not hold NUL (PostgreSQL refuses it: a bare 422 then)
        column = next((n for n, cell in enumerate(row, 1) if "\x00" in cell), None)
        if column is not None:
            raise UploadInvalid(f"第{line}行第{column}列含 NUL 字符，请检查文件是否为 UTF-8 文本 "
                                f"(line {line}, column {column} has a NUL character)", field="file")
    return table


def _read(name: str, data: bytes) -> list[list[str]]:
    if name.endswith(".xlsx"):
        try:  # bounded before openpyxl reads it: declared area, cell count, rows and columns (plan.indicators.sheets)
            rows = sheets.read_first_sheet(data, max_rows=MAX_TABLE_ROWS)
        except InvalidInput as exc:
            raise UploadInvalid(exc.message, field="file") from None
        return [[_cell(v) for v in row] for row in rows]
    if name.endswith(".csv") or name.endswith(".txt"):
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise UploadInvalid("CSV 文件编码无法识别，请用 UTF-8 (unknown CSV encoding; use UTF-8)", field="file")
        reader = csv.reader(io.StringIO(text))
        try:
            return [[c.strip() for c in row[:sheets.MAX_COLUMNS]] for row in itertools.islice(reader, MAX_TABLE_ROWS)]
        except csv.Error as exc:  # a cell past the csv module's field limit (128 KiB)
            raise UploadInvalid(f"第{reader.line_num}行无法读取：单元格过长 (line {reader.line_num} cannot be read: {exc})",
                                field="file") from None
    raise UploadInvalid("只接受 .xlsx 或 .csv 文件 (only .xlsx or .csv files)", field="file")


__all__ = ["MAX_BYTES", "UploadInvalid", "read_table"]
