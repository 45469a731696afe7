"""项目录入: a unit enters its projects, stages and planned dates; libraries, 包挂 leader, 要素保障 needs.

Who may change a project: admins, and members of the project's responsible unit (责任单位) or the unit it is
located in (所在单位). Everyone else — another unit, a leader who only sees it, an auditor — is refused
(Forbidden) before the input is looked at.

Stages move forward only, one at a time (签约 → 开工 → 竣工 → 投产: a form or an import row that skips one is
refused naming the stage), each with its day and evidence (证明材料: a contract, a permit number…), a day not
before the stage reached before it. 签约 and 开工 are recorded by the unit (开工 also by the 施工许可 /
土石方施工许可 certificate, `plan.projects.approvals`); 竣工 and 投产 are reported by the unit and count only once
a second person (another member of the unit, the 包挂 leader or an admin) confirms the report. A 投产 report may
wait together with the 竣工 report before it (a finished project entered after the fact) and is confirmed after
it. Two officers confirming at once: one confirms, the other is told it was confirmed already (a conditional UPDATE).
A stage recorded by mistake is corrected by an administrator only, who moves the project back with the reason
(`move_back`, audited with what it withdraws).

Every change locks the project's row first (`lock_project`) and checks after it: two officers recording a stage,
reporting 竣工 or choosing libraries at once are served one after the other, the second told what the first did.

Planned dates (签约 → 开工 → 竣工 → 投产) must be in that order; a date out of order is refused naming its field.
Services flush; the caller commits.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import Forbidden, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import Membership, OrgUnit, Role, User
from plan.projects.core import (
    CATEGORIES,
    PROJECT_TYPES,
    find_industry,
    lock_codes,
    lock_project,
    next_code,
    reach_stage,
    skipped,
    stage_skipped,
    today,
)
from plan.projects.fields import PLANNED_FIELDS, PLANNED_NAMES, amount, check_planned, day, text
from plan.projects.lags import STAGE_NAMES
from plan.projects.models import (
    STAGES,
    LibraryMember,
    Project,
    ProjectLibrary,
    ProjectStage,
    StageReport,
)
from plan.stale import require_fresh, version

CONFIRMED = ("completed", "producing")  # 竣工、投产: reported by the unit, confirmed by a second person
LEADER_ROLE = "city_leader"  # 市级领导包挂项目


class ProjectForbidden(Forbidden):
    """The actor may not change this project."""

    code = "project_forbidden"


ENTRY_ROLES = ("data_officer", "investment_officer")  # 数据监测 and 招商 staff of a unit enter its projects


def may_enter(session: Session, actor: Actor) -> bool:
    """Tell whether the actor may enter or import projects at all (each project's unit is checked again)."""
    if actor.is_admin or actor.is_system:
        return True
    return bool(actor.org_unit_ids) and bool(actor.role_codes & set(ENTRY_ROLES))


def require_enter(session: Session, actor: Actor) -> None:
    """Raises: ProjectForbidden unless the actor is a unit's data or investment officer (or an admin)."""
    if not may_enter(session, actor):
        raise ProjectForbidden("只有单位的数据监测或招商人员可以录入、导入项目 (only a unit's data officers enter projects)")


def may_edit(project: Project, actor: Actor) -> bool:
    """Tell whether the actor may change the project (admins, members of its responsible or location unit)."""
    if actor.is_admin or actor.is_system:
        return True
    units = {project.responsible_unit_id, project.location_unit_id} - {None}
    return bool(units & actor.org_unit_ids)


def require_edit(project: Project, actor: Actor) -> None:
    """Raises: ProjectForbidden unless the actor may change the project."""
    if not may_edit(project, actor):
        raise ProjectForbidden(f"只有项目责任单位可以修改项目 {project.code} (only the project's own unit may change it)")


def get_project(session: Session, project_id: int, *, lock: bool = False) -> Project:
    """Return a project by id. Raises: NotFound"""
    query = select(Project).where(Project.id == project_id)
    project = session.scalar(query.with_for_update() if lock else query)
    if project is None:
        raise NotFound("项目不存在 (no such project)", project_id=project_id)
    return project


def _unit(session: Session, code: str, field: str) -> OrgUnit:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is None:
        raise InvalidInput(f"单位“{code}”不存在 (no such unit)", field=field)
    return unit


def libraries_named(session: Session, codes: Iterable[str]) -> list[ProjectLibrary]:
    """Return the libraries with these codes, in order. Raises: InvalidInput (an unknown code, or none)"""
    wanted = [c for c in dict.fromkeys(c.strip() for c in codes) if c]
    found = {lib.code: lib for lib in session.scalars(select(ProjectLibrary).where(ProjectLibrary.code.in_(wanted)))}
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise InvalidInput(f"项目库“{unknown[0]}”不存在 (no such library)", field="libraries")
    if not wanted:
        raise InvalidInput("请至少选择一个项目库 (choose at least one library)", field="libraries")
    return [found[c] for c in wanted]


def city_leader(session: Session, username: str) -> User:
    """Return the active 市级领导 with this username. Raises: InvalidInput"""
    user = session.scalar(select(User).join(Membership, Membership.user_id == User.id)
                          .join(Role, Role.id == Membership.role_id)
                          .where(User.username == username, Role.code == LEADER_ROLE, User.is_active.is_(True)))
    if user is None:
        raise InvalidInput(f"“{username}”不是市级领导 (not a city leader)", field="leader")
    return user


# -- a project -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectInput:
    """What a unit enters for a project (form or a row of an import)."""

    name: str
    enterprise: str
    investment: Decimal
    project_type: str
    unit_code: str
    location_code: str
    libraries: tuple[str, ...]
    industry: str = ""
    category: str = ""
    leader: str = ""
    standard_land: bool = False
    description: str = ""
    planned: tuple[tuple[str, date | None], ...] = ()


def read_input(values: Mapping[str, Any]) -> ProjectInput:
    """Check a project's fields from a form or an import row. Raises: InvalidInput naming the field"""
    project_type = text(values.get("project_type") or "industrial", "project_type", limit=20)
    if project_type not in PROJECT_TYPES:
        raise InvalidInput(f"项目类型应为 {'/'.join(PROJECT_TYPES)} (unknown project type)", field="project_type")
    category = text(values.get("category"), "category", limit=20)
    if category and category not in CATEGORIES:
        raise InvalidInput(f"类别应为 {'/'.join(CATEGORIES)} (unknown category)", field="category")
    raw_libs = values.get("libraries") or ""
    libs = raw_libs if isinstance(raw_libs, list | tuple) else str(raw_libs).replace("，", ",").split(",")
    planned = {f: day(values.get(f), f) for f in PLANNED_FIELDS}
    check_planned(planned)
    return ProjectInput(
        name=text(values.get("name"), "name", required=True, limit=200),
        enterprise=text(values.get("enterprise"), "enterprise", limit=200),
        investment=amount(values.get("investment")), project_type=project_type,
        unit_code=text(values.get("unit_code"), "unit_code", required=True, limit=60),
        location_code=text(values.get("location_code") or values.get("unit_code"), "location_code", limit=60),
        libraries=tuple(str(c).strip() for c in libs if str(c).strip()),
        industry=text(values.get("industry"), "industry", limit=60), category=category,
        leader=text(values.get("leader"), "leader", limit=60),
        standard_land=str(values.get("standard_land") or "").strip().lower() in ("1", "true", "yes", "on", "是"),
        description=text(values.get("description"), "description"), planned=tuple(planned.items()))


def create_project(session: Session, *, actor: Actor, data: ProjectInput, code: str | None = None,
                   created_on: date | None = None, lock: bool = True) -> Project:
    """Add a project (stage 线索 on `created_on`) to its libraries; the actor must belong to its unit (flushes).

    `lock=False`: the caller holds the code's lock already (an import takes its file's codes up front) or, in a
    preview that is rolled back, takes none.

    Raises: ProjectForbidden, InvalidInput
    """
    require_enter(session, actor)
    unit = _unit(session, data.unit_code, "unit_code")
    location = _unit(session, data.location_code or data.unit_code, "location_code")
    if not (actor.is_admin or actor.is_system or {unit.id, location.id} & actor.org_unit_ids):
        raise ProjectForbidden("只能录入本单位的项目 (you may only enter your own unit's projects)")
    libraries = libraries_named(session, data.libraries)
    industry = find_industry(session, data.industry)
    if data.industry and industry is None:
        raise InvalidInput(f"产业“{data.industry}”不存在 (no such industry)", field="industry")
    category = industry.category if industry else data.category
    if category not in CATEGORIES:
        raise InvalidInput("没有产业时须填类别 (focus/key/layout)", field="category")
    leader = city_leader(session, data.leader) if data.leader else None
    if code is not None and lock:
        lock_codes(session, code)  # the same new code added at once elsewhere: the second finds it taken
    if code is not None and session.scalar(select(Project.id).where(Project.code == code)) is not None:
        raise InvalidInput(f"项目编号 {code} 已存在 (code taken)", field="code")
    on = created_on or today()
    project = Project(code=code or next_code(session, on.year), name=data.name, library_id=libraries[0].id,
                      category=category, industry_id=industry.id if industry else None, investment=data.investment,
                      project_type=data.project_type, stage="lead", enterprise=data.enterprise,
                      responsible_leader_id=leader.id if leader else None, responsible_unit_id=unit.id,
                      location_unit_id=location.id, description=data.description, created_at=clock.now(),
                      standard_land=data.standard_land, **dict(data.planned))
    session.add(project)
    session.flush()
    for lib in libraries:
        session.add(LibraryMember(project_id=project.id, library_id=lib.id, added_by_id=actor.user_id))
    audit.record(session, actor, "project.add", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, after={"code": project.code, "name": project.name, "unit": unit.code,
                                              "location": location.code, "libraries": [lib.code for lib in libraries],
                                              "investment": project.investment, "leader": data.leader or None,
                                              "planned": {f: d for f, d in data.planned}})
    reach_stage(session, project, "lead", on=on, actor=actor, note="录入")
    return project


# -- stages --------------------------------------------------------------------------------------------

def _check_stage(session: Session, project: Project, stage: str, on: date) -> None:
    if stage not in STAGES[1:]:
        raise InvalidInput(f"未知阶段 (unknown stage): {stage}", field="stage")
    if STAGES.index(stage) <= STAGES.index(project.stage):
        raise InvalidInput(f"项目已处于{STAGE_NAMES[project.stage]}阶段，不能再记{STAGE_NAMES[stage]} "
                           "(stages only move forward)", field="stage")
    missing = skipped(project.stage, stage)
    # one stage at a time; only a 投产 report may follow a 竣工 report that waits for its confirmation
    waiting = dict(session.execute(select(StageReport.stage, StageReport.on).where(
        StageReport.project_id == project.id, StageReport.stage.in_(missing), StageReport.status == "reported")).all())
    if set(missing) - set(waiting):
        raise stage_skipped(project, stage, missing)
    last = session.scalar(select(func.max(ProjectStage.on)).where(ProjectStage.project_id == project.id))
    reached = max([d for d in (last, *waiting.values()) if d is not None], default=None)
    if reached is not None and on < reached:
        raise InvalidInput(f"{STAGE_NAMES[stage]}日期 {on} 早于上一阶段日期 {reached} (date out of order)", field="on")
    if on > today():
        raise InvalidInput(f"{STAGE_NAMES[stage]}日期 {on} 晚于今天 (a date in the future)", field="on")


def record_stage(session: Session, project: Project, *, actor: Actor, stage: str, on: date, evidence: str,
                 note: str = "") -> StageReport | None:
    """Record 签约 / 开工 (reached at once) or report 竣工 / 投产 (waits for a second person; flushes).

    Raises: ProjectForbidden, InvalidInput naming the field
    """
    lock_project(session, project)  # checked against the stage another officer may have just recorded
    require_edit(project, actor)
    evidence = text(evidence, "evidence", required=True, limit=300)
    _check_stage(session, project, stage, on)
    if stage not in CONFIRMED:
        reach_stage(session, project, stage, on=on, actor=actor, note=text(note, "note"), evidence=evidence)
        return None
    return file_report(session, project, actor=actor, stage=stage, on=on, evidence=evidence, note=note)


def file_report(session: Session, project: Project, *, actor: Actor, stage: str, on: date, evidence: str,
                note: str = "") -> StageReport:
    """Store a 竣工 / 投产 report waiting for confirmation; a rejected one may be filed again (flushes).

    Raises: InvalidInput (one is waiting already)
    """
    lock_project(session, project)
    report = session.scalar(select(StageReport).where(StageReport.project_id == project.id, StageReport.stage == stage)
                            .execution_options(populate_existing=True))
    if report is not None and report.status != "rejected":
        raise InvalidInput(f"{STAGE_NAMES[stage]}已报送，等待确认 (reported already)", field="stage")
    if report is None:
        report = StageReport(project_id=project.id, stage=stage)
        session.add(report)
    report.on, report.evidence, report.note, report.status = on, evidence, text(note, "note"), "reported"
    report.reported_by_id, report.reported_at, report.decided_by_id, report.decided_at = (
        actor.user_id, clock.now(), None, None)
    session.flush()
    audit.record(session, actor, "project.stage_report", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, after={"stage": stage, "on": on, "evidence": evidence})
    return report


def stage_version(session: Session, project: Project) -> str:
    """The `seen` of the 退回阶段 form (`plan.stale`): the stage line the page showed."""
    return version(project.stage, *session.execute(select(ProjectStage.stage, ProjectStage.on).where(
        ProjectStage.project_id == project.id).order_by(ProjectStage.id)).all())


def move_back(session: Session, project: Project, *, actor: Actor, stage: str, reason: str,
              seen: str | None) -> list[str]:
    """Move a project back to an earlier stage it reached, correcting a stage recorded by mistake (更正误录; flushes).

    Stages otherwise only move forward: only an administrator may, with the reason, audited with the stages
    withdrawn (their days and evidence). The stages after `stage` are withdrawn and their 竣工/投产 reports
    marked 退回, so they count nowhere and may be recorded again, one at a time. Returns the stages withdrawn.

    Raises: ProjectForbidden (not an administrator), InvalidInput naming the field, Conflict (the page is stale)
    """
    if not (actor.is_admin or actor.is_system):
        raise ProjectForbidden("只有系统管理员可以退回项目阶段（更正误录） (only an administrator moves a stage back)")
    lock_project(session, project)
    if stage not in STAGES or STAGES.index(stage) >= STAGES.index(project.stage):
        raise InvalidInput(f"退回到（stage）：只能是{STAGE_NAMES[project.stage]}之前已到达的阶段 (an earlier stage)",
                           field="stage")
    reason = text(reason, "reason", required=True)
    require_fresh(seen, stage_version(session, project), what=f"项目 {project.code} 的阶段", changes=True)
    later = STAGES[STAGES.index(stage) + 1:]
    rows = list(session.scalars(select(ProjectStage).where(ProjectStage.project_id == project.id,
                                                           ProjectStage.stage.in_(later)).order_by(ProjectStage.on)))
    withdrawn = [{"stage": r.stage, "on": r.on, "evidence": r.evidence, "note": r.note} for r in rows]
    before = project.stage
    for row in rows:
        session.delete(row)
    session.execute(update(StageReport).where(StageReport.project_id == project.id, StageReport.stage.in_(later),
                                              StageReport.status != "rejected")
                    .values(status="rejected", decided_by_id=actor.user_id, decided_at=clock.now())
                    .execution_options(synchronize_session=False))
    project.stage = stage
    session.flush()
    session.expire(project, ["stages"])
    audit.record(session, actor, "project.stage_back", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"stage": before, "withdrawn": withdrawn},
                 after={"stage": stage, "reason": reason})
    return [r.stage for r in rows]


