"""指标数据录入: a period's indicator figures from a form or an XLSX/CSV file, previewed before storing.

A file has a header row naming its columns (Chinese or English; order free): 指标代码 code
(or 指标名称 name), 数值 value, and optionally 单位 unit, 数据来源 source, 期间 period. Each row is
checked before anything is stored; one bad row refuses the whole file, and every refusal names its
line, column and reason: unknown indicator, an indicator of another year, a figure counted from the
project library (projects_*), the same indicator twice, a value that is not a number, more than 12
integer digits, a negative count or amount, a share outside 0–100, a growth rate below −100 %, a unit
other than the indicator's (no conversion: 5000 万元 is not 0.5 亿元), a period other than the one
being entered. A row with a blank value means no figure for that indicator (the template lists
every indicator).

Storing a period replaces it: afterwards the period's recorded figures are exactly the file's (or
the form's) — changed ones updated, new ones added, the ones not given removed — in one transaction,
audited per indicator (`indicator:<id>`, action indicator.value.set / .delete) and once for the
period (`indicator_period:<YYYY-MM>`, indicator.period.replace: how, the file's name and sha256,
counts). Values are kept to 4 decimals (the column's scale). Figures are year-to-date (1–N月累计) as
plan.investment reads them. Who may enter: data officers (role data_officer) and admins.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import Forbidden, InvalidInput
from engine.org.actors import Actor
from engine.org.models import Role
from plan import investment as plan
from plan.indicators import sheets
from plan.indicators.models import Indicator, IndicatorValue

ENTRY_ROLES = ("data_officer",)
MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 2000
MAX_TABLE_ROWS = MAX_ROWS + 100  # read no further: a header, blank lines, and enough to say "too many rows"
Q4 = Decimal("0.0001")
LIMIT = Decimal(10) ** 12
HEADERS = {
    "code": ("code", "指标代码", "代码"), "name": ("name", "指标名称", "指标", "名称"),
    "value": ("value", "数值", "值", "本期值", "累计值"), "unit": ("unit", "单位"),
    "source": ("source", "数据来源", "来源"), "period": ("period", "期间", "月份"),
}
COLUMN_NAMES = {"code": "指标代码", "name": "指标名称", "value": "数值", "unit": "单位", "source": "数据来源",
                "period": "期间"}


class UploadInvalid(InvalidInput):
    """The file (or form) has bad rows; nothing was stored. `errors` lists each line's reason."""

    code = "indicator_upload_invalid"


@dataclass(frozen=True)
class RowError:
    line: int  # 1 = the header row (a file), or the form's row number
    column: str
    message: str

    def __str__(self) -> str:
        return f"第{self.line}行 {COLUMN_NAMES.get(self.column, self.column)}: {self.message}"


@dataclass(frozen=True)
class Entry:
    """One checked figure, ready to store."""

    line: int
    indicator_id: int
    code: str
    name: str
    unit: str
    value: Decimal
    source: str


@dataclass(frozen=True)
class Change:
    code: str
    name: str
    unit: str
    before: Decimal | None
    after: Decimal | None
    source_before: str | None
    source: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "add"
        if self.after is None:
            return "remove"
        return "same" if self.before == self.after and self.source_before == self.source else "change"


@dataclass
class Preview:
    """What storing would do: the checked entries, the row errors, and each indicator's change."""

    period: str
    filename: str
    sha256: str
    entries: list[Entry] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.entries)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)


def can_enter(session: Session, actor: Actor) -> bool:
    """Tell whether the actor may enter indicator figures (data officers and admins)."""
    if actor.is_admin or actor.is_system:
        return True
    codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids or {-1}))))
    return bool(codes & set(ENTRY_ROLES))


def require_entry(session: Session, actor: Actor) -> None:
    """Raises: Forbidden unless the actor may enter figures."""
    if not can_enter(session, actor):
        raise Forbidden("只有数据监测人员可以录入指标数据 (only data officers may enter indicator figures)")


def enterable(session: Session, year: int) -> list[Indicator]:
    """The indicators of a year that take recorded figures (not counted from the project library), in plan order."""
    rows = session.scalars(select(Indicator).where(Indicator.year == year)
                           .order_by(Indicator.plan_line, Indicator.code)).all()
    return [i for i in rows if plan.COUNTED_CODE.match(i.code) is None]


