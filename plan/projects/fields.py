"""项目录入's field checks: text, dates, amounts and planned dates in order, each refusal naming its field."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.errors import InvalidInput
from plan.dates import require_year

PLANNED_FIELDS = ("planned_sign", "planned_start", "planned_complete", "planned_produce")
PLANNED_NAMES = {"planned_sign": "计划签约日期", "planned_start": "计划开工日期", "planned_complete": "计划竣工日期",
                 "planned_produce": "计划投产日期"}
MAX_TEXT = 2000
MAX_AMOUNT = Decimal("1e12")  # 万元: what NUMERIC(14, 2) holds, rounded to the 分


def text(value: Any, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """Return a trimmed text field. Raises: InvalidInput naming the field"""
    result = "" if value is None else str(value).strip()
    if required and not result:
        raise InvalidInput(f"{field}：必填 (required)", field=field)
    if len(result) > limit:
        raise InvalidInput(f"{field}：不能超过 {limit} 个字 (at most {limit} characters)", field=field)
    if "\x00" in result:
        raise InvalidInput(f"{field}：含有非法字符 (invalid character)", field=field)
    return result


def day(value: Any, field: str) -> date | None:
    """Return a date from a date or YYYY-MM-DD text (None when empty). Raises: InvalidInput naming the field"""
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        found = date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InvalidInput(f"{PLANNED_NAMES.get(field, field)}：日期格式应为 YYYY-MM-DD (not a date)",
                           field=field) from None
    require_year(found.year, field=field, message=f"{PLANNED_NAMES.get(field, field)}：日期超出范围 (date out of range)")
    return found


def amount(value: Any, field: str = "investment") -> Decimal:
    """Return a positive amount in 万元, to the 分 (NUMERIC(14, 2)). Raises: InvalidInput naming the field

    Checked once rounded: 0.001 rounds to nothing and 999999999999.995 past what the column holds.
    """
    try:
        found = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        raise InvalidInput("投资（万元）：应为数字 (not a number)", field=field) from None
    if found.is_finite() and 0 < found < MAX_AMOUNT:
        found = found.quantize(Decimal("0.01"))
    if not found.is_finite() or found <= 0 or found >= MAX_AMOUNT:
        raise InvalidInput("投资（万元）：应为 0.01 至 999999999999.99 之间的数 (between 0.01 and 999,999,999,999.99)",
                           field=field)
    return found


def check_planned(dates: Mapping[str, date | None]) -> None:
    """Refuse planned dates out of order (签约 ≤ 开工 ≤ 竣工 ≤ 投产), naming the later field.

    Raises: InvalidInput
    """
    last: tuple[str, date] | None = None
    for field in PLANNED_FIELDS:
        value = dates.get(field)
        if value is None:
            continue
        if last is not None and value < last[1]:
            raise InvalidInput(f"{PLANNED_NAMES[field]} {value} 早于{PLANNED_NAMES[last[0]]} {last[1]} "
                               f"(planned dates out of order)", field=field)
        last = (field, value)



__all__ = ["MAX_TEXT", "PLANNED_FIELDS", "PLANNED_NAMES", "amount", "check_planned", "day", "text"]
