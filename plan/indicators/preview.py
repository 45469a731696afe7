"""指标数据录入: check a period's figures from a file or the form, and preview what storing would change.

A file has a header row naming its columns (Chinese or English; order free): 指标代码 code
(or 指标名称 name), 数值 value, and optionally 单位 unit, 数据来源 source, 期间 period. Each row is
checked before anything is stored; one bad row refuses the whole file, and every refusal names its
line, column and reason: unknown indicator, an indicator of another year, a figure counted from the
project library (projects_*), the same indicator twice, a value that is not a number, more than 12
integer digits, a negative count or amount, a count of whole things (家, 个, 人; not 万人) with
decimals, a share outside 0–100, a growth rate below −100 %, a unit other than the indicator's (no
conversion: 5000 万元 is not 0.5 亿元), a 数据来源 holding a control or invisible character (no XLSX
cell holds one), a period other than the one being entered, an indicator of a unit other than the
officer's own (`reach`: an indicator's responsible unit; one with none is an administrator's). A row
with a blank value means no figure for that indicator (the template lists every indicator the officer
enters). Values are kept to 4 decimals (the column's scale).
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.org.models import OrgUnit
from plan import investment as plan
from plan.indicators.models import Indicator, IndicatorValue
from plan.indicators.upload import MAX_ROWS, read_table


@dataclass(frozen=True)
class Units:
    """A data officer's units: they enter the figures of the indicators one of them is responsible for
    (`responsible_unit`), and of those whose figures come from one of them (`source` names it: 统计局 reports the
    statistics other units are responsible for)."""

    ids: frozenset[int]
    names: frozenset[str]


Reach = Units | None  # whose indicators one enters figures of; None: every indicator

Q4 = Decimal("0.0001")
HIDDEN = ("Cc", "Cf", "Zl", "Zp")  # control, format and line-separator characters: none in a 数据来源
LIMIT = Decimal(10) ** 12
HEADERS = {
    "code": ("code", "指标代码", "代码"), "name": ("name", "指标名称", "指标", "名称"),
    "value": ("value", "数值", "值", "本期值", "累计值"), "unit": ("unit", "单位"),
    "source": ("source", "数据来源", "来源"), "period": ("period", "期间", "月份"),
}
COLUMN_NAMES = {"code": "指标代码", "name": "指标名称", "value": "数值", "unit": "单位", "source": "数据来源",
                "period": "期间"}


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


def reach(session: Session, actor: Actor | None) -> Reach:
    """Return the units whose indicators `actor` enters figures of (`Units`): a data officer's own units; None (every
    indicator, also one with no responsible unit) for an administrator, the system, or no actor (a whole-city read).
    """
    if actor is None or actor.is_admin or actor.is_system:
        return None
    ids = frozenset(actor.org_unit_ids)
    return Units(ids, frozenset(session.scalars(select(OrgUnit.name).where(OrgUnit.id.in_(ids or {-1})))))


def within(indicator: Indicator, scope: Reach) -> bool:
    """Tell whether an indicator's figures are in `scope`: one of its units is responsible for it or reports it."""
    return scope is None or indicator.responsible_unit_id in scope.ids or (indicator.source or "") in scope.names


def in_reach(scope: Units) -> ColumnElement[bool]:
    """`within` as a condition on Indicator."""
    return or_(Indicator.responsible_unit_id.in_(scope.ids or {-1}), Indicator.source.in_(scope.names or {""}))


def enterable(session: Session, year: int, scope: Reach = None) -> list[Indicator]:
    """The indicators of a year that take recorded figures (not counted from the project library) and are in
    `scope`, in plan order."""
    rows = session.scalars(select(Indicator).where(Indicator.year == year)
                           .order_by(Indicator.plan_line, Indicator.code)).all()
    return [i for i in rows if plan.COUNTED_CODE.match(i.code) is None and within(i, scope)]


