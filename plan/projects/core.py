"""Project libraries (项目库): leads found in step ⑥, 揭榜挂帅 calls and bids of step ⑦, signing.

Projects move through STAGES 线索 lead → 签约 signed → 开工 started → 竣工 completed → 投产
producing; each stage reached is one ProjectStage row (the day it was reached). Leads and projects
signed through a call go to the 招商引资项目 library (code `investment`, data/seed/libraries.yaml).

揭榜挂帅 (⑦): the calls, bids and the hand-over of a call's lead to the appointed unit live in
`plan.projects.calls` (one loop_call instance per industry chain and period); signing (`sign`) moves the
call's project to `signed` and the call's instance starts its parallel approval.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.db import advisory_lock
from engine.documents import numbering
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, User
from engine.runtime import effects
from plan.indicators.models import Industry
from plan.projects import fields
from plan.projects.lags import STAGE_NAMES
from plan.projects.models import STAGES, Project, ProjectLibrary, ProjectStage

INVESTMENT_LIBRARY = "investment"  # 招商引资项目
CATEGORIES = ("focus", "key", "layout")  # 聚焦突破 / 重点实施 / 加快布局
PROJECT_TYPES = ("industrial", "service", "infrastructure")
FIRST_APPROVAL_STAGE = "land_planning"  # 立项用地规划许可 (0001)
CODE_RULE = "project:XM"  # the numbering sequence (engine.documents.numbering) of project codes XM-<year>-NNNN


class ProjectInputInvalid(InvalidInput):
    """A lead, call or appointment names something that does not exist; nothing was changed."""

    code = "project_input_invalid"


def today() -> date:
    """Return today's date in Asia/Shanghai."""
    return clock.now().astimezone(clock.SHANGHAI).date()


def _library(session: Session, code: str = INVESTMENT_LIBRARY) -> ProjectLibrary:
    lib = session.scalar(select(ProjectLibrary).where(ProjectLibrary.code == code))
    if lib is None:
        raise NotFound(f"项目库不存在 (no project library): {code}; run `jzflow seed`", library=code)
    return lib


def find_industry(session: Session, ref: str | None) -> Industry | None:
    """Return the industry with this code or name (None for an empty reference or no match)."""
    ref = (ref or "").strip()
    if not ref:
        return None
    return session.scalar(select(Industry).where((Industry.code == ref) | (Industry.name == ref)))


def _unit(session: Session, code: str) -> OrgUnit | None:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


def responsible_leader(session: Session, unit_id: int | None) -> str | None:
    """Return the username of a unit's responsible leader (责任领导 / 市级领导包挂), if any."""
    if unit_id is None:
        return None
    return session.scalar(select(User.username).join(OrgUnit, OrgUnit.responsible_leader_id == User.id)
                          .where(OrgUnit.id == unit_id))


def next_code(session: Session, year: int) -> str:
    """Return a new project code XM-<year>-NNNN, after every code of that year (flushes).

    The number comes from the year's sequence row (engine.documents.numbering), locked until the caller's
    transaction ends: two officers entering projects at once get two codes. Codes written without it (an import
    naming its own codes, projects older than the sequence) are stepped over: the number is also past the
    year's highest code, read once the row is held.
    """
    number = numbering.allocate(session, CODE_RULE, year)
    prefix = f"XM-{year}-"
    codes = session.scalars(select(Project.code).where(Project.code.like(f"{prefix}%")))
    highest = max((int(tail) for code in codes if (tail := code.removeprefix(prefix)).isdigit()), default=0)
    if number <= highest:
        number = highest + 1
        numbering.skip_to(session, CODE_RULE, year, number)
    return f"{prefix}{number:04d}"


def lock_codes(session: Session, *codes: str) -> None:
    """Hold project codes until the transaction ends (in sorted order); take them before looking the codes up.

    Two imports naming the same new code at once: the second waits for the first, then finds the project the first
    added and updates it, instead of both finding none and the second's insert hitting uq_project_code (a 500).
    An import takes all of its file's codes at once, so two files naming the same codes in different orders take
    turns instead of deadlocking. A PostgreSQL advisory lock, as there is no row to lock yet (engine.db.advisory_lock).
    """
    advisory_lock(session, *(f"project-code:{code}" for code in codes))


def lock_project(session: Session, project: Project) -> Project:
    """Lock the project's row until the transaction ends and read it again (flushes first).

    Every change to a project's stage, reports or libraries takes this lock before its checks: a second officer
    changing the same project at once waits for the first, then checks against what the first one wrote.
    (On SQLite, BEGIN IMMEDIATE has serialised the writers already.)
    """
    session.flush()
    session.refresh(project, with_for_update=True)
    return project


