"""七步工作法's periods: one investment_loop instance per month, and the period arithmetic.

A period is a month "YYYY-MM" (Asia/Shanghai). One instance per period (continue-as-new, docs/architecture.md):
`start_period` starts it, idempotently, with business key `investment_loop:YYYY-MM`; a Celery beat
entry calls it monthly. Only the link to the previous period's instance is carried forward.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.db import advisory_lock
from engine.errors import FieldError, FormInvalid, InvalidInput
from engine.org.actors import Actor
from engine.runtime import instances
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan.dates import FIRST_YEAR, YEARS, require_year

PROCESS_KEY = "investment_loop"
# fullmatch, ASCII: `$` would let "2025-08\n" through and `\d` "２０２５-08"; each read as August but stored as sent
PERIOD_PATTERN = re.compile(r"(\d{4})-(0[1-9]|1[0-2])", re.ASCII)


def parse_period(period: str) -> tuple[int, int]:
    """Return (year, month) of a period "YYYY-MM".

    Raises: InvalidInput
    """
    match = PERIOD_PATTERN.fullmatch(period) if isinstance(period, str) else None
    if match is None:
        raise InvalidInput(f"期间格式应为 YYYY-MM (period must be YYYY-MM): {period!r}", field="period")
    year = int(match.group(1))
    require_year(year, field="period", message=f"期间 {period} 超出范围 {YEARS} 年 (period out of range)")
    return year, int(match.group(2))


def period_end(period: str) -> date:
    """Return the last day of a period."""
    year, month = parse_period(period)
    first_next = date(year + (month == 12), month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def period_due(now: datetime) -> str:
    """Return the period a run started at `now` analyses: the previous month (Asia/Shanghai)."""
    local = now.astimezone(clock.SHANGHAI).date().replace(day=1) - timedelta(days=1)
    return f"{local.year:04d}-{local.month:02d}"


def business_key(period: str) -> str:
    """Return the business key of a period's instance."""
    parse_period(period)
    return f"{PROCESS_KEY}:{period}"


# -- the period's instance ------------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodStart:
    instance_id: int
    period: str
    created: bool  # False: the period's instance existed already


def _period_instance(session: Session, key: str) -> ProcessInstance | None:
    return session.scalar(select(ProcessInstance).join(ProcessDefinition,
                                                       ProcessDefinition.id == ProcessInstance.definition_id)
                          .where(ProcessDefinition.key == PROCESS_KEY, ProcessInstance.business_key == key)
                          .order_by(ProcessInstance.id).limit(1))


def start_period(session: Session, period: str, actor: Actor) -> PeriodStart:
    """Start the period's 七步工作法 instance unless it exists (any status): one instance per period (flushes).

    The caller commits. Raises: InvalidInput, ProcessNotFound
    """
    key = business_key(period)
    advisory_lock(session, key)  # two beat runs or a hand start racing: serialise on the key until the commit
    existing = _period_instance(session, key)
    if existing is not None:
        return PeriodStart(existing.id, period, created=False)
    year, month = parse_period(period)
    before = year - (month == 1)  # January 2000 has no month before it within the plan's years
    previous = _period_instance(session, business_key(f"{before:04d}-{(month - 2) % 12 + 1:02d}")) \
        if before >= FIRST_YEAR else None
    data: dict[str, Any] = {"period": period}
    if previous is not None:
        data["previous_instance_id"] = previous.id  # continue-as-new: only the link is carried forward
    row = instances.start(session, process_key=PROCESS_KEY, actor=actor, data=data, business_key=key,
                          title=f"七步工作法 {period}")
    return PeriodStart(row.id, period, created=True)


def start_by_hand(session: Session, actor: Actor, data: dict[str, Any]) -> ProcessInstance:
    """Start the period a person named (start page, API, CLI: `instances.CLIENT_START_ROUTES`) as `start_period` does.

    A period that has its instance already is refused naming `period` and that instance: by hand, as by the beat job,
    a month gets one instance (its business key, title and link to the month before), never a second beside it. So is
    a month not yet begun.
    Raises: FormInvalid, InvalidInput
    """
    period = data.get("period")
    period = period if isinstance(period, str) else ""
    today = clock.now().astimezone(clock.SHANGHAI).date()
    if parse_period(period) > (today.year, today.month):  # a typo (2052-08 for 2025-08) would keep the month for good
        raise FormInvalid([FieldError("period", f"期别 {period} 尚未开始，只能发起本月及以前的期别 (the period has not "
                                                f"begun: at most {today.year:04d}-{today.month:02d})")])
    started = start_period(session, period, actor)
    if not started.created:
        raise FormInvalid([FieldError("period", f"期别 {period} 的七步工作法已发起（实例 {started.instance_id}），每期只有"
                                                f"一个实例 (the period has its instance: {started.instance_id})")])
    row = session.get(ProcessInstance, started.instance_id)
    assert row is not None  # started in this transaction
    return row


__all__ = ["PROCESS_KEY", "PeriodStart", "business_key", "parse_period", "period_due", "period_end", "start_by_hand",
           "start_period"]
