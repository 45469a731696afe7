"""engine.deadlines.calendar: working days across the 2025 and 2026 holidays and 调休, office hours, arithmetic laws."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import clock
from engine.deadlines import calendar

SH = clock.SHANGHAI


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def local(value: datetime) -> datetime:
    return value.astimezone(SH)


# The State Council's schedules (国务院办公厅关于2025年/2026年部分节假日安排的通知).
HOLIDAYS = {
    2025: ["2025-01-01", *[f"2025-01-{d}" for d in (28, 29, 30, 31)], *[f"2025-02-0{d}" for d in (1, 2, 3, 4)],
           "2025-04-04", "2025-04-05", "2025-04-06", *[f"2025-05-0{d}" for d in range(1, 6)],
           "2025-05-31", "2025-06-01", "2025-06-02", *[f"2025-10-0{d}" for d in range(1, 9)]],
    2026: ["2026-01-01", "2026-01-02", "2026-01-03", *[f"2026-02-{d}" for d in range(15, 24)],
           "2026-04-04", "2026-04-05", "2026-04-06", *[f"2026-05-0{d}" for d in range(1, 6)],
           "2026-06-19", "2026-06-20", "2026-06-21", "2026-09-25", "2026-09-26", "2026-09-27",
           *[f"2026-10-0{d}" for d in range(1, 8)]],
}
MAKEUP_DAYS = {  # 调休上班: weekend days that are working days
    2025: ["2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"],
    2026: ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"],
}


@pytest.mark.parametrize("year", [2025, 2026])
def test_statutory_holidays_are_days_off(year: int) -> None:
    for text in HOLIDAYS[year]:
        assert not calendar.is_working_day(date.fromisoformat(text)), text


@pytest.mark.parametrize("year", [2025, 2026])
def test_makeup_days_are_working_days(year: int) -> None:
    for text in MAKEUP_DAYS[year]:
        day = date.fromisoformat(text)
        assert day.weekday() >= 5 and calendar.is_working_day(day) and calendar.is_makeup_day(day), text


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_year_has_the_published_number_of_working_days(year: int) -> None:
    days = [date(year, 1, 1) + timedelta(days=n) for n in range(365)]
    working = [d for d in days if calendar.is_working_day(d)]
    weekend_work = [d.isoformat() for d in working if d.weekday() >= 5]
    assert weekend_work == MAKEUP_DAYS[year]
    assert len(working) == 248  # 365 − 104 weekend days − 13 statutory days, bridged by 调休


def test_adding_working_days_jumps_over_national_day_2025() -> None:
    # Tue 30 Sep 2025 + 1 working day: 1–8 Oct off → Thu 9 Oct, same time of day.
    assert local(calendar.add_working_days(at(2025, 9, 30), 1)) == at(2025, 10, 9)
    # Fri 26 Sep + 1: Sunday 28 Sep is a make-up working day.
    assert local(calendar.add_working_days(at(2025, 9, 26, 15, 30), 1)) == at(2025, 9, 28, 15, 30)
    # Thu 9 Oct + 2: Fri 10, then Saturday 11 Oct (调休).
    assert local(calendar.add_working_days(at(2025, 10, 9), 2)) == at(2025, 10, 11)
    assert calendar.working_days_between(date(2025, 9, 26), date(2025, 10, 12)) == 6  # 28, 29, 30 Sep; 9, 10, 11 Oct
    assert calendar.working_days_between(date(2025, 9, 30), date(2025, 10, 8)) == 0


def test_adding_working_days_over_spring_festival_2026() -> None:
    # Fri 13 Feb 2026 + 1 → Sat 14 Feb (调休); + 2 → Tue 24 Feb (15–23 Feb off).
    assert local(calendar.add_working_days(at(2026, 2, 13), 1)) == at(2026, 2, 14)
    assert local(calendar.add_working_days(at(2026, 2, 13), 2)) == at(2026, 2, 24)
    assert local(calendar.add_working_days(at(2026, 2, 27), 1)) == at(2026, 2, 28)  # Sat 28 Feb worked
    assert calendar.due_from_sla(at(2026, 2, 12, 9), "5wd").astimezone(SH) == at(2026, 2, 26, 9)


def test_new_year_2026_and_labour_day() -> None:
    assert local(calendar.add_working_days(at(2025, 12, 31), 1)) == at(2026, 1, 4)  # Sunday 4 Jan worked
    assert local(calendar.add_working_days(at(2026, 4, 30), 1)) == at(2026, 5, 6)
    assert local(calendar.add_working_days(at(2026, 5, 8), 1)) == at(2026, 5, 9)  # Saturday 9 May worked


def test_start_on_a_holiday_counts_from_the_next_working_day() -> None:
    assert local(calendar.add_working_days(at(2025, 10, 3), 1)) == at(2025, 10, 9)
    assert local(calendar.add_working_days(at(2025, 10, 3), 0)) == at(2025, 10, 3)


def test_subtracting_working_days() -> None:
    assert local(calendar.subtract_working_days(at(2025, 10, 9), 1)) == at(2025, 9, 30)
    assert local(calendar.subtract_working_days(at(2026, 2, 24), 1)) == at(2026, 2, 14)
    assert calendar.previous_working_day(date(2026, 1, 4)) == date(2025, 12, 31)
    assert calendar.next_working_day(date(2025, 12, 31)) == date(2026, 1, 4)


def test_working_days_left() -> None:
    due = datetime(2025, 10, 9, 23, 59, 59, tzinfo=SH)
    assert calendar.working_days_left(at(2025, 9, 30), due) == 1
    assert calendar.working_days_left(at(2025, 10, 9), due) == 0
    assert calendar.working_days_left(at(2025, 10, 13), due) == -3  # 10, 11 (调休), 13 Oct


def test_sla_units() -> None:
    start = at(2025, 9, 1, 9)
    assert calendar.due_from_sla(start, "2d") == start + timedelta(days=2)
    assert calendar.due_from_sla(start, " 48h ") == start + timedelta(hours=48)
    with pytest.raises(ValueError, match="5wd"):
        calendar.due_from_sla(start, "five days")


def test_a_year_the_package_does_not_know_counts_monday_to_friday() -> None:
    assert max(calendar.covered_years()) == 2026
    assert calendar.is_working_day(date(2027, 1, 4)) and not calendar.is_working_day(date(2027, 1, 2))
    assert local(calendar.add_working_days(at(2026, 12, 31), 1)) == at(2027, 1, 1)  # a Friday, not yet known


def test_office_hours() -> None:
    assert calendar.is_office_hours(at(2025, 9, 1, 9, 0)) and not calendar.is_office_hours(at(2025, 9, 1, 12, 30))
    assert not calendar.is_office_hours(at(2025, 10, 2, 10))  # a holiday
    assert calendar.is_office_hours(at(2025, 9, 28, 10))  # a 调休 Sunday
    assert local(calendar.next_office_time(at(2025, 9, 1, 12, 30))) == at(2025, 9, 1, 13, 30)
    assert local(calendar.next_office_time(at(2025, 9, 30, 18))) == at(2025, 10, 9, 9)
    assert calendar.office_time_between(at(2025, 9, 1, 8), at(2025, 9, 1, 20)) == timedelta(hours=7)
    # 16:00–17:30 on 30 Sep, then 1.5 h from 09:00 on 9 Oct (1–8 Oct off)
    assert local(calendar.add_office_time(at(2025, 9, 30, 16), timedelta(hours=3))) == at(2025, 10, 9, 10, 30)


# -- properties ------------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 11, 30)).map(
    lambda d: d.replace(tzinfo=SH))
counts = st.integers(min_value=0, max_value=40)


@settings(max_examples=300, deadline=None)
@given(instants, counts)
def test_adding_n_working_days_lands_on_a_working_day_n_working_days_later(start: datetime, n: int) -> None:
    due = calendar.add_working_days(start, n)
    assert local(due).time() == start.time()
    assert calendar.working_days_between(start.date(), local(due).date()) == n
    if n:
        assert calendar.is_working_day(local(due).date())
        assert due > start


@settings(max_examples=200, deadline=None)
@given(instants, counts, counts)
def test_adding_is_associative_and_monotone(start: datetime, a: int, b: int) -> None:
    assert calendar.add_working_days(calendar.add_working_days(start, a), b) == calendar.add_working_days(start, a + b)
    if a < b:
        assert calendar.add_working_days(start, a) < calendar.add_working_days(start, b)


@settings(max_examples=200, deadline=None)
@given(instants, counts)
def test_subtracting_undoes_adding_from_a_working_day(start: datetime, n: int) -> None:
    if not calendar.is_working_day(start.date()):
        start = datetime.combine(calendar.next_working_day(start.date()), start.timetz())
    assert local(calendar.subtract_working_days(calendar.add_working_days(start, n), n)) == start


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
       st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)))
def test_counting_is_antisymmetric_and_additive(a: date, b: date) -> None:
    assert calendar.working_days_between(a, b) == -calendar.working_days_between(b, a)
    mid = min(a, b) + (max(a, b) - min(a, b)) / 2
    lo, hi = min(a, b), max(a, b)
    assert calendar.working_days_between(lo, hi) == calendar.working_days_between(lo, mid) + \
        calendar.working_days_between(mid, hi)


@settings(max_examples=150, deadline=None)
@given(instants, st.integers(min_value=0, max_value=60 * 40))
def test_office_time_added_is_office_time_between(start: datetime, minutes: int) -> None:
    amount = timedelta(minutes=minutes)
    end = calendar.add_office_time(start, amount)
    assert calendar.office_time_between(start, end) == amount
    if minutes:
        assert calendar.is_office_hours(end - timedelta(seconds=1))
    assert local(end).time() <= time(17, 30)