def lock_projects(session: Session, codes: Iterable[str]) -> None:
    """Lock the rows of the projects with these codes until the transaction ends (in code order) and read them again.

    An import takes them before it compares its preview's `seen` (`plan.projects.imports`): a change to one of them
    being saved at that moment is waited for and then compared, instead of passing unseen and being overwritten.
    """
    session.flush()
    session.scalars(select(Project).where(Project.code.in_(sorted(set(codes)))).order_by(Project.code)
                    .with_for_update().execution_options(populate_existing=True)).all()


def skipped(current: str, stage: str) -> tuple[str, ...]:
    """Return the stages between `current` and `stage` (empty when `stage` comes next, or is not ahead at all)."""
    return STAGES[STAGES.index(current) + 1:STAGES.index(stage)]


def stage_skipped(project: Project, stage: str, missing: tuple[str, ...]) -> InvalidInput:
    """The refusal of a stage recorded ahead of the next one (线索 → 签约 → 开工 → 竣工 → 投产, one at a time)."""
    names = "、".join(STAGE_NAMES[s] for s in missing)
    return InvalidInput(f"项目 {project.code} 处于{STAGE_NAMES[project.stage]}阶段，下一阶段应为{STAGE_NAMES[missing[0]]}，"
                        f"不能跳过{names}直接记{STAGE_NAMES[stage]} (stages move one at a time)", field="stage")


def reach_stage(session: Session, project: Project, stage: str, *, on: date, actor: Actor, note: str = "",
                evidence: str = "", exception: str = "") -> None:
    """Record the day a project reached a stage (ProjectStage) and move it there; a stage is reached once (flushes).

    Stages follow one another (线索 → 签约 → 开工 → 竣工 → 投产): a stage ahead of the next one is refused, unless
    the caller names an `exception` (the 施工许可 certificate of a project whose 签约 was not recorded), which the
    audit event keeps with the stages skipped. A stage recorded after a later one (a call's 签约 after such a
    开工) keeps its day and leaves the project where it is: the stage never goes backwards.

    Raises: InvalidInput (unknown stage, reached already, or ahead of the next one)
    """
    if stage not in STAGES:
        raise InvalidInput(f"未知阶段 (unknown stage): {stage}", field="stage")
    lock_project(session, project)
    if session.scalar(select(ProjectStage.id).where(ProjectStage.project_id == project.id,
                                                    ProjectStage.stage == stage)) is not None:
        raise InvalidInput(f"项目 {project.code} 已处于{stage}阶段 (stage reached already)", field="stage")
    before = project.stage
    missing = skipped(before, stage)
    if missing and not exception:
        raise stage_skipped(project, stage, missing)
    if STAGES.index(stage) > STAGES.index(before):
        project.stage = stage
    session.add(ProjectStage(project_id=project.id, stage=stage, on=on, note=note, recorded_by_id=actor.user_id,
                             evidence=evidence[:300]))
    session.flush()
    session.expire(project, ["stages"])  # the stage line is read again with the new row
    audit.record(session, actor, "project.stage", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"stage": before},
                 after={"stage": stage, "on": on, "note": note, "evidence": evidence[:300],
                        "project_stage": project.stage,
                        **({"skipped": list(missing), "exception": exception} if missing else {})})


# -- ⑥ leads ----------------------------------------------------------------------------------------

def check_leads(session: Session, leads: list[dict[str, Any]]) -> list[str]:
    """Return the problems of a list of leads (unknown industry, no category), empty when fine."""
    problems: list[str] = []
    for n, lead in enumerate(leads, 1):
        ref = (lead.get("industry") or "").strip()
        if ref and find_industry(session, ref) is None:
            problems.append(f"第{n}条线索：产业“{ref}”不存在")
        elif not ref and lead.get("category") not in CATEGORIES:
            problems.append(f"第{n}条线索：请填写产业或类别")
    return problems


LEAD_FIELDS = (("name", lambda v: fields.text(v, "name", required=True, limit=200)),
               ("enterprise", lambda v: fields.text(v, "enterprise", required=True, limit=200)),
               ("investment", fields.amount), ("planned_sign", lambda v: fields.day(v, "planned_sign")))