# -- reading files ------------------------------------------------------------------------------------

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

    Raises: UploadInvalid (not a readable CSV/XLSX, too large)
    """
    if len(data) > MAX_BYTES:
        raise UploadInvalid(f"文件超过 {MAX_BYTES // 1024 // 1024} MB (file too large)", field="file")
    name = filename.lower()
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
        return [[c.strip() for c in row[:sheets.MAX_COLUMNS]] for row in itertools.islice(reader, MAX_TABLE_ROWS)]
    raise UploadInvalid("只接受 .xlsx 或 .csv 文件 (only .xlsx or .csv files)", field="file")


def _columns(header: list[str]) -> tuple[dict[str, int], list[RowError]]:
    found: dict[str, int] = {}
    errors = []
    for index, title in enumerate(header):
        key = next((k for k, names in HEADERS.items() if title.strip().lower() in names), None)
        if key is None:
            continue
        if key in found:
            errors.append(RowError(1, key, f"列重复 (duplicate column): {title}"))
        found[key] = index
    if "value" not in found:
        errors.append(RowError(1, "value", "缺少“数值”列 (no value column)"))
    if "code" not in found and "name" not in found:
        errors.append(RowError(1, "code", "缺少“指标代码”或“指标名称”列 (no code or name column)"))
    return found, errors


def _number(text: str, indicator: Indicator) -> tuple[Decimal | None, str | None]:
    raw = text.replace(",", "").replace("，", "").strip()
    if indicator.unit == "%" and raw.endswith("%"):
        raw = raw[:-1].strip()
    if not raw:
        return None, "缺少数值 (no value)"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None, f"不是数字 (not a number): {text!r}"
    if not value.is_finite():
        return None, f"不是数字 (not a number): {text!r}"
    value = value.quantize(Q4, rounding=ROUND_HALF_UP)
    if abs(value) >= LIMIT:
        return None, "数值过大：最多12位整数 (at most 12 digits before the point)"
    if indicator.kind in ("count", "amount") and value < 0:
        return None, f"{indicator.name}不能为负数 (a count or amount cannot be negative): {text}"
    if indicator.kind == "share" and not Decimal(0) <= value <= Decimal(100):
        return None, f"占比须在 0–100 之间 (a share is between 0 and 100 %): {text}"
    if indicator.kind == "growth_rate" and value < Decimal(-100):
        return None, f"增速不能低于 -100% (a growth rate cannot be below -100 %): {text}"
    return value, None


def check_rows(session: Session, period: str, rows: list[tuple[int, dict[str, str]]]) -> tuple[list[Entry], list[RowError]]:
    """Check figures given as (line, {column: text}) for a period; return the entries and every row's errors.

    Raises: InvalidInput (bad period)
    """
    year, _month = plan.parse_period(period)
    indicators = session.scalars(select(Indicator)).all()
    by_code = {i.code: i for i in indicators if i.year == year}
    by_name = {i.name: i for i in indicators if i.year == year}
    other_years = {i.code for i in indicators if i.year != year}
    entries: list[Entry] = []
    errors: list[RowError] = []
    seen: dict[int, int] = {}
    for line, cells in rows:
        code, name = cells.get("code", "").strip(), cells.get("name", "").strip()
        indicator = by_code.get(code) if code else by_name.get(name)
        if indicator is None:
            if code in other_years:
                errors.append(RowError(line, "code", f"指标 {code} 不是 {year} 年的指标 (not an indicator of {year})"))
            elif code or name:
                what = f"指标代码 {code}" if code else f"指标名称 {name}"
                errors.append(RowError(line, "code" if code else "name", f"未知{what} (unknown indicator)"))
            else:
                errors.append(RowError(line, "code", "缺少指标代码或名称 (no indicator code or name)"))
            continue
        if not cells.get("value", "").strip() and not plan.COUNTED_CODE.match(indicator.code):
            continue  # a blank figure (as in the template): no figure for this indicator in the period
        if code and name and name != indicator.name:
            errors.append(RowError(line, "name", f"名称与代码不符：{code} 是“{indicator.name}” (name does not match code)"))
            continue
        if plan.COUNTED_CODE.match(indicator.code):
            errors.append(RowError(line, "code", f"{indicator.name}由项目库自动统计，不接受填报 "
                                                 f"(counted from the project library, not entered)"))
            continue
        if indicator.id in seen:
            errors.append(RowError(line, "code", f"{indicator.name}重复：已在第{seen[indicator.id]}行 "
                                                 f"(same indicator twice; first on line {seen[indicator.id]})"))
            continue
        seen[indicator.id] = line
        row_period = cells.get("period", "").strip()
        if row_period and row_period != period:
            errors.append(RowError(line, "period", f"期间 {row_period} 与本次录入的期间 {period} 不符 (period differs)"))
            continue
        unit = cells.get("unit", "").strip()
        if unit and unit != indicator.unit:
            errors.append(RowError(line, "unit", f"单位应为“{indicator.unit}”，不是“{unit}” "
                                                 f"(unit must be {indicator.unit}; no conversion)"))
            continue
        value, problem = _number(cells.get("value", ""), indicator)
        if value is None:
            errors.append(RowError(line, "value", problem or "缺少数值 (no value)"))
            continue
        source = cells.get("source", "").strip()[:100] or indicator.source
        entries.append(Entry(line, indicator.id, indicator.code, indicator.name, indicator.unit, value, source))
    return entries, errors


def _changes(session: Session, period: str, entries: list[Entry]) -> list[Change]:
    year, _ = plan.parse_period(period)
    current = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    wanted = {e.indicator_id: e for e in entries}
    changes = []
    for indicator in enterable(session, year):
        old, new = current.get(indicator.id), wanted.get(indicator.id)
        if old is None and new is None:
            continue
        changes.append(Change(indicator.code, indicator.name, indicator.unit,
                              Decimal(old.value).quantize(Q4) if old else None, new.value if new else None,
                              old.source if old else None, new.source if new else None))
    return changes


def preview_upload(session: Session, *, period: str, filename: str, data: bytes) -> Preview:
    """Read and check a file for a period; store nothing. The preview lists every row error or change.

    Raises: InvalidInput (bad period), UploadInvalid (unreadable file)
    """
    plan.parse_period(period)
    preview = Preview(period, filename, hashlib.sha256(data).hexdigest())
    table = [row for row in read_table(filename, data)]
    header_at = next((n for n, row in enumerate(table) if any(c for c in row)), None)
    if header_at is None:
        preview.errors.append(RowError(1, "file", "文件是空的 (the file is empty)"))
        return preview
    columns, preview.errors = _columns(table[header_at])
    if preview.errors:
        return preview
    rows = [(n + 1, {k: (row[i] if i < len(row) else "") for k, i in columns.items()})
            for n, row in enumerate(table) if n > header_at and any(c for c in row)]
    if not rows:
        preview.errors.append(RowError(header_at + 1, "file", "没有数据行 (no data rows)"))
        return preview
    if len(rows) > MAX_ROWS:
        preview.errors.append(RowError(header_at + 1, "file", f"超过 {MAX_ROWS} 行 (too many rows)"))
        return preview
    preview.entries, preview.errors = check_rows(session, period, rows)
    if not preview.entries and not preview.errors:
        preview.errors.append(RowError(header_at + 1, "value", "没有填写任何数值 (no figures in the file)"))
    if not preview.errors:
        preview.changes = _changes(session, period, preview.entries)
    return preview


# -- storing ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replaced:
    period: str
    added: int
    changed: int
    removed: int
    unchanged: int


def replace_period(session: Session, *, period: str, entries: list[Entry], actor: Actor, via: str,
                   filename: str | None = None, sha256: str | None = None) -> Replaced:
    """Make the period's recorded figures exactly `entries` (flushes; audited per indicator and per period).

    Raises: Forbidden, InvalidInput
    """
    require_entry(session, actor)
    plan.parse_period(period)
    changes = _changes(session, period, entries)
    current = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    ids = {i.code: i.id for i in session.scalars(select(Indicator).where(Indicator.code.in_([c.code for c in changes])))}
    by_code = {e.code: e for e in entries}
    now = clock.now()
    for change in changes:
        if change.kind == "same":
            continue
        indicator_id = ids[change.code]
        row = current.get(indicator_id)
        entry = by_code.get(change.code)
        if entry is None:
            assert row is not None
            session.delete(row)
        elif row is None:
            session.add(IndicatorValue(indicator_id=indicator_id, period=period, value=entry.value, source=entry.source,
                                       recorded_by_id=actor.user_id, recorded_at=now))
        else:
            row.value, row.source, row.recorded_by_id, row.recorded_at = entry.value, entry.source, actor.user_id, now
        session.flush()
        audit.record(session, actor, "indicator.value.delete" if entry is None else "indicator.value.set",
                     stream=f"indicator:{indicator_id}", object_type="indicator", object_id=indicator_id,
                     before={"period": period, "value": change.before, "source": change.source_before}
                     if change.before is not None else None,
                     after={"period": period, "value": change.after, "source": change.source, "via": via}
                     if entry is not None else None)
    result = Replaced(period, *(sum(1 for c in changes if c.kind == k) for k in ("add", "change", "remove", "same")))
    audit.record(session, actor, "indicator.period.replace", stream=f"indicator_period:{period}",
                 object_type="indicator_period", object_id=period,
                 after={"via": via, "filename": filename, "sha256": sha256, "figures": len(entries),
                        "added": result.added, "changed": result.changed, "removed": result.removed})
    return result


def apply_upload(session: Session, *, period: str, filename: str, data: bytes, actor: Actor) -> Replaced:
    """Check a file and, when every row is good, replace the period with it (flushes).

    Raises: Forbidden, InvalidInput, UploadInvalid (with `errors`: each row's line, column and reason)
    """
    require_entry(session, actor)
    preview = preview_upload(session, period=period, filename=filename, data=data)
    if not preview.ok:
        raise _invalid(preview.errors)
    return replace_period(session, period=period, entries=preview.entries, actor=actor, via="upload",
                          filename=filename, sha256=preview.sha256)


def _invalid(errors: list[RowError]) -> UploadInvalid:
    listed = "；".join(str(e) for e in errors[:20]) or "没有数据行 (no data rows)"
    more = f"；另有 {len(errors) - 20} 处" if len(errors) > 20 else ""
    return UploadInvalid(f"数据有误，未作任何修改 (nothing stored): {listed}{more}",
                         errors=[{"line": e.line, "column": e.column, "message": e.message} for e in errors])


def save_form(session: Session, *, period: str, values: Mapping[str, tuple[str, str]], actor: Actor) -> Replaced:
    """Replace a period with the figures of the entry form ({code: (value, source)}; a blank value removes it).

    Raises: Forbidden, InvalidInput, UploadInvalid
    """
    require_entry(session, actor)
    year, _ = plan.parse_period(period)
    rows = []
    for n, indicator in enumerate(enterable(session, year), 1):
        value, source = values.get(indicator.code, ("", ""))
        if value.strip():
            rows.append((n, {"code": indicator.code, "value": value, "source": source}))
    entries, errors = check_rows(session, period, rows)
    if errors:
        raise _invalid(errors)
    return replace_period(session, period=period, entries=entries, actor=actor, via="form")


def current_figures(session: Session, period: str) -> list[tuple[Indicator, IndicatorValue | None]]:
    """The entry form's rows: each enterable indicator of the period's year with its figure for the period."""
    year, _ = plan.parse_period(period)
    values = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    return [(i, values.get(i.id)) for i in enterable(session, year)]


def template_rows(session: Session, period: str) -> list[list[str]]:
    """A fill-in template for a period: header and one row per enterable indicator (current figure filled in)."""
    rows = [["指标代码", "指标名称", "期间", "数值", "单位", "数据来源"]]
    for indicator, value in current_figures(session, period):
        rows.append([indicator.code, indicator.name, period, (plan.show(Decimal(value.value)) or "") if value else "",
                     indicator.unit, value.source if value else indicator.source])
    return rows


def template_csv(session: Session, period: str) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(template_rows(session, period))
    return out.getvalue().encode("utf-8-sig")


def template_xlsx(session: Session, period: str) -> bytes:
    from openpyxl import Workbook
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = period
    for row in template_rows(session, period):
        sheet.append(row)
    for column, width in zip("ABCDEF", (34, 36, 10, 14, 8, 18), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


__all__ = ["Change", "Entry", "Preview", "Replaced", "RowError", "UploadInvalid", "apply_upload", "can_enter",
           "check_rows", "current_figures", "enterable", "preview_upload", "read_table", "replace_period",
           "require_entry", "save_form", "template_csv", "template_xlsx"]
