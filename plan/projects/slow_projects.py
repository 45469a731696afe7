"""对进展缓慢项目自动预警: find projects behind their planned dates and raise a ledger issue for each.

A project lags when the planned date of a stage it has not reached (签约 planned_sign, 开工
planned_start, 竣工 planned_complete, 投产 planned_produce) is before today (Asia/Shanghai); its lag
is the earliest such stage (`lags.lag_of`). For each lagging project `flag_slow_projects` starts
an issue_ledger instance with the contract data of docs/decisions/0001 (source `project`, the
project's responsible unit — else the unit it is located in — as `unit_code`, a due date
DUE_WORKING_DAYS working days ahead), so the issue goes through 派单 → 响应 → 办理 → 销号 like any
other and the responsible unit gets its task.

Idempotent: the instance's business key is `project_lag:<project code>:<stage>`; while an issue of
that key is open (ledger status open and its instance not ended), nothing new is raised. Once it is
closed (销号) and the project is still behind on the same stage, the next run raises a new one. On
PostgreSQL a transaction-level advisory lock serialises two runs; on SQLite transactions are
IMMEDIATE (docs/decisions/0002). Meant for a daily Celery beat job; the caller commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.db import advisory_lock
from engine.deadlines import calendar
from engine.org.actors import Actor
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from plan.ledger import OPEN_STATES
from plan.ledger.models import LedgerIssue
from plan.projects.lags import STAGE_NAMES, Lag, lag_of
from plan.projects.models import Project

PROCESS_KEY = "issue_ledger"
KEY_PREFIX = "project_lag"
DUE_WORKING_DAYS = 10
LIVE = ("running", "suspended", "incident")


def lag_key(project_code: str, stage: str) -> str:
    """Return the business key of the issue raised for a project lagging on a stage."""
    return f"{KEY_PREFIX}:{project_code}:{stage}"


def open_issue_for(session: Session, key: str) -> LedgerIssue | None:
    """Return the open issue raised under a lag key, if any."""
    return session.scalar(select(LedgerIssue).join(ProcessInstance, ProcessInstance.id == LedgerIssue.instance_id)
                          .where(ProcessInstance.business_key == key, ProcessInstance.status.in_(LIVE),
                                 LedgerIssue.status.in_(OPEN_STATES)).limit(1))


def issue_data(session: Session, lag: Lag, now: datetime, reporter: str) -> dict[str, str]:
    """Build issue_ledger's start data (contract 0001) for a lagging project."""
    project = lag.project
    unit_id = project.responsible_unit_id or project.location_unit_id
    unit_code = session.scalar(select(OrgUnit.code).where(OrgUnit.id == unit_id)) if unit_id else None
    stage_now = STAGE_NAMES.get(project.stage, project.stage)
    overdue = "；".join(f"计划{STAGE_NAMES[s]} {d.isoformat()}" for s, d in lag.overdue)
    due = calendar.add_working_days(now, DUE_WORKING_DAYS).astimezone(clock.SHANGHAI).date()
    data = {"title": f"项目进展缓慢：{project.name}未按计划{STAGE_NAMES[lag.stage]}（{project.code}）"[:300],
            "description": (f"项目 {project.code}「{project.name}」当前阶段为{stage_now}，"
                            f"{overdue}，已逾期 {lag.days_late} 天。请责任单位说明原因、提出措施并推进。"
                            "（系统自动预警）"),
            "enterprise": project.enterprise or "", "project_code": project.code, "source": "project",
            "due_date": due.isoformat(), "reporter": reporter}
    if unit_code:
        data["unit_code"] = unit_code
    return data


@dataclass(frozen=True)
class Flagged:
    """A lagging project and the issue that stands for it (new or already open)."""

    project_code: str
    stage: str
    days_late: int
    issue_id: int | None
    instance_id: int | None
    created: bool


def flag_slow_projects(session: Session, now: datetime, actor: Actor) -> list[Flagged]:
    """Raise one ledger issue per lagging project and lag unless one is open already (flushes).

    Returns every lagging project with its issue. Raises: ProcessNotFound (issue_ledger not deployed)
    """
    advisory_lock(session, KEY_PREFIX)
    today = now.astimezone(clock.SHANGHAI).date()
    result = []
    for project in session.scalars(select(Project).where(Project.stage != "producing").order_by(Project.code)):
        lag = lag_of(project, today)
        if lag is None:
            continue
        key = lag_key(project.code, lag.stage)
        issue = open_issue_for(session, key)
        if issue is not None:
            result.append(Flagged(project.code, lag.stage, lag.days_late, issue.id, issue.instance_id, False))
            continue
        row = instances.start(session, process_key=PROCESS_KEY, actor=actor,
                              data=issue_data(session, lag, now, actor.username), business_key=key,
                              title=f"项目进展缓慢：{project.name}"[:300])
        issue = session.scalar(select(LedgerIssue).where(LedgerIssue.instance_id == row.id))
        result.append(Flagged(project.code, lag.stage, lag.days_late, issue.id if issue else None, row.id, True))
    return result


__all__ = ["Flagged", "flag_slow_projects", "lag_key", "open_issue_for"]