def check_lead_rows(leads: list[dict[str, Any]]) -> list[str]:
    """Return what 项目录入 would refuse in ⑥'s leads (a blank name, an amount that rounds to nothing, a planned
    date outside the plan's years), each naming the lead and its field; empty when fine."""
    problems: list[str] = []
    for n, lead in enumerate(leads, 1):
        for field, check in LEAD_FIELDS:
            try:
                check(lead.get(field))
            except InvalidInput as exc:
                problems.append(f"第{n}条线索 leads[{n - 1}].{field}：{exc.message}")
    return problems


def add_lead(session: Session, *, actor: Actor, name: str, enterprise: str, investment: Decimal,
             project_type: str = "industrial", industry: str | None = None, category: str | None = None,
             description: str = "", planned_sign: date | None = None, note: str = "") -> Project:
    """Add a lead (线索) to the 招商引资项目 library with its first stage (flushes).

    Raises: ProjectInputInvalid, NotFound (no library)
    """
    problems = check_leads(session, [{"industry": industry, "category": category}])
    if problems:
        english = "no such industry" if (industry or "").strip() else "give an industry or a category"
        raise ProjectInputInvalid(f"{problems[0].removeprefix('第1条线索：')} (industry: {english})", field="industry")
    ind = find_industry(session, industry)
    year = today().year
    project = Project(code=next_code(session, year), name=name.strip()[:200],
                      library_id=_library(session).id, category=ind.category if ind else str(category),
                      industry_id=ind.id if ind else None, investment=Decimal(str(investment)),
                      project_type=project_type, stage="lead", enterprise=enterprise.strip()[:200],
                      responsible_unit_id=ind.lead_unit_id if ind else None, planned_sign=planned_sign,
                      description=description)
    session.add(project)
    session.flush()
    audit.record(session, actor, "project.add", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, after={"code": project.code, "name": project.name, "stage": "lead",
                                              "investment": project.investment, "enterprise": project.enterprise,
                                              "industry": ind.code if ind else None, "category": project.category})
    reach_stage(session, project, "lead", on=today(), actor=actor, note=note)
    return project


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# -- ⑦ signing (the calls themselves: plan.projects.calls) ------------------------------------------

def signed_already(session: Session, project: Project) -> ProjectStage | None:
    """Return the project's recorded 签约 (its `signed` ProjectStage), if any."""
    return session.scalar(select(ProjectStage).where(ProjectStage.project_id == project.id,
                                                     ProjectStage.stage == "signed"))


def sign(session: Session, *, actor: Actor, call: dict[str, Any], project_name: str, enterprise: str,
         investment: Decimal, project_type: str, signed_on: date, note: str = "") -> tuple[Project, bool]:
    """Record the signing (签约) of a call's project: the call's lead, or a new project (flushes).

    Returns the project and whether this report recorded the signing. The appointed unit may have recorded the
    签约 on the project page already (plan.projects.entry.record_stage): the call's report of the same signing is
    then accepted and changes nothing (the page's record, its day and the project's figures stay; the audit event
    `project.sign_reported` keeps what the call reported), instead of being refused and stopping the call's instance
    on an incident. The project's row is locked before it is read or changed (`lock_project`): a 签约 being recorded
    on the page at this moment is waited for and then seen. A project at 开工 whose 签约 was never recorded (a
    施工许可 certificate came first) still gets the call's 签约 (`reach_stage` keeps its day, not its stage).
    """
    project = None
    if call.get("project_code"):
        project = session.scalar(select(Project).where(Project.code == call["project_code"]))
    if project is not None:
        lock_project(session, project)
        if (recorded := signed_already(session, project)) is not None:
            audit.record(session, actor, "project.sign_reported", stream=f"project:{project.id}",
                         object_type="project", object_id=project.id,
                         before={"stage": project.stage, "signed_on": recorded.on},
                         after={"call": call.get("code"), "signed_on": signed_on, "name": project_name.strip()[:200],
                                "enterprise": enterprise.strip()[:200], "investment": investment,
                                "project_type": project_type,
                                "kept": "已签约，保留原签约记录 (signed already: the first record is kept)"})
            return project, False
    ind = find_industry(session, call.get("industry"))
    if project is None:
        project = Project(code=next_code(session, signed_on.year), name=project_name.strip()[:200],
                          library_id=_library(session).id, category=ind.category if ind else "key",
                          industry_id=ind.id if ind else None, investment=investment, project_type=project_type,
                          stage="lead", enterprise=enterprise.strip()[:200],
                          responsible_unit_id=ind.lead_unit_id if ind else None)
        session.add(project)
        session.flush()
        audit.record(session, actor, "project.add", stream=f"project:{project.id}", object_type="project",
                     object_id=project.id, after={"code": project.code, "name": project.name,
                                                  "investment": investment, "call": call.get("code")})
    else:
        before = {"name": project.name, "enterprise": project.enterprise, "investment": project.investment,
                  "project_type": project.project_type}
        project.name, project.enterprise = project_name.strip()[:200], enterprise.strip()[:200]
        project.investment, project.project_type = investment, project_type
        session.flush()
        audit.record(session, actor, "project.update", stream=f"project:{project.id}", object_type="project",
                     object_id=project.id, before=before,
                     after={"name": project.name, "enterprise": project.enterprise, "investment": investment,
                            "project_type": project_type, "call": call.get("code")})
    reach_stage(session, project, "signed", on=signed_on, actor=actor,
                note=note or f"揭榜挂帅 {call.get('code', '')}".strip())
    return project, True


