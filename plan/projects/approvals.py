"""审批分阶段: a project's four approval stages chained, the stage its certificates move it to, days saved.

The national reform splits approval into four stages, one parallel_approval instance each (business key: the
project code, start data contract 0001). Each has a lead department (牵头部门) and a total time limit in
working days (the city's commitment); the departments and their own limits come from the DMN
`approval_departments`. Two paths of the plan (四(二) 提速审批) are stages of their own:
- “标准地”出让 (`land_planning_standard`): land sold with its standards set and the regional assessments done, so
  the first stage needs only the filing and the planning permit; taken instead of `land_planning` for a
  project marked `standard_land`;
- 土石方施工许可 (`earthwork_permit`): 靠前办理施工许可 — earthworks may begin before the full 施工许可; the unit
  applies for it by hand once 工程建设许可 has issued; its certificate is 开工 like the 施工许可's.

Chaining: when a stage's certificate issues (联合出证, then the service approval_working_days), `certified`
records the working days used against the serial sum of the departments' statutory limits (串联 → 并联: the
days saved), moves the project (施工许可 / 土石方施工许可 → 开工; 竣工验收 → a 竣工 report waiting for the
unit's confirmation) and starts the next stage's approval for the same project. Exactly once: one
`project_approval` row per project and stage (unique), checked before starting and guarded by the constraint.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from engine import audit, clock
from engine.audit.models import AuditEvent
from engine.errors import Conflict, InvalidInput
from engine.org.actors import Actor
from engine.runtime import effects, instances, timeline
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks.fixed import Fixed
from engine.tasks.models import HumanTask
from plan.projects.acting import project_in_reach, require_reach
from plan.projects.core import lock_project, reach_stage
from plan.projects.entry import file_report
from plan.projects.models import Project, ProjectApproval, StageReport

PROCESS_KEY = "parallel_approval"
LOOP_KEY = "investment_loop"  # the seven steps: the run an old call's start_process of the first stage was part of


@dataclass(frozen=True)
class Stage:
    code: str
    name: str
    lead_unit: str  # 牵头部门 (org unit code)
    lead_name: str
    limit_wd: int  # total time limit in working days (并联审批承诺时限)


STAGES: dict[str, Stage] = {s.code: s for s in (
    Stage("land_planning", "立项用地规划许可", "zrzyj", "自然资源局", 20),
    Stage("land_planning_standard", "立项用地规划许可（标准地）", "zrzyj", "自然资源局", 7),
    Stage("construction_works", "工程建设许可", "zrzyj", "自然资源局", 15),
    Stage("construction_permit", "施工许可", "zjj", "住房和城乡建设局", 7),
    Stage("earthwork_permit", "土石方施工许可", "zjj", "住房和城乡建设局", 3),
    Stage("completion_acceptance", "竣工验收", "zjj", "住房和城乡建设局", 12),
)}
CHAIN = ("land_planning", "construction_works", "construction_permit", "completion_acceptance")
NEXT = {"land_planning": "construction_works", "land_planning_standard": "construction_works",
        "construction_works": "construction_permit", "construction_permit": "completion_acceptance"}
STARTS = ("construction_permit", "earthwork_permit")  # their certificate is 开工
FIRST_STAGES = ("land_planning", "land_planning_standard")  # one of them begins a project's approvals
BY_HAND = ("land_planning", "land_planning_standard", "earthwork_permit", "construction_works",
           "construction_permit", "completion_acceptance")


def before_start_wd() -> int:
    """Return the working days of the approval stages before 开工 (倒排工期 counts them back from 开工)."""
    return sum(STAGES[s].limit_wd for s in CHAIN[:3])


def first_stage(project: Project) -> str:
    """Return the first approval stage of a project: 标准地 or the ordinary one."""
    return "land_planning_standard" if project.standard_land else "land_planning"


def start_data(project: Project, stage: str, applicant: str) -> dict[str, Any]:
    """Build parallel_approval's start data (contract 0001) for one stage of a project."""
    return {"project_code": project.code, "project_name": project.name, "project_type": project.project_type,
            "investment": Decimal(project.investment), "stage": stage, "applicant": applicant}