def not_yours(session: Session, indicator: Indicator) -> str:
    """Say why a data officer may not enter this indicator's figures: whose it is."""
    unit = session.get(OrgUnit, indicator.responsible_unit_id) if indicator.responsible_unit_id else None
    if unit is None:
        return (f"{indicator.name}（{indicator.code}）未指定责任单位，只有管理员或数据来源单位的数据监测人员可以录入 "
                f"(no responsible unit: administrators or its source's data officers enter it)")
    return (f"{indicator.name}（{indicator.code}）的责任单位是{unit.name}，只能由该单位或数据来源单位的数据监测人员录入 "
            f"(an indicator of another unit, {unit.code}: its own or its source's data officers enter it)")


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
    # Before quantize (1e30 to four places is more digits than a Decimal holds) and after (…99995 rounds up).
    if abs(value) >= LIMIT or abs(value := value.quantize(Q4, rounding=ROUND_HALF_UP)) >= LIMIT:
        return None, "数值过大：最多12位整数 (at most 12 digits before the point)"
    if indicator.kind == "count" and not indicator.unit.startswith("万") and value != value.to_integral_value():
        return None, f"{indicator.name}须为整数 (a count of {indicator.unit} is a whole number): {text}"
    if indicator.kind in ("count", "amount") and value < 0:
        return None, f"{indicator.name}不能为负数 (a count or amount cannot be negative): {text}"
    if indicator.kind == "share" and not Decimal(0) <= value <= Decimal(100):
        return None, f"占比须在 0–100 之间 (a share is between 0 and 100 %): {text}"
    if indicator.kind == "growth_rate" and value < Decimal(-100):
        return None, f"增速不能低于 -100% (a growth rate cannot be below -100 %): {text}"
    return value, None


def check_rows(session: Session, period: str, rows: list[tuple[int, dict[str, str]]],
               scope: Reach = None) -> tuple[list[Entry], list[RowError]]:
    """Check figures given as (line, {column: text}) for a period, by one who enters those of `scope`; return the
    entries and every row's errors.

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
        if not within(indicator, scope):
            errors.append(RowError(line, "code", not_yours(session, indicator)))
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
        if any(unicodedata.category(ch) in HIDDEN for ch in source):
            errors.append(RowError(line, "source", "数据来源不能含控制字符或不可见字符 "
                                                   "(no control or invisible characters in the source)"))
            continue
        entries.append(Entry(line, indicator.id, indicator.code, indicator.name, indicator.unit, value, source))
    return entries, errors


def period_changes(session: Session, period: str, entries: list[Entry], scope: Reach = None) -> list[Change]:
    """What storing `entries` would change of the period's figures in `scope` (those outside are not touched)."""
    year, _ = plan.parse_period(period)
    current = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    wanted = {e.indicator_id: e for e in entries}
    changes = []
    for indicator in enterable(session, year, scope):
        old, new = current.get(indicator.id), wanted.get(indicator.id)
        if old is None and new is None:
            continue
        changes.append(Change(indicator.code, indicator.name, indicator.unit,
                              Decimal(old.value).quantize(Q4) if old else None, new.value if new else None,
                              old.source if old else None, new.source if new else None))
    return changes


def preview_upload(session: Session, *, period: str, filename: str, data: bytes, actor: Actor | None = None) -> Preview:
    """Read and check a file for a period, as `actor` would store it (None: a whole-city check); store nothing. The
    preview lists every row error or change.

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
    scope = reach(session, actor)
    preview.entries, preview.errors = check_rows(session, period, rows, scope)
    if not preview.entries and not preview.errors:
        preview.errors.append(RowError(header_at + 1, "value", "没有填写任何数值 (no figures in the file)"))
    if not preview.errors:
        preview.changes = period_changes(session, period, preview.entries, scope)
    return preview


__all__ = [
    "MAX_ROWS",
    "Change",
    "Entry",
    "Preview",
    "Reach",
    "RowError",
    "Units",
    "check_rows",
    "enterable",
    "in_reach",
    "not_yours",
    "period_changes",
    "preview_upload",
    "reach",
    "within",
]