def approval_start_data(project: Project, applicant: str) -> dict[str, Any]:
    """Build parallel_approval's start data (contract 0001) for a signed project."""
    return {"project_code": project.code, "project_name": project.name, "project_type": project.project_type,
            "investment": Decimal(project.investment), "stage": FIRST_APPROVAL_STAGE, "applicant": applicant}


def count_in_stage(session: Session, stage: str, *, year: int, category: str | None = None,
                   until: date | None = None) -> int:
    """Count the projects that reached a stage during a year (e.g. 2025 签约) up to a day, optionally of a category."""
    end = min(until, date(year, 12, 31)) if until else date(year, 12, 31)
    q = (select(func.count(ProjectStage.id)).join(Project, Project.id == ProjectStage.project_id)
         .where(ProjectStage.stage == stage, ProjectStage.on >= date(year, 1, 1), ProjectStage.on <= end))
    if category:
        q = q.where(Project.category == category)
    return int(session.scalar(q) or 0)


# -- service tasks ----------------------------------------------------------------------------------

@effects.service("project_add_lead")
def project_add_lead(ctx: effects.RunContext, leads: list[dict[str, Any]]) -> dict[str, Any]:
    """⑥ Put new leads into the project library at stage `lead`; bad rows send the form back."""
    problems = check_leads(ctx.session, list(leads)) + check_lead_rows(list(leads))
    if problems:
        return {"ok": False, "error": "；".join(problems), "projects": []}
    codes = []
    for lead in leads:
        project = add_lead(ctx.session, actor=ctx.actor, name=str(lead["name"]), enterprise=str(lead["enterprise"]),
                           investment=Decimal(str(lead["investment"])),
                           project_type=str(lead.get("project_type") or "industrial"),
                           industry=lead.get("industry") or None, category=lead.get("category") or None,
                           description=str(lead.get("description") or ""),
                           planned_sign=_as_date(lead.get("planned_sign")))
        codes.append(project.code)
    return {"ok": True, "error": None, "projects": codes}


@effects.service("project_sign")
def project_sign(ctx: effects.RunContext, call: dict[str, Any], project_name: str, enterprise: str,
                 investment: Any, project_type: str, signed_on: str, applicant: str) -> dict[str, Any]:
    """⑦ Signed: the project reaches `signed`; returns parallel_approval's start data (0001) and `already_signed`
    (true when the 签约 had been recorded on the project page: nothing was changed, see `sign`). The call's project
    (its code comes from the process data) is signed only when it is in reach of the person acting
    (plan.projects.acting; after 挂帅 it is the appointed unit's); else refused naming project_code, nothing changed."""
    from plan.projects.acting import require_reach  # here: acting imports this module
    code = str(call.get("project_code") or "")
    target = ctx.session.scalar(select(Project).where(Project.code == code)) if code else None
    if target is not None:  # the call's project: signed only in reach of the one acting
        require_reach(ctx.session, ctx.actor, target)
    signed = _as_date(signed_on) or today()
    project, recorded = sign(ctx.session, actor=ctx.actor, call=dict(call), project_name=project_name,
                             enterprise=enterprise, investment=Decimal(str(investment)), project_type=project_type,
                             signed_on=signed)
    data = approval_start_data(project, applicant)
    # JSON here; the BPMN makes the investment a Decimal again
    return {**data, "investment": str(data["investment"]), "already_signed": not recorded}


__all__ = ["ProjectInputInvalid", "add_lead", "approval_start_data", "check_lead_rows", "check_leads", "count_in_stage",
           "find_industry", "lock_codes", "lock_project", "lock_projects", "next_code", "reach_stage",
           "responsible_leader", "sign", "signed_already", "skipped", "stage_skipped", "today"]
