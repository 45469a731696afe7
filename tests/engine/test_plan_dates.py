"""One year range for every date of the plan (plan.dates): each caller refuses a year outside 2000–2100 naming its
own field, with its own message, and takes the last year."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from engine.errors import InvalidInput
from plan.investment.periods import parse_period
from plan.ledger.core import _date as ledger_date
from plan.projects.fields import day as project_day
from plan.reports.core import period as report_period
from plan.supervision.actions import _new_deadline

NOW = datetime(2025, 3, 1, tzinfo=UTC)
CALLERS: list[tuple[Callable[[int], Any], str, str]] = [
    (lambda y: project_day(f"{y}-06-01", "planned_start"), "planned_start", "日期超出范围 (date out of range)"),
    (lambda y: ledger_date(f"{y}-06-01", "due_on"), "due_on", "due_on 超出范围 2000–2100 年 (date out of range)"),
    (lambda y: _new_deadline(date(y, 6, 1), NOW), "due_date", "超出范围 2000–2100 年 (date out of range)"),
    (lambda y: report_period("monthly", date(y, 6, 1)), "day", "超出范围 2000–2100 年 (day out of range)"),
    (lambda y: parse_period(f"{y}-06"), "period", "超出范围 2000–2100 年 (period out of range)"),
]


@pytest.mark.parametrize(("call", "field", "message"), CALLERS, ids=["project", "ledger", "deadline", "report",
                                                                      "period"])
def test_each_caller_refuses_a_year_outside_the_range_naming_its_field(call: Callable[[int], Any], field: str,
                                                                      message: str) -> None:
    for year in (1999, 2101):
        with pytest.raises(InvalidInput) as refused:
            call(year)
        assert refused.value.details.get("field") == field
        assert message in refused.value.message
    call(2100)  # the last year is in (the first one too, but a deadline in 2000 is in the past)
