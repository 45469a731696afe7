"""The dashboard's per-unit view (部门, 镇街, 功能区): tasks, overdue items, close-out rate, projects.

- Tasks of a unit: open human tasks (state ready) a unit may claim (a candidate row naming the unit)
  or that a member of the unit holds; overdue when their deadline has passed.
- Issues of a unit: ledger issues given to it (责任单位). Close-out rate (销号率) = of the issues
  registered in the year, those closed ÷ all of them (at most 100 %); on-time rate = closed by their
  deadline ÷ closed.
- Projects: those the unit is responsible for or that are located in it (a town's own projects).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.errors import NotFound
from engine.org.models import Membership, OrgUnit
from engine.tasks.models import HumanTask, TaskCandidate
from plan.dashboard.scope import Scope
from plan.ledger import OPEN_STATES
from plan.ledger.models import LedgerIssue
from plan.projects.lags import Lag, lag_of
from plan.projects.models import Project


@dataclass(frozen=True)
class UnitFigures:
    """One unit's counts (the units table and the head of a unit's page)."""

    unit: OrgUnit
    tasks_open: int
    tasks_overdue: int
    issues_total: int  # registered this year
    issues_open: int
    issues_overdue: int
    issues_closed: int  # of those, closed
    issues_closed_on_time: int
    projects: int

    @property
    def close_rate(self) -> Decimal | None:
        return _rate(self.issues_closed, self.issues_total)

    @property
    def on_time_rate(self) -> Decimal | None:
        return _rate(self.issues_closed_on_time, self.issues_closed)


def _rate(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _year_start(now: datetime) -> datetime:
    local = now.astimezone(clock.SHANGHAI)
    return datetime(local.year, 1, 1, tzinfo=clock.SHANGHAI)


def _members(session: Session, unit_ids: list[int]) -> dict[int, set[int]]:
    members: dict[int, set[int]] = defaultdict(set)
    for unit_id, user_id in session.execute(select(Membership.org_unit_id, Membership.user_id)
                                            .where(Membership.org_unit_id.in_(unit_ids or [-1]))):
        if unit_id is not None:
            members[unit_id].add(user_id)
    return members


def _open_tasks(session: Session, unit_ids: list[int]) -> dict[int, list[HumanTask]]:
    """Open tasks per unit: claimable by the unit, or held by one of its members."""
    members = _members(session, unit_ids)
    everyone = {u for ids in members.values() for u in ids}
    tasks = session.scalars(select(HumanTask).where(HumanTask.state == "ready", or_(
        HumanTask.id.in_(select(TaskCandidate.task_id).where(TaskCandidate.org_unit_id.in_(unit_ids or [-1]))),
        HumanTask.assignee_id.in_(everyone or {-1}))).order_by(HumanTask.due_at.is_(None), HumanTask.due_at,
                                                               HumanTask.id)).all()
    candidates: dict[int, set[int]] = defaultdict(set)
    for task_id, unit_id in session.execute(select(TaskCandidate.task_id, TaskCandidate.org_unit_id).where(
            TaskCandidate.task_id.in_([t.id for t in tasks] or [-1]), TaskCandidate.org_unit_id.is_not(None))):
        if unit_id is not None:
            candidates[task_id].add(unit_id)
    per_unit: dict[int, list[HumanTask]] = defaultdict(list)
    for task in tasks:
        for unit_id in unit_ids:
            if unit_id in candidates[task.id] or (task.assignee_id is not None and task.assignee_id in members[unit_id]):
                per_unit[unit_id].append(task)
    return per_unit


def _overdue(due: datetime | None, now: datetime) -> bool:
    return due is not None and clock.as_utc(due) < now


def figures(session: Session, *, scope: Scope, now: datetime, units: list[OrgUnit] | None = None) -> list[UnitFigures]:
    """Return the counts of every unit the scope may see (or of the given units), by kind and code."""
    if units is None:
        units = [u for u in session.scalars(select(OrgUnit).order_by(OrgUnit.kind, OrgUnit.code))
                 if scope.sees_unit(u.id)]
    ids = [u.id for u in units]
    tasks = _open_tasks(session, ids)
    start = _year_start(now)
    issues = session.execute(select(LedgerIssue.unit_id, LedgerIssue.status, LedgerIssue.due_at, LedgerIssue.closed_at,
                                    LedgerIssue.created_at).where(LedgerIssue.unit_id.in_(ids or [-1]))).all()
    projects: dict[int, int] = {unit_id: int(n) for unit_id, n in session.execute(
        select(OrgUnit.id, func.count(Project.id)).join(
            Project, or_(Project.responsible_unit_id == OrgUnit.id, Project.location_unit_id == OrgUnit.id))
        .where(OrgUnit.id.in_(ids or [-1])).group_by(OrgUnit.id))}
    result = []
    for unit in units:
        mine = [i for i in issues if i.unit_id == unit.id]
        this_year = [i for i in mine if clock.as_utc(i.created_at) >= start]
        # of this year's issues, those closed: one from last year closed now is in neither count (never past 100 %)
        closed = [i for i in this_year if i.status == "closed" and i.closed_at is not None]
        open_ = [i for i in mine if i.status in OPEN_STATES]
        result.append(UnitFigures(
            unit=unit, tasks_open=len(tasks[unit.id]),
            tasks_overdue=sum(1 for t in tasks[unit.id] if _overdue(t.due_at, now)),
            issues_total=len(this_year),
            issues_open=len(open_), issues_overdue=sum(1 for i in open_ if _overdue(i.due_at, now)),
            issues_closed=len(closed),
            issues_closed_on_time=sum(1 for i in closed if i.due_at is None
                                      or clock.as_utc(i.closed_at) <= clock.as_utc(i.due_at)),
            projects=int(projects.get(unit.id, 0))))
    return result


@dataclass(frozen=True)
class UnitView:
    figures: UnitFigures
    tasks: list[HumanTask]
    issues: list[LedgerIssue]
    projects: list[tuple[Project, Lag | None]]


def unit_view(session: Session, *, code: str, scope: Scope, now: datetime) -> UnitView:
    """One unit's page: its open tasks, open issues (overdue first), projects with their lags.

    Raises: NotFound (also for a unit out of scope: its existence is not told)
    """
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is None or not scope.sees_unit(unit.id):
        raise NotFound(f"单位不存在 (no such unit): {code}", code=code)
    counts = figures(session, scope=scope, now=now, units=[unit])[0]
    tasks = _open_tasks(session, [unit.id])[unit.id]
    issues = list(session.scalars(select(LedgerIssue).where(LedgerIssue.unit_id == unit.id,
                                                            LedgerIssue.status.in_(OPEN_STATES))
                                  .order_by(LedgerIssue.due_at.is_(None), LedgerIssue.due_at, LedgerIssue.id)))
    today = now.astimezone(clock.SHANGHAI).date()
    projects = session.scalars(select(Project).where(or_(Project.responsible_unit_id == unit.id,
                                                         Project.location_unit_id == unit.id))
                               .order_by(Project.code)).all()
    return UnitView(counts, tasks, issues, [(p, lag_of(p, today)) for p in projects])


__all__ = ["UnitFigures", "UnitView", "figures", "unit_view"]
