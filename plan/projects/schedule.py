"""倒排工期、挂图作战: planned dates counted backward from the planned completion, and the schedule chart.

倒排工期: from the planned 竣工 day, 开工 is `construction_wd` working days earlier and 签约 the approval chain's
working days before that (the sum of the time limits of the approval stages before 开工, `approvals.CHAIN`);
投产 is `produce_wd` working days after 竣工. Working days are the engine's calendar (Chinese holidays and 调休).

挂图作战: every project of a unit or a library as one row — planned 签约 → 开工 → 竣工 → 投产 as bars (前期, 建设,
投产准备), the days each stage was actually reached as marks, and today's line. The web draws it as SVG
from the geometry here (x in days from the chart's first day), so it prints as it shows.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.deadlines import calendar
from engine.errors import InvalidInput
from engine.org.actors import Actor
from plan.dates import YEARS, require_year
from plan.projects import approvals
from plan.projects.edits import set_planned
from plan.projects.lags import STAGE_NAMES, lag_of
from plan.projects.models import LibraryMember, Project

MAX_WD = 2000  # working days: about eight years


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=clock.SHANGHAI)


def _wd(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_WD:
        raise InvalidInput(f"{field}：应为 1–{MAX_WD} 的工作日数 (working days out of range)", field=field)
    return value


@dataclass(frozen=True)
class Backward:
    """The planned dates of 倒排工期."""

    planned_sign: date
    planned_start: date
    planned_complete: date
    planned_produce: date

    def as_dict(self) -> dict[str, date | None]:
        return {"planned_sign": self.planned_sign, "planned_start": self.planned_start,
                "planned_complete": self.planned_complete, "planned_produce": self.planned_produce}


def backward(planned_complete: date, *, construction_wd: int, produce_wd: int,
             approval_wd: int | None = None) -> Backward:
    """Count the planned dates backward from the planned completion, in working days.

    Raises: InvalidInput naming the field
    """
    construction_wd = _wd(construction_wd, "construction_wd")
    produce_wd = _wd(produce_wd, "produce_wd")
    approval_wd = _wd(approval_wd if approval_wd is not None else approvals.before_start_wd(), "approval_wd")
    complete = calendar.previous_working_day(planned_complete) if not calendar.is_working_day(planned_complete) \
        else planned_complete
    start = calendar.subtract_working_days(_at(complete), construction_wd).astimezone(clock.SHANGHAI).date()
    sign = calendar.subtract_working_days(_at(start), approval_wd).astimezone(clock.SHANGHAI).date()
    produce = calendar.add_working_days(_at(complete), produce_wd).astimezone(clock.SHANGHAI).date()
    # counted past the years a plan's date may hold (plan.dates): a page showing it could not be sent back
    for name, value, field in (("计划签约日期", sign, "construction_wd"), ("计划开工日期", start, "construction_wd"),
                               ("计划投产日期", produce, "produce_wd")):
        require_year(value.year, field=field, message=f"倒排工期算出的{name} {value} 不在 {YEARS} 年内，请减少工作日数 "
                                                      f"(the working days carry it out of range)")
    return Backward(sign, start, complete, produce)


def schedule_backward(session: Session, project: Project, *, actor: Actor, planned_complete: date,
                      construction_wd: int, produce_wd: int, seen: str | None) -> Backward:
    """Set a project's planned dates by 倒排工期 (flushes; `seen` as `edits.set_planned`'s).

    Raises: ProjectForbidden, InvalidInput, Conflict
    """
    plan = backward(planned_complete, construction_wd=construction_wd, produce_wd=produce_wd)
    set_planned(session, project, actor=actor, dates=plan.as_dict(), seen=seen)
    return plan


# -- 挂图作战 -------------------------------------------------------------------------------------------

SEGMENTS = (("planned_sign", "planned_start", "前期"), ("planned_start", "planned_complete", "建设"),
            ("planned_complete", "planned_produce", "投产准备"))


@dataclass(frozen=True)
class Bar:
    label: str
    start: date
    end: date
    x: int  # days from the chart's first day
    width: int


@dataclass(frozen=True)
class Mark:
    stage: str
    name: str
    on: date
    x: int
    late: bool  # reached after its planned day


@dataclass(frozen=True)
class GanttRow:
    project: Project
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]
    behind: str | None  # the stage it lags on (对进展缓慢项目自动预警)
    days_late: int


@dataclass(frozen=True)
class Gantt:
    first: date
    last: date
    today_x: int | None
    months: tuple[tuple[int, str], ...]  # x and label of each month's first day
    rows: tuple[GanttRow, ...]

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


PLANNED_OF = {"signed": "planned_sign", "started": "planned_start", "completed": "planned_complete",
              "producing": "planned_produce"}


def gantt(projects: Sequence[Project], today: date) -> Gantt:
    """Lay out the schedule chart of these projects (planned bars, reached marks, today)."""
    days: list[date] = [today]
    for p in projects:
        days += [d for d in (p.planned_sign, p.planned_start, p.planned_complete, p.planned_produce) if d]
        days += [s.on for s in p.stages if s.stage != "lead"]
    first = min(days).replace(day=1)
    end = max(days)
    last = (end.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    rows = []
    for p in projects:
        bars = []
        for begin_f, end_f, label in SEGMENTS:
            begin, finish = getattr(p, begin_f), getattr(p, end_f)
            if begin and finish and finish >= begin:
                bars.append(Bar(label, begin, finish, (begin - first).days, max((finish - begin).days, 1)))
        marks = []
        for s in p.stages:
            if s.stage == "lead":
                continue
            planned = getattr(p, PLANNED_OF[s.stage])
            marks.append(Mark(s.stage, STAGE_NAMES[s.stage], s.on, (s.on - first).days,
                              planned is not None and s.on > planned))
        lag = lag_of(p, today)
        rows.append(GanttRow(p, tuple(bars), tuple(marks), lag.stage if lag else None, lag.days_late if lag else 0))
    months = []
    cursor = first
    while cursor <= last:
        months.append(((cursor - first).days, f"{cursor.year}-{cursor.month:02d}"))
        cursor = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
    return Gantt(first, last, (today - first).days if first <= today <= last else None, tuple(months), tuple(rows))


def projects_of(session: Session, *, unit_id: int | None = None, library_id: int | None = None,
                ids: Sequence[int] | None = None) -> list[Project]:
    """Return the projects of a unit (responsible or located) and/or a library, by planned start then code."""
    query = select(Project)
    if unit_id is not None:
        query = query.where(or_(Project.responsible_unit_id == unit_id, Project.location_unit_id == unit_id))
    if library_id is not None:
        query = query.where(or_(Project.library_id == library_id, Project.id.in_(
            select(LibraryMember.project_id).where(LibraryMember.library_id == library_id))))
    if ids is not None:
        query = query.where(Project.id.in_(list(ids) or [-1]))
    found = list(session.scalars(query.order_by(Project.code)))
    return sorted(found, key=lambda p: (p.planned_start or date.max, p.code))


__all__ = ["Backward", "Gantt", "GanttRow", "backward", "gantt", "projects_of", "schedule_backward"]