def start_stage(session: Session, project: Project, *, stage: str, actor: Actor, applicant: str,
                parent_instance_id: int | None = None) -> ProjectApproval:
    """Start a stage's approval for a project, unless it was started already (then return that one; flushes).

    The project's row is locked first (`lock_project`): the unit starting the stage on the project page while the
    call's instance starts it (`project_start_approval`) waits for the other and then finds its approval, instead of
    failing on the unique row. `parent_instance_id` links the approval to the instance that started it. A project has
    one first stage: the ordinary one or its 标准地 path, whichever was started (even before it had its row).

    Raises: InvalidInput (unknown stage), Conflict (the other first stage was started), ProcessNotFound
    """
    if stage not in STAGES:
        raise InvalidInput(f"未知审批阶段 (unknown approval stage): {stage}", field="stage")
    lock_project(session, project)
    if stage in FIRST_STAGES:
        found = first_stage_of(session, project, actor=actor)
        if found is not None and found.stage != stage:
            raise Conflict(f"项目 {project.code} 已发起{STAGES[found.stage].name}审批，不能再发起{STAGES[stage].name}审批："
                           f"每个项目只办理一个第一阶段审批 (project {project.code} has its first approval stage started "
                           f"already as {found.stage}; a project has one first stage, {stage} is refused)",
                           field="stage", stage=stage, started=found.stage, instance_id=found.instance_id)
    else:
        found = session.scalar(select(ProjectApproval).where(ProjectApproval.project_id == project.id,
                                                             ProjectApproval.stage == stage))
    if found is not None:
        return found
    row = ProjectApproval(project_id=project.id, stage=stage, started_at=clock.now())
    session.add(row)
    session.flush()  # the unique (project, stage) row first: a second start fails here, before any instance
    data = start_data(project, stage, applicant)
    if parent_instance_id is not None:
        data["parent_instance_id"] = parent_instance_id
    instance = instances.start(session, process_key=PROCESS_KEY, actor=actor, data=data, business_key=project.code,
                               title=f"并联审批 {project.name}（{STAGES[stage].name}）"[:300])
    row.instance_id = instance.id
    session.flush()
    audit.record(session, actor, "project.approval_start", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, after={"stage": stage, "instance_id": instance.id, "applicant": applicant})
    return row


def first_stage_of(session: Session, project: Project, *, actor: Actor) -> ProjectApproval | None:
    """Return the project's first-stage approval, linking one started without its row (flushes; lock the project first).

    Before every start went through `start_stage`, a call on loop_call's old version started parallel_approval by
    `start_process` (its row came only with the certificate), and anyone may start one by hand with the project's
    code: such an approval of a first stage, not terminated, is the project's (audit `project.approval_linked`) when
    the investment loop's run started it (`start_root_id`: set only by a start inside an engine run). One started by
    hand is an application naming the code, no department has looked at yet: taken as the project's, it would
    block the unit's own start or stand in for it (it becomes the project's only when certified, `certified`).
    """
    row = session.scalar(select(ProjectApproval).where(ProjectApproval.project_id == project.id,
                                                       ProjectApproval.stage.in_(FIRST_STAGES))
                         .order_by(ProjectApproval.id))
    if row is not None:
        return row
    linked = select(ProjectApproval.instance_id).where(ProjectApproval.instance_id.is_not(None))
    root, root_definition = aliased(ProcessInstance), aliased(ProcessDefinition)
    unlinked = session.execute(
        select(ProcessInstance.id, ProcessInstance.started_at)
        .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
        .join(root, root.id == ProcessInstance.start_root_id)
        .join(root_definition, root_definition.id == root.definition_id)
        .where(ProcessDefinition.key == PROCESS_KEY, ProcessInstance.business_key == project.code,
               root_definition.key == LOOP_KEY, ProcessInstance.status != "terminated",
               ProcessInstance.id.not_in(linked))
        .order_by(ProcessInstance.id)).all()  # as a rule none
    for instance_id, started_at in unlinked:
        after = session.scalar(select(AuditEvent.after).where(AuditEvent.stream == f"instance:{instance_id}",
                                                              AuditEvent.action == "instance.start"))
        stage = str(((after or {}).get("data") or {}).get("stage") or "")
        if stage in FIRST_STAGES:
            row = ProjectApproval(project_id=project.id, stage=stage, instance_id=instance_id, started_at=started_at)
            session.add(row)
            session.flush()
            audit.record(session, actor, "project.approval_linked", stream=f"project:{project.id}",
                         object_type="project", object_id=project.id,
                         after={"stage": stage, "instance_id": instance_id, "found": "without_row"})
            return row
    return None


