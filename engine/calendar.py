"""Working days (工作日) with Chinese statutory holidays and make-up working days (调休)."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import chinese_calendar

from engine import clock

SLA_PATTERN = re.compile(r"^\s*(\d+)\s*(wd|d|h)\s*$")


def is_working_day(day: date) -> bool:
    """Tell whether `day` is a working day in mainland China (weekends, holidays, 调休 included)."""
    return bool(chinese_calendar.is_workday(day))


def add_working_days(start: datetime, days: int) -> datetime:
    """Return the same local (Asia/Shanghai) time `days` working days after `start`."""
    local = start.astimezone(clock.SHANGHAI)
    day = local.date()
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return datetime.combine(day, local.timetz()).astimezone(clock.UTC)


def working_days_between(start: date, end: date) -> int:
    """Count working days after `start` up to and including `end`."""
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day):
            count += 1
    return count


def due_from_sla(start: datetime, sla: str) -> datetime:
    """Return the due time of an SLA like `5wd` (working days), `2d` (days) or `48h` (hours).

    Raises: ValueError for an SLA it does not understand.
    """
    match = SLA_PATTERN.match(sla)
    if match is None:
        raise ValueError(f"SLA '{sla}' is not like 5wd, 2d or 48h")
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "wd":
        return add_working_days(start, amount)
    if unit == "d":
        return start + timedelta(days=amount)
    return start + timedelta(hours=amount)
