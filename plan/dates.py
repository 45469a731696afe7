"""The years a date of the plan may fall in: one rule for project dates, ledger dates, new deadlines, report days
and investment periods. Outside it the calendar arithmetic after a date breaks (9999-12-31 has no month or
escalation step after it; year 1 has no week before it in UTC), so such a date is refused where it is typed."""
from __future__ import annotations

from datetime import date

from engine import clock
from engine.errors import InvalidInput

FIRST_YEAR = 2000
LAST_YEAR = 2100
YEARS = f"{FIRST_YEAR}–{LAST_YEAR}"  # as the refusals print the range


def require_year(year: int, *, field: str, message: str) -> None:
    """Refuse a year outside FIRST_YEAR–LAST_YEAR with the caller's message, naming its field.

    Raises: InvalidInput
    """
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidInput(message, field=field)


def today() -> date:
    """Today in the city (Asia/Shanghai)."""
    return clock.now().astimezone(clock.SHANGHAI).date()


def require_not_past(day: date | None, *, field: str, name: str = "期限") -> date | None:
    """Refuse a deadline already past in the city (today is still one), naming its field: kept, a slip of the year made
    the item red at once, told its whole escalation ladder, or fired its timer. Returns the day (None stays None).

    Raises: InvalidInput
    """
    now = today()
    if day is not None and day < now:
        raise InvalidInput(f"{name} {day} 早于今天 {now} ({field}: {day} is before today, {now})", field=field)
    return day