def _first_stage(ctx: effects.RunContext, project: Project, *, applicant: str, asked: str) -> dict[str, Any]:
    """The call's start of a project's first stage, whichever version of loop_call asks (`asked`: the stage it
    named): the approval the project has (audit `project.approval_linked`), else its first stage started now."""
    lock_project(ctx.session, project)  # a start on the project page at this moment is waited for, then found
    row = first_stage_of(ctx.session, project, actor=ctx.actor)
    started = row is None
    if row is None:
        row = start_stage(ctx.session, project, stage=first_stage(project), actor=ctx.actor, applicant=applicant,
                          parent_instance_id=ctx.running.row.id)
    else:
        audit.record(ctx.session, ctx.actor, "project.approval_linked", stream=f"project:{project.id}",
                     object_type="project", object_id=project.id,
                     after={"stage": row.stage, "instance_id": row.instance_id, "asked_by": ctx.running.row.id,
                            "asked_stage": asked})
    instance = ctx.session.get(ProcessInstance, row.instance_id) if row.instance_id else None
    return {"instance_id": row.instance_id, "status": instance.status if instance else None, "stage": row.stage,
            "started": started}


@effects.service("project_start_approval")
def project_start_approval(ctx: effects.RunContext, project_code: str, applicant: str) -> dict[str, Any]:
    """⑦ Start a signed project's first approval stage (立项用地规划许可, or its 标准地 path) for the call, unless
    one of them was started already (on the project page, say): one approval of the first stage per project, and
    the call's result names it (`started` false when it was there already). The project must be in reach of the
    person whose submission runs the call (plan.projects.acting): the code comes from the process data.

    Raises: ProjectInputInvalid naming project_code (no such project, or out of reach)
    """
    project = project_in_reach(ctx.session, ctx.actor, str(project_code or ""))
    return _first_stage(ctx, project, applicant=applicant, asked=first_stage(project))


def routed_start(ctx: effects.RunContext, data: dict[str, Any], _business_key: str | None,
                 _title: str | None) -> dict[str, Any] | None:
    """`start_process` of parallel_approval for the first stage of a project in the library (a call still on
    loop_call's version before project_start_approval, or any diagram) goes the way project_start_approval does:
    one first-stage approval per project, and (as there) only for a project in reach of the person acting. Other
    starts (a code not in the library, later stages) start as usual."""
    project = ctx.session.scalar(select(Project).where(Project.code == str(data.get("project_code") or "")))
    asked = str(data.get("stage") or "")
    if project is None or asked not in FIRST_STAGES:
        return None
    require_reach(ctx.session, ctx.actor, project)  # the first stage of a project out of reach: refused
    return _first_stage(ctx, project, applicant=str(data.get("applicant") or ctx.actor.username), asked=asked)


def _row_for(session: Session, project: Project, stage: str, instance_id: int) -> ProjectApproval:
    row = session.scalar(select(ProjectApproval).where(ProjectApproval.instance_id == instance_id))
    if row is None:
        row = session.scalar(select(ProjectApproval).where(ProjectApproval.project_id == project.id,
                                                           ProjectApproval.stage == stage))
    if row is None:  # started elsewhere (the investment loop's start_process, or by hand on the task list)
        row = ProjectApproval(project_id=project.id, stage=stage, instance_id=instance_id, started_at=clock.now())
        session.add(row)
    elif row.instance_id is None:
        row.instance_id = instance_id
    return row