def may_confirm(project: Project, report: StageReport, actor: Actor) -> bool:
    """Tell whether the actor may confirm a report: not its reporter; the unit, the 包挂 leader or an admin."""
    if actor.user_id is not None and actor.user_id == report.reported_by_id:
        return False
    return may_edit(project, actor) or (actor.user_id is not None and actor.user_id == project.responsible_leader_id)


def report_version(report: StageReport) -> str:
    """The `seen` of a report's 确认 / 退回 buttons: the report the page showed (one rejected and filed again since keeps
    its row, not what it says)."""
    return version(report.stage, report.on, report.evidence, report.note, report.reported_by_id)


def decide_report(session: Session, project: Project, *, actor: Actor, report_id: int, confirm: bool,
                  note: str = "", seen: str | None = None) -> StageReport:
    """Confirm (the stage is reached on the reported day) or reject a 竣工 / 投产 report, exactly once (flushes).

    `seen`: the `report_version` the page showed; a report filed again since with other content is refused (409).

    Raises: ProjectForbidden (the reporter, or someone outside the unit), InvalidInput (decided already)
    """
    lock_project(session, project)
    report = session.scalar(select(StageReport).where(StageReport.id == report_id,
                                                      StageReport.project_id == project.id)
                            .execution_options(populate_existing=True))
    if report is None:
        raise NotFound("报送不存在 (no such report)", report_id=report_id)
    if not may_confirm(project, report, actor):
        raise ProjectForbidden("须由报送人以外的本单位人员或包挂领导确认 (a second person must confirm)")
    require_fresh(seen, report_version(report), what=f"{STAGE_NAMES[report.stage]}报送", changes=True)
    if confirm and report.status == "reported" and (missing := skipped(project.stage, report.stage)):
        raise stage_skipped(project, report.stage, missing)  # 投产 waits until its 竣工 report is confirmed
    status = "confirmed" if confirm else "rejected"
    done = session.execute(update(StageReport).where(StageReport.id == report.id, StageReport.status == "reported")
                           .values(status=status, decided_by_id=actor.user_id, decided_at=clock.now())
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidInput("该报送已被他人处理 (decided already by someone else)", field="report")
    session.refresh(report)
    if confirm:
        if STAGES.index(report.stage) <= STAGES.index(project.stage):
            raise InvalidInput(f"项目已处于{STAGE_NAMES[project.stage]}阶段 (stage reached already)", field="stage")
        reach_stage(session, project, report.stage, on=report.on, actor=actor, evidence=report.evidence,
                    note=f"{report.note} 确认：{actor.display_name}".strip())
    audit.record(session, actor, "project.stage_decide", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, after={"stage": report.stage, "status": status, "note": note})
    return report


__all__ = [
    "CONFIRMED",
    "ENTRY_ROLES",
    "PLANNED_FIELDS",
    "PLANNED_NAMES",
    "ProjectForbidden",
    "ProjectInput",
    "amount",
    "check_planned",
    "city_leader",
    "create_project",
    "day",
    "decide_report",
    "file_report",
    "get_project",
    "libraries_named",
    "may_confirm",
    "may_edit",
    "may_enter",
    "move_back",
    "read_input",
    "record_stage",
    "report_version",
    "require_edit",
    "require_enter",
    "stage_version",
    "text",
]
