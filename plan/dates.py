"""The years a date of the plan may fall in: one rule for project dates, ledger dates, new deadlines, report days
and investment periods. Outside it the calendar arithmetic after a date breaks (9999-12-31 has no month or
escalation step after it; year 1 has no week before it in UTC), so such a date is refused where it is typed."""
from __future__ import annotations

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
