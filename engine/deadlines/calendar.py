"""Working days (工作日) with Chinese statutory holidays and make-up working days (调休); office hours.

The one calendar of the engine: deadlines, SLAs (`5wd`, `2d`, `48h`), yellow thresholds and the
escalation ladder all count with it. Holidays and 调休 come from the `chinese-calendar` package,
which knows the years the State Council has published (`covered_years()`); a year it does not know
yet (the next year's schedule is published each November) counts Monday to Friday, so a deadline
in such a year is never refused, only possibly a day off — upgrade the package when it is out.

Working-day arithmetic keeps the local (Asia/Shanghai) time of day: 5 working days after Monday
10:00 is the next Monday 10:00. Office hours (办公时间) are 09:00–12:00 and 13:30–17:30 on
working days.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from chinese_calendar.constants import holidays as _HOLIDAYS
from chinese_calendar.constants import workdays as _MAKEUP_DAYS

from engine import clock

SLA_PATTERN = re.compile(r"^\s*(\d+)\s*(wd|d|h)\s*$")
# The longest SLA of each unit, about ten years: `99999999d` overflowed the save, `3000000wd` walked two million days.
SLA_LIMITS = {"wd": 2500, "d": 3650, "h": 87600}
OFFICE_HOURS: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))
_FIRST_YEAR = min(_HOLIDAYS).year
_LAST_YEAR = max(_HOLIDAYS).year


def covered_years() -> range:
    """Return the years whose holidays and 调休 the calendar knows (others count Monday–Friday)."""
    return range(_FIRST_YEAR, _LAST_YEAR + 1)


def is_working_day(day: date) -> bool:
    """Tell whether `day` is a working day in mainland China (weekends, holidays, 调休 included)."""
    if isinstance(day, datetime):
        day = day.date()
    if day in _MAKEUP_DAYS:  # 调休: a Saturday or Sunday worked in lieu of a holiday
        return True
    return day.weekday() < 5 and day not in _HOLIDAYS


def is_makeup_day(day: date) -> bool:
    """Tell whether `day` is a weekend day worked in lieu of a holiday (调休上班)."""
    return day in _MAKEUP_DAYS


def next_working_day(day: date) -> date:
    """Return the first working day after `day`."""
    day += timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def previous_working_day(day: date) -> date:
    """Return the last working day before `day`."""
    day -= timedelta(days=1)
    while not is_working_day(day):
        day -= timedelta(days=1)
    return day


def _local(at: datetime) -> datetime:
    return clock.as_utc(at).astimezone(clock.SHANGHAI)


def add_working_days(start: datetime, days: int) -> datetime:
    """Return the same local (Asia/Shanghai) time `days` working days after (or, negative, before) `start`."""
    local = _local(start)
    day = _working_days_from(local.date(), days)
    # Combine with a naive time and localise, so a DST-free zone never shifts the hour.
    return datetime.combine(day, local.time(), tzinfo=clock.SHANGHAI).astimezone(clock.UTC)


@lru_cache(maxsize=4096)  # the holidays are fixed at import; every new task with an SLA asks for the same few days
def _working_days_from(day: date, days: int) -> date:
    for _ in range(abs(days)):
        day = next_working_day(day) if days > 0 else previous_working_day(day)
    return day


def subtract_working_days(end: datetime, days: int) -> datetime:
    """Return the same local time `days` working days before `end`."""
    return add_working_days(end, -days)


def working_days_between(start: date, end: date) -> int:
    """Count working days after `start` up to and including `end` (negative when `end` is earlier)."""
    if isinstance(start, datetime):
        start = _local(start).date()
    if isinstance(end, datetime):
        end = _local(end).date()
    sign = 1
    if end < start:
        start, end, sign = end, start, -1
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day):
            count += 1
    return sign * count


def working_days_left(now: datetime, due: datetime) -> int:
    """Count the working days from `now` until `due` (0 on the due day, negative once past it)."""
    return working_days_between(_local(now).date(), _local(due).date())


def parse_sla(sla: str) -> tuple[int, str]:
    """Return an SLA's amount and unit (`wd`, `d` or `h`).

    Raises: ValueError for an SLA not like 5wd, 2d or 48h, or longer than SLA_LIMITS allows.
    """
    match = SLA_PATTERN.match(sla)
    if match is None or not match.group(1).isascii():
        raise ValueError(f"SLA '{sla}' is not like 5wd, 2d or 48h")
    amount, unit = int(match.group(1)), match.group(2)
    if amount > SLA_LIMITS[unit]:
        raise ValueError(f"SLA '{sla}' is over the limit of {SLA_LIMITS[unit]}{unit}")
    return amount, unit


def due_from_sla(start: datetime, sla: str) -> datetime:
    """Return the due time of an SLA like `5wd` (working days), `2d` (days) or `48h` (hours).

    Raises: ValueError for an SLA it does not understand or over SLA_LIMITS.
    """
    amount, unit = parse_sla(sla)
    if unit == "wd":
        return add_working_days(start, amount)
    if unit == "d":
        return start + timedelta(days=amount)
    return start + timedelta(hours=amount)


# -- office hours (办公时间) -------------------------------------------------------------------------

def _periods(day: date) -> list[tuple[datetime, datetime]]:
    if not is_working_day(day):
        return []
    return [(datetime.combine(day, a, tzinfo=clock.SHANGHAI), datetime.combine(day, b, tzinfo=clock.SHANGHAI))
            for a, b in OFFICE_HOURS]


def is_office_hours(at: datetime) -> bool:
    """Tell whether `at` falls within office hours of a working day."""
    local = _local(at)
    return any(a <= local < b for a, b in _periods(local.date()))


def next_office_time(at: datetime) -> datetime:
    """Return `at` if it is within office hours, else the start of the next office period (UTC)."""
    local = _local(at)
    day = local.date()
    while True:
        for a, b in _periods(day):
            if local < b:
                return max(local, a).astimezone(clock.UTC)
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=clock.SHANGHAI)


def office_time_between(start: datetime, end: datetime) -> timedelta:
    """Return the office time between two instants (zero when `end` is not after `start`)."""
    lo, hi = _local(start), _local(end)
    total = timedelta(0)
    day = lo.date()
    while day <= hi.date():
        for a, b in _periods(day):
            overlap = min(b, hi) - max(a, lo)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def add_office_time(start: datetime, amount: timedelta) -> datetime:
    """Return the instant `amount` of office time after `start` (e.g. 4 office hours)."""
    if amount < timedelta(0):
        raise ValueError("add_office_time() needs a non-negative amount")
    local = _local(next_office_time(start))
    remaining = amount
    day = local.date()
    while True:
        for a, b in _periods(day):
            if local >= b:
                continue
            begin = max(local, a)
            if begin + remaining <= b:
                return (begin + remaining).astimezone(clock.UTC)
            remaining -= b - begin
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=clock.SHANGHAI)
