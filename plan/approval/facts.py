"""What a numbered document may state: only what the system recorded, never what a diagram's expressions say.

A document the city issues (联合意见书, 不予许可决定书, 受理通知书, 不予受理决定书) is confirmed at /verify as issued by
its departments. Its service's parameters are process expressions, which a process owner writes: a diagram of three
nodes could name any project, any department and any opinion. So each service checks what it is given against the
instance's records and prints the records:
- the project: the application as its applicant submitted it (the last completed 提交并联审批申请 of the instance, its
  task.complete audit event); on an approval started for a project (its project_approval row) the project's code and
  stage, its name or the name the applicant typed;
- the departments and their opinions: the instance's completed 部门审查 steps, each offered to one department (its
  candidate unit) and completed by a member of it, the decision and opinion as that person submitted them; a
  department's last review stands (补正 rounds);
- the window's decision and reasons: the last completed 一窗受理's submission; the reasons of a 不予许可决定: the
  last completed 出具不予许可决定's.
A parameter that is not what was recorded raises ValueError naming the service and the parameter: the instance goes
to an incident, nothing is numbered.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from engine.audit import anchor as audit_anchor
from engine.audit.models import AuditEvent
from engine.org.models import Membership, OrgUnit
from engine.runtime import effects
from engine.tasks.models import HumanTask, TaskCandidate
from plan.projects.models import Project, ProjectApproval

APPLICATION_TASK = "submit_application"  # 提交并联审批申请 (the applicant's)
WINDOW_TASK = "window_accept"  # 一窗受理
REVIEW_TASK = "department_review"  # 部门审查 (one per department and round)
REJECTION_TASK = "issue_rejection_notice"  # 出具不予许可决定


@dataclass(frozen=True)
class Review:
    """A department's review as recorded: the unit it was offered to, its member's decision and opinion."""

    code: str
    name: str
    decision: str
    opinion: str
    round: str


def refuse(service: str, parameter: str, what: str) -> ValueError:
    """The error a service raises for a parameter no record backs (an incident naming both)."""
    return ValueError(f"{service}: 参数 {parameter} 与系统记录不符，不予出具 ({parameter} is not what the system "
                      f"recorded: {what}; a document states only recorded facts)")


@dataclass(frozen=True)
class Done:
    """A completed step: its row, who completed it, what they submitted."""

    task: HumanTask
    by: int | None
    data: dict[str, Any]


def _submitted(ctx: effects.RunContext, bpmn_id: str) -> list[Done]:
    """The instance's completed steps `bpmn_id` (oldest first) with the data their holders submitted.

    The step this unit of work completes (its row and event written after the run: `Running.completing`) is last.
    """
    instance_id = ctx.running.row.id
    rows = ctx.session.scalars(select(HumanTask).where(
        HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id, HumanTask.kind == "bpmn",
        HumanTask.state == "completed").order_by(HumanTask.completed_at, HumanTask.id)).all()
    stream = f"instance:{instance_id}"
    events = [*ctx.session.scalars(select(AuditEvent).where(AuditEvent.stream == stream,
                                                            AuditEvent.action == "task.complete")
                                   .order_by(AuditEvent.seq)),
              *[ev for ev in audit_anchor.deferred(ctx.session) if ev.stream == stream and ev.action == "task.complete"]]
    data: dict[int, dict[str, Any]] = {}
    for ev in events if rows else []:
        after = ev.after if isinstance(ev.after, Mapping) else {}
        if isinstance(after.get("task_id"), int) and isinstance(after.get("data"), Mapping):
            data[after["task_id"]] = dict(after["data"])
    done = [Done(row, row.completed_by_id, data[row.id]) for row in rows if row.id in data]
    now = ctx.running.completing
    if now is not None and now.task.bpmn_id == bpmn_id and now.task.kind == "bpmn" and now.task.instance_id == instance_id:
        done.append(Done(now.task, ctx.actor.user_id, dict(now.data)))
    return done


def last_submitted(ctx: effects.RunContext, bpmn_id: str) -> dict[str, Any] | None:
    """What the last completed step `bpmn_id` of the instance was submitted with, or None."""
    found = _submitted(ctx, bpmn_id)
    return found[-1].data if found else None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def project(ctx: effects.RunContext, service: str, given: Mapping[str, object]) -> dict[str, str]:
    """The project facts the document prints (project_name, project_code, stage, applicant_unit), as recorded.

    `given` holds the service's parameters; each must be what was recorded (an optional one may be left empty).

    Raises: ValueError naming the first parameter no record backs
    """
    application = last_submitted(ctx, APPLICATION_TASK) or {}
    recorded = {key: _text(application.get(key)) for key in ("project_name", "project_code", "stage", "applicant_unit")}
    names = {recorded["project_name"]} - {""}
    bound = ctx.session.execute(select(Project.name, Project.code, ProjectApproval.stage)
                                .join(Project, Project.id == ProjectApproval.project_id)
                                .where(ProjectApproval.instance_id == ctx.running.row.id)).first()
    if bound is not None:
        names.add(bound.name)
        recorded.update(project_code=bound.code, stage=bound.stage)
    name = _text(given.get("project_name"))
    if not name or name not in names:
        raise refuse(service, "project_name", "no application of this instance names it" if not names else
                     "the application and the project name another")
    for key in ("project_code", "stage", "applicant_unit"):
        value = _text(given.get(key))
        if value and value != recorded[key]:
            raise refuse(service, key, f"the application says {recorded[key]!r}")
        recorded[key] = value and recorded[key]
    return {**recorded, "project_name": name}


def reviews(ctx: effects.RunContext) -> dict[str, Review]:
    """Each department's last review of the instance (code → review), in the order the departments first reviewed.

    Only a 部门审查 offered to one unit and completed by a member of that unit counts: a step a diagram gave to
    anybody else is nobody's review.
    """
    found: dict[str, Review] = {}
    rounds: dict[str, int] = {}
    for done in _submitted(ctx, REVIEW_TASK):
        units = ctx.session.scalars(select(TaskCandidate.org_unit_id).where(
            TaskCandidate.task_id == done.task.id, TaskCandidate.org_unit_id.is_not(None))).all()
        if len(units) != 1 or done.by is None:
            continue
        data = done.data
        member = ctx.session.scalar(select(Membership.id).where(Membership.user_id == done.by,
                                                                Membership.org_unit_id == units[0]).limit(1))
        unit = ctx.session.get(OrgUnit, units[0])
        if member is None or unit is None:
            continue
        rounds[unit.code] = rounds.get(unit.code, 0) + 1
        found[unit.code] = Review(code=unit.code, name=unit.name, decision=_text(data.get("review_decision")),
                                  opinion=_text(data.get("review_opinion")), round=str(rounds[unit.code]))
    return found


def require_reviews(service: str, parameter: str, items: object, recorded: Mapping[str, Review],
                    *, decision: str | None = None) -> list[Review]:
    """The recorded reviews the diagram's `items` name (each its department's last), checked one by one.

    Each item names a department (code) whose last recorded review has the item's decision (or `decision`) and,
    when the item gives one, its opinion as submitted.

    Raises: ValueError naming `parameter` (an item no record backs, or none at all)
    """
    chosen: dict[str, Review] = {}
    for index, item in enumerate(items if isinstance(items, Sequence) and not isinstance(items, str) else []):
        if not isinstance(item, Mapping):
            raise refuse(service, parameter, f"item {index} is not a department's review")
        code = _text(item.get("code"))
        review = recorded.get(code)
        wanted = decision or _text(item.get("decision"))
        if review is None or review.decision != wanted or (
                "opinion" in item and _text(item.get("opinion")) != review.opinion):
            raise refuse(service, parameter, f"item {index} ({code or item.get('name')}) is not its department's "
                                             "last review as its member submitted it")
        chosen[code] = review
    if not chosen:
        raise refuse(service, parameter, "it names no department's recorded review")
    return list(chosen.values())


__all__ = ["Review", "last_submitted", "project", "refuse", "require_reviews", "reviews"]
