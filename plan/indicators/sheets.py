"""Read an uploaded XLSX file's first sheet without letting its size claims cost memory.

openpyxl's read-only reader pads every row to the width the sheet *declares* (`<dimension
ref="A1:XFD6000"/>` is 16 384 columns × 6 000 rows = 98 million cells from a 32 KB upload). So
before openpyxl sees the file: the zip's directory is bounded (engine.tasks.uploads), then each worksheet
is streamed to check its declared area and its real cell count; then it is read with a row and
a column cap. openpyxl parses with defusedxml; the stream here never resolves entities.
"""
from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from lxml import etree

from engine.errors import InvalidInput
from engine.tasks.uploads import ZipLimits, open_zip

MAX_COLUMNS = 50
MAX_CELLS = 200_000
XLSX_LIMITS = ZipLimits(max_entries=500, max_entry_bytes=32 * 1024 * 1024, max_total_bytes=48 * 1024 * 1024,
                        max_ratio=100)
SHEET = re.compile(r"^xl/worksheets/[^/]+\.xml$")
CELL_REF = re.compile(r"^\$?([A-Z]{1,3})\$?(\d{1,7})$")
MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _position(ref: str) -> tuple[int, int] | None:
    """Return (row, column) of a cell reference like 'XFD6000'."""
    found = CELL_REF.match(ref.strip().upper())
    if found is None:
        return None
    column = 0
    for letter in found.group(1):
        column = column * 26 + ord(letter) - 64
    return int(found.group(2)), column


def declared_area(ref: str) -> int:
    """Return how many cells a `<dimension ref>` spans (0 when it cannot be read)."""
    ends = [_position(p) for p in ref.split(":")]
    if not ends or any(e is None for e in ends):
        return 0
    first, last = ends[0], ends[-1]
    assert first is not None and last is not None
    return (abs(last[0] - first[0]) + 1) * (abs(last[1] - first[1]) + 1)


def _elements(stream: Any) -> Iterator[etree._Element]:
    parser = etree.iterparse(stream, events=("start",), resolve_entities=False, no_network=True, huge_tree=False,
                             load_dtd=False)
    for _event, el in parser:
        if el.getparent() is None and el.getroottree().docinfo.doctype:
            raise etree.XMLSyntaxError("a DOCTYPE is not allowed in a worksheet", None, 1, 1)
        yield el
        parent = el.getparent()
        if el.tag == f"{MAIN_NS}row" and parent is not None:
            while el.getprevious() is not None:  # keep memory flat: drop the rows already counted
                del parent[0]


def check_sheet(archive: zipfile.ZipFile, member: str, *, max_cells: int = MAX_CELLS, field: str = "file") -> None:
    """Refuse a worksheet that declares, or holds, more cells than allowed.

    Raises: InvalidInput
    """
    cells = 0
    try:
        with archive.open(member) as stream:
            for el in _elements(stream):
                if el.tag == f"{MAIN_NS}dimension":
                    area = declared_area(str(el.get("ref") or ""))
                    if area > max_cells:
                        ref = str(el.get("ref"))[:40]
                        raise InvalidInput(f"工作表声明的范围 {ref} 过大：{area} 个单元格，最多 {max_cells} 个 "
                                           f"(the sheet declares {ref}: {area} cells, at most {max_cells})", field=field)
                elif el.tag == f"{MAIN_NS}c":
                    cells += 1
                    if cells > max_cells:
                        raise InvalidInput(f"工作表单元格过多 (more than {max_cells} cells)", field=field)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"无法读取 XLSX 文件 (cannot read the XLSX file): {member}: {exc.msg}", field=field) from None


def read_first_sheet(data: bytes, *, max_rows: int, max_columns: int = MAX_COLUMNS,
                     field: str = "file") -> list[list[Any]]:
    """Return at most max_rows rows of at most max_columns values of the first worksheet.

    Raises: InvalidInput (not an XLSX file, a zip bomb, a sheet too large)
    """
    archive = open_zip(data, "XLSX", XLSX_LIMITS, field=field)
    with archive:
        for name in archive.namelist():
            if SHEET.match(name):
                check_sheet(archive, name, field=field)
    from openpyxl import load_workbook
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise InvalidInput(f"无法读取 XLSX 文件 (cannot read the XLSX file): {exc}", field=field) from None
    try:
        sheet = book.worksheets[0]
        width = min(max_columns, sheet.max_column or max_columns)  # the declared width, checked above
        return [list(row) for row in sheet.iter_rows(max_row=max_rows, max_col=width, values_only=True)]
    finally:
        book.close()


__all__ = ["MAX_CELLS", "MAX_COLUMNS", "check_sheet", "declared_area", "read_first_sheet"]
