"""问题台账's reports: the warning level of an issue (green, yellow, red) and the 周调度 / 月通报 counts per unit."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from engine import clock
from engine.deadlines import calendar
from engine.org.models import OrgUnit
from plan.ledger.core import OPEN_STATES, YELLOW_WORKING_DAYS, deadline
from plan.ledger.models import LedgerIssue


def yellow_until(now: datetime, yellow_working_days: int = YELLOW_WORKING_DAYS) -> datetime:
    """Return the end of the day N working days from now: open issues due by then are yellow."""
    return deadline(calendar.add_working_days(now, yellow_working_days).astimezone(clock.SHANGHAI).date())


def warning_level(issue: LedgerIssue, now: datetime, *, yellow_working_days: int = YELLOW_WORKING_DAYS) -> str:
    """Return green, yellow (due within N working days) or red (overdue); closed for a closed issue."""
    if issue.status == "closed":
        return "closed"
    if issue.due_at is None:
        return "green"
    due = clock.as_utc(issue.due_at)
    if now > due:
        return "red"
    return "yellow" if due <= yellow_until(now, yellow_working_days) else "green"


@dataclass(frozen=True)
class UnitLine:
    """One unit's line of the 周调度 / 月通报 report (unit None: not dispatched yet)."""

    unit_code: str | None
    unit_name: str | None
    registered: int  # new in the period
    closed: int  # closed in the period
    closed_late: int  # of those, after their deadline
    open: int  # open at `now`
    yellow: int
    red: int


def report(session: Session, *, start: datetime, end: datetime, now: datetime,
           yellow_working_days: int = YELLOW_WORKING_DAYS) -> list[UnitLine]:
    """Count issues per responsible unit for a period [start, end) and their state at `now` (one query)."""
    is_open = LedgerIssue.status.in_(OPEN_STATES)
    yellow_at = yellow_until(now, yellow_working_days)

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))
    closed_in = (LedgerIssue.closed_at >= start) & (LedgerIssue.closed_at < end)
    rows = session.execute(
        select(OrgUnit.code, OrgUnit.name,
               count((LedgerIssue.created_at >= start) & (LedgerIssue.created_at < end)),
               count(closed_in), count(closed_in & (LedgerIssue.closed_at > LedgerIssue.due_at)),
               count(is_open), count(is_open & (LedgerIssue.due_at >= now) & (LedgerIssue.due_at <= yellow_at)),
               count(is_open & (LedgerIssue.due_at < now)))
        .select_from(LedgerIssue).outerjoin(OrgUnit, OrgUnit.id == LedgerIssue.unit_id)
        .group_by(OrgUnit.code, OrgUnit.name).order_by(OrgUnit.code)).all()
    lines = [UnitLine(code, name, *(int(n or 0) for n in counts)) for code, name, *counts in rows]
    return [line for line in lines if line.registered or line.closed or line.open]


def weekly_report(session: Session, *, now: datetime) -> list[UnitLine]:
    """周调度: the seven days up to and including today (Asia/Shanghai) per unit, and the state now."""
    today = now.astimezone(clock.SHANGHAI).date()
    start = datetime.combine(today - timedelta(days=6), time(0), tzinfo=clock.SHANGHAI)
    return report(session, start=start, end=start + timedelta(days=7), now=now)


def monthly_report(session: Session, *, year: int, month: int, now: datetime) -> list[UnitLine]:
    """月通报: one calendar month (Asia/Shanghai) per unit."""
    start = datetime(year, month, 1, tzinfo=clock.SHANGHAI)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=clock.SHANGHAI)
    return report(session, start=start, end=end, now=now)


__all__ = ["UnitLine", "monthly_report", "report", "warning_level", "weekly_report", "yellow_until"]
