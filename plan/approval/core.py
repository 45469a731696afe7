"""并联审批: service tasks of parallel_approval.bpmn (acceptance, review deadlines, working days used).

The plan (四(二) 项目落地工程 · 提速审批) wants approval 30+ days shorter (缩短30天以上) through
parallel approval (并联审批). The process therefore records, per stage, the working days (工作日,
Chinese holidays and 调休 counted by `engine.deadlines.calendar`) from acceptance (受理) to the joint
certificate (联合出证), against the serial sum of the chosen departments' SLAs: what the same
reviews would take one after another.

Each service runs inside the instance's unit of work (`effects.RunContext`) and returns JSON; the
BPMN service task stores it in its result variable. Time comes from `engine.clock`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine import audit, clock
from engine.deadlines import calendar
from engine.runtime import effects
from engine.tasks.models import HumanTask
from plan.projects import approvals as project_approvals

ACCEPTANCE_MODES = {"accept": "complete", "accept_deferred": "deferred"}  # 受理 / 容缺受理
SUPPLEMENT_TASK = "submit_supplement"  # the applicant's 补正 task in parallel_approval.bpmn
MAX_DEPARTMENTS = 50


def _department(item: object, index: int) -> dict[str, Any]:
    """Check one DMN department entry: {"code": str, "name": str, "sla_wd": int >= 0}.

    Raises: ValueError naming the entry
    """
    if not isinstance(item, Mapping):
        raise ValueError(f"departments[{index}] is not an object: {item!r}")
    code, sla = item.get("code"), item.get("sla_wd")
    if not isinstance(code, str) or not code:
        raise ValueError(f"departments[{index}] has no department code")
    if not isinstance(sla, int) or isinstance(sla, bool) or sla < 0:
        raise ValueError(f"departments[{index}] ({code}) has no SLA in working days (sla_wd)")
    return {"code": code, "name": str(item.get("name") or code), "sla_wd": sla}


def _departments(items: object) -> list[dict[str, Any]]:
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ValueError("no departments to review (does the approval_departments table cover the project?)")
    return [_department(item, i) for i, item in enumerate(items)]


def time_limit_wd(departments: object) -> int:
    """The 并联审批 time limit in working days from acceptance: the slowest chosen department's SLA.

    Raises: ValueError for a department without a code or an SLA, or no departments
    """
    return max(int(d["sla_wd"]) for d in _departments(departments))


def _local_day(at: datetime) -> str:
    return at.astimezone(clock.SHANGHAI).date().isoformat()


@effects.service("approval_accept")
def accept(ctx: effects.RunContext, acceptance: str) -> dict[str, Any]:
    """Record the moment of acceptance (受理), from which the working days used are counted.

    Raises: ValueError for an acceptance that is not 受理 or 容缺受理
    """
    if acceptance not in ACCEPTANCE_MODES:
        raise ValueError(f"acceptance '{acceptance}' is not one of {sorted(ACCEPTANCE_MODES)}")
    now = clock.now()
    return {"accepted_at": now.isoformat(), "accepted_on": _local_day(now), "accepted_by": ctx.actor.username,
            "mode": ACCEPTANCE_MODES[acceptance]}


@effects.service("approval_review_round")
def open_review_round(ctx: effects.RunContext, departments: list[Any], review_round: int) -> list[dict[str, Any]]:
    """Open a review round: each department's deadline is its own SLA in working days from now.

    The result is the multi-instance input of the round; each review task's `due` reads its item.

    Raises: ValueError for a department without a code or an SLA
    """
    now = clock.now()
    opened = []
    for item in _departments(departments):
        due = calendar.add_working_days(now, item["sla_wd"])
        opened.append({**item, "round": review_round, "opened_at": now.isoformat(), "due_at": due.isoformat(),
                       "due_on": _local_day(due)})
    return opened


def _supplement_working_days(ctx: effects.RunContext) -> int:
    """Sum the working days the applicant held 补正 tasks (补正时间不计入审批时限), from the task projection."""
    rows = ctx.session.execute(select(HumanTask.created_at, HumanTask.completed_at).where(
        HumanTask.instance_id == ctx.running.row.id, HumanTask.bpmn_id == SUPPLEMENT_TASK,
        HumanTask.state.in_(("completed", "cancelled"))))  # cancelled: 补正 handed in as a message (portal)
    total = 0
    for created, completed in rows:
        if completed is None:
            continue
        start = clock.as_utc(created).astimezone(clock.SHANGHAI).date()
        end = clock.as_utc(completed).astimezone(clock.SHANGHAI).date()
        total += calendar.working_days_between(start, end)
    return total


@effects.service("approval_working_days")
def working_days(ctx: effects.RunContext, accepted_at: str, departments: list[Any]) -> dict[str, Any]:
    """Count working days from acceptance to the joint certificate (now) against the serial sum of SLAs.

    Days are counted as `calendar.working_days_between` does: the working days after the day of
    acceptance up to and including the day of the certificate (Asia/Shanghai), so a certificate
    issued on the day of acceptance took 0 working days. `working_days_saved` compares the serial
    sum with all the days used; `working_days_net` also leaves out the applicant's 补正 time, as
    审批时限 are counted.

    Raises: ValueError for a bad acceptance time or department list
    """
    items = _departments(departments)
    accepted = clock.as_utc(datetime.fromisoformat(accepted_at))
    now = clock.now()
    accepted_on = accepted.astimezone(clock.SHANGHAI).date()
    certified_on = now.astimezone(clock.SHANGHAI).date()
    used = calendar.working_days_between(accepted_on, certified_on)
    supplement = min(_supplement_working_days(ctx), used)
    serial = sum(d["sla_wd"] for d in items)
    result = {
        "accepted_on": accepted_on.isoformat(),
        "certified_on": certified_on.isoformat(),
        "calendar_days": (certified_on - accepted_on).days,
        "working_days_used": used,
        "supplement_wd": supplement,  # held by the applicant for 补正
        "working_days_net": used - supplement,
        "sla_serial_wd": serial,  # 串联审批: each department's SLA one after another
        "sla_parallel_wd": time_limit_wd(items),  # 并联审批 commitment: the slowest department
        "working_days_saved": serial - used,
        "departments": [d["code"] for d in items],
    }
    running = ctx.running
    audit.record(ctx.session, ctx.actor, "approval.working_days", stream=f"instance:{running.row.id}",
                 object_type="process_instance", object_id=running.row.id, after=result)
    # 审批分阶段: the certificate moves the project and starts its next stage (once; plan.projects.approvals)
    chained = project_approvals.certified_in(ctx, result)
    if chained:
        result["project"] = chained
    return result


__all__ = ["MAX_DEPARTMENTS", "accept", "open_review_round", "time_limit_wd", "working_days"]