def fixed_on_form(session: Session, task: HumanTask) -> dict[str, Fixed]:
    """The project code and stage of an approval started for its project, fixed on its forms (engine.tasks.fixed).

    The application form (提交并联审批申请) has both as fields, pre-filled: on an approval with its project's row they
    are shown read-only, a field left out takes the project's, and another code or stage is refused naming the field
    (`certified` ignores them anyway: refused, they no longer put another project or stage in the instance's data,
    its task pages, the audit and the reports). An approval started by hand without a row keeps its free form.
    """
    found = session.execute(select(Project.code, ProjectApproval.stage)
                            .join(Project, Project.id == ProjectApproval.project_id)
                            .where(ProjectApproval.instance_id == task.instance_id)).first()
    if found is None:
        return {}
    code, stage = found
    name = STAGES[stage].name if stage in STAGES else stage
    return {"project_code": Fixed(code, f"本审批为项目“{code}”发起，项目代码不能改为其他项目代码 (this approval was started "
                                        f"for project {code}: the project code cannot name another project)"),
            "stage": Fixed(stage, f"本审批为“{name}”阶段发起，审批阶段不能更改 (this approval was started for the "
                                  f"stage {stage}: the stage cannot be changed)")}


def certified(session: Session, *, instance_id: int, data: Mapping[str, Any], days: Mapping[str, Any],
              actor: Actor) -> dict[str, Any]:
    """Record a stage's certificate for its project, move the project, start the next stage (flushes; once).

    `data` is the approval instance's data (project_code, stage, applicant, certificate), `days` the
    result of approval_working_days. Returns what was done (empty when the instance is of no known project).
    An instance with its project's row (started for the project) is that project's stage: the project code and
    stage its applicant typed on the application form do not move another project (or another stage).
    """
    code, stage = str(data.get("project_code") or ""), str(data.get("stage") or "")
    own = session.scalar(select(ProjectApproval).where(ProjectApproval.instance_id == instance_id))
    if own is not None:  # started for its project: certified for it, whatever the application form names
        project = session.get(Project, own.project_id)
        code, stage = (project.code if project is not None else code), own.stage
    else:  # started by hand with a code: the project of that code (it becomes the project's on its certificate)
        project = session.scalar(select(Project).where(Project.code == code))
    if project is None or stage not in STAGES:
        return {}
    lock_project(session, project)  # its stage is read below: an officer may be recording 开工 at this moment
    row = _row_for(session, project, stage, instance_id)
    done: dict[str, Any] = {"project_code": code, "stage": stage}
    if row.certified_on is not None:
        return {**done, "already": True}
    certified_on = date.fromisoformat(str(days.get("certified_on") or clock.now().astimezone(clock.SHANGHAI).date()))
    row.certified_on = certified_on
    row.used_wd, row.serial_wd = int(days.get("working_days_used", 0)), int(days.get("sla_serial_wd", 0))
    row.saved_wd = row.serial_wd - row.used_wd
    issued = data.get("certificate")  # the engine-issued 联合意见书 (approval_issue_certificate)
    number = issued.get("number") if isinstance(issued, Mapping) else data.get("certificate_no")
    evidence = f"{STAGES[stage].name} {number or ''}".strip()
    session.flush()
    if stage in STARTS and project.stage in ("lead", "signed"):
        # the certificate is 开工 even for a project whose 签约 was never recorded: an exception the audit names
        reach_stage(session, project, "started", on=certified_on, actor=actor, evidence=evidence,
                    note=f"{STAGES[stage].name}核发", exception=f"{STAGES[stage].name}核发")
        done["project_stage"] = "started"
    if stage == "completion_acceptance" and project.stage == "started" and session.scalar(
            select(StageReport.id).where(StageReport.project_id == project.id, StageReport.stage == "completed",
                                         StageReport.status != "rejected")) is None:
        file_report(session, project, actor=actor, stage="completed", on=certified_on, evidence=evidence,
                    note="竣工验收合格，待项目单位确认")
        done["project_stage"] = "completed_reported"
    following = NEXT.get(stage)
    if following:
        applicant = str(data.get("applicant") or actor.username)
        nxt = start_stage(session, project, stage=following, actor=actor, applicant=applicant)
        done.update(next_stage=following, next_instance_id=nxt.instance_id)
    audit.record(session, actor, "project.approval_certified", stream=f"project:{project.id}",
                 object_type="project", object_id=project.id,
                 after={"stage": stage, "used_wd": row.used_wd, "serial_wd": row.serial_wd, "saved_wd": row.saved_wd,
                        "next": following})
    return done


def certified_in(ctx: effects.RunContext, days: Mapping[str, Any]) -> dict[str, Any]:
    """`certified` for the running approval instance (called by approval_working_days after 联合出证)."""
    return certified(ctx.session, instance_id=ctx.running.row.id, data=timeline.instance_data(ctx.running),
                     days=days, actor=ctx.actor)


# -- 提速审批缩短30天以上: days saved ----------------------------------------------------------------------

@dataclass(frozen=True)
class StageSaving:
    stage: str
    name: str
    limit_wd: int
    certified: int  # how many certificates
    serial_wd: int  # the serial sum of the departments' statutory limits, over those certificates
    used_wd: int
    saved_wd: int


@dataclass(frozen=True)
class Savings:
    """Working days saved per stage and per project, against serial approval."""

    stages: tuple[StageSaving, ...]
    per_project: dict[int, int]  # project id → working days saved over its certified stages
    goal_wd: int = 30  # 缩短30天以上

    @property
    def total_saved(self) -> int:
        return sum(s.saved_wd for s in self.stages)

    @property
    def projects(self) -> int:
        return len(self.per_project)

    @property
    def reaching_goal(self) -> int:
        return sum(1 for v in self.per_project.values() if v >= self.goal_wd)

    @property
    def average(self) -> Decimal:
        return (Decimal(sum(self.per_project.values())) / len(self.per_project)).quantize(Decimal("0.1")) \
            if self.per_project else Decimal(0)


def savings(session: Session, project_ids: Sequence[int] | None = None) -> Savings:
    """Sum the working days saved by certified stages (all projects, or these)."""
    query = select(ProjectApproval).where(ProjectApproval.certified_on.is_not(None))
    if project_ids is not None:
        query = query.where(ProjectApproval.project_id.in_(list(project_ids) or [-1]))
    rows = list(session.scalars(query))
    per_project: dict[int, int] = {}
    stages = []
    for code, stage in STAGES.items():
        mine = [r for r in rows if r.stage == code]
        stages.append(StageSaving(code, stage.name, stage.limit_wd, len(mine), sum(r.serial_wd or 0 for r in mine),
                                  sum(r.used_wd or 0 for r in mine), sum(r.saved_wd or 0 for r in mine)))
    for r in rows:
        per_project[r.project_id] = per_project.get(r.project_id, 0) + (r.saved_wd or 0)
    return Savings(tuple(stages), per_project)


def project_approvals(session: Session, project_id: int) -> list[ProjectApproval]:
    """Return a project's approval stages in chain order."""
    order = {code: n for n, code in enumerate(STAGES)}
    rows = session.scalars(select(ProjectApproval).where(ProjectApproval.project_id == project_id))
    return sorted(rows, key=lambda r: order.get(r.stage, 99))


__all__ = ["CHAIN", "FIRST_STAGES", "NEXT", "STAGES", "Savings", "Stage", "before_start_wd", "certified", "certified_in",
           "first_stage", "first_stage_of", "fixed_on_form", "project_approvals", "project_start_approval",
           "routed_start", "savings", "start_data", "start_stage"]
