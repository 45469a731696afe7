"""Project libraries (项目库): leads found in step ⑥, 揭榜挂帅 calls and bids of step ⑦, signing.

Projects move through STAGES 线索 lead → 签约 signed → 开工 started → 竣工 completed → 投产
producing; each stage reached is one ProjectStage row (the day it was reached). Leads and projects
signed through a call go to the 招商引资项目 library (code `investment`, data/seed/libraries.yaml).

揭榜挂帅 (⑦): one call (榜单) per industry chain (产业链) and period, code `JB-YYYY-MM-<industry>`; the
period's instance opens them (`open_calls`, all or none) and each runs as its own `loop_call` instance
(business key = the code), so the period ends within its month. Every eligible unit may bid once
(`bid` table, unique per instance, call and unit), each bid stored the moment it is made so that
closing the window (a timer that cancels the open bid tasks) loses none; a leader appoints one
bidder (挂帅, `bid.appointed`) and a date to sign by: the call's lead project (or a new one) goes to
the appointed unit with that date as its planned signing, which the project deadline sweep watches;
the unit follows up until signing; signing moves the project to `signed` and the call's instance
starts its parallel approval.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, User
from engine.runtime import effects, instances
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan.indicators.models import Industry
from plan.projects.models import STAGES, Bid, Project, ProjectLibrary, ProjectStage

INVESTMENT_LIBRARY = "investment"  # 招商引资项目
CATEGORIES = ("focus", "key", "layout")  # 聚焦突破 / 重点实施 / 加快布局
PROJECT_TYPES = ("industrial", "service", "infrastructure")
FIRST_APPROVAL_STAGE = "land_planning"  # 立项用地规划许可 (0001)


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


def next_code(session: Session, prefix: str) -> str:
    """Return the next free project code `<prefix>-NNNN` (e.g. XM-2025-0007)."""
    codes = session.scalars(select(Project.code).where(Project.code.like(f"{prefix}-%"))).all()
    numbers = [int(c.rsplit("-", 1)[1]) for c in codes if c.rsplit("-", 1)[1].isdigit()]
    return f"{prefix}-{max(numbers, default=0) + 1:04d}"


def reach_stage(session: Session, project: Project, stage: str, *, on: date, actor: Actor, note: str = "") -> None:
    """Move a project to a stage and record the day (ProjectStage); a stage is reached once (flushes).

    Raises: InvalidInput (unknown stage or reached already)
    """
    if stage not in STAGES:
        raise InvalidInput(f"未知阶段 (unknown stage): {stage}", field="stage")
    if session.scalar(select(ProjectStage.id).where(ProjectStage.project_id == project.id,
                                                    ProjectStage.stage == stage)) is not None:
        raise InvalidInput(f"项目 {project.code} 已处于{stage}阶段 (stage reached already)", field="stage")
    before = project.stage
    project.stage = stage
    session.add(ProjectStage(project_id=project.id, stage=stage, on=on, note=note, recorded_by_id=actor.user_id))
    session.flush()
    audit.record(session, actor, "project.stage", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"stage": before}, after={"stage": stage, "on": on, "note": note})


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


def add_lead(session: Session, *, actor: Actor, name: str, enterprise: str, investment: Decimal,
             project_type: str = "industrial", industry: str | None = None, category: str | None = None,
             description: str = "", planned_sign: date | None = None, note: str = "") -> Project:
    """Add a lead (线索) to the 招商引资项目 library with its first stage (flushes).

    Raises: ProjectInputInvalid, NotFound (no library)
    """
    problems = check_leads(session, [{"industry": industry, "category": category}])
    if problems:
        raise ProjectInputInvalid(problems[0].removeprefix("第1条线索："), field="industry")
    ind = find_industry(session, industry)
    year = today().year
    project = Project(code=next_code(session, f"XM-{year}"), name=name.strip()[:200],
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


# -- ⑦ 揭榜挂帅 -------------------------------------------------------------------------------------

CALL_PROCESS = "loop_call"  # bpmn/loop_call.bpmn: one instance per call


def call_code(period: str, industry: str) -> str:
    """Return the code of a period's call (榜单) for one industry chain: JB-YYYY-MM-<industry code>."""
    return f"JB-{period}-{industry}"


def calls_of_period(session: Session, period: str) -> list[dict[str, Any]]:
    """Return the calls opened in a period (their loop_call instances), oldest first."""
    rows = session.execute(select(ProcessInstance.id, ProcessInstance.business_key, ProcessInstance.title,
                                  ProcessInstance.status)
                           .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                           .where(ProcessDefinition.key == CALL_PROCESS,
                                  ProcessInstance.business_key.like(f"{call_code(period, '')}%"))
                           .order_by(ProcessInstance.id)).all()
    return [{"code": key, "title": title, "instance_id": iid, "status": status} for iid, key, title, status in rows]


def open_call(session: Session, *, period: str, title: str, industry: str, eligible_units: list[str],
              project_code: str = "", taken: set[str] | None = None) -> dict[str, Any]:
    """Check and describe a call before bidding opens: its code, the units that may bid, who appoints
    (changes nothing: loop_open_calls records and starts the calls once all of them are valid).

    A chain has one call per period: a code in `taken` (this submission) or already opened is refused.
    Units that do not exist are left out (listed in `skipped_units`).
    Raises: ProjectInputInvalid (unknown industry or project, a second call of the chain, no existing unit)
    """
    ind = find_industry(session, industry)
    if ind is None:
        raise ProjectInputInvalid(f"产业“{industry}”不存在", field="industry")
    code = call_code(period, ind.code)
    if code in (taken or set()):
        raise ProjectInputInvalid(f"产业链“{ind.name}”在本次提交中重复：每条产业链每期只发布一个榜单", field="industry")
    if any(c["code"] == code for c in calls_of_period(session, period)):
        raise ProjectInputInvalid(f"产业链“{ind.name}”本期已发布榜单 {code}：每条产业链每期只发布一个榜单",
                                  field="industry")
    if project_code and session.scalar(select(Project.id).where(Project.code == project_code)) is None:
        raise ProjectInputInvalid(f"项目“{project_code}”不在项目库中", field="project_code")
    units = [c for c in dict.fromkeys(eligible_units) if _unit(session, c) is not None]
    if not units:
        raise ProjectInputInvalid("没有可揭榜的单位 (none of the eligible units exists)", field="eligible_units")
    leader = responsible_leader(session, ind.lead_unit_id)
    return {"code": code, "title": title, "industry": ind.code, "category": ind.category,
            "project_code": project_code or "", "bid_units": units,
            "skipped_units": [c for c in eligible_units if c not in units], "leader": leader or "leader"}


def record_bid(session: Session, *, instance_id: int, call: str, unit_code: str, proposal: str,
               actor: Actor) -> Bid:
    """Store a unit's bid (揭榜) the moment it is made; a unit's second bid replaces its proposal (flushes).

    Raises: NotFound (unknown unit)
    """
    unit = _unit(session, unit_code)
    if unit is None:
        raise NotFound(f"单位不存在 (no such unit): {unit_code}", unit_code=unit_code)
    bid = session.scalar(select(Bid).where(Bid.instance_id == instance_id, Bid.call_code == call,
                                           Bid.unit_id == unit.id))
    if bid is None:
        bid = Bid(instance_id=instance_id, call_code=call, unit_id=unit.id, bidder_id=actor.user_id,
                  proposal=proposal, submitted_at=clock.now())
        session.add(bid)
    else:
        bid.proposal, bid.bidder_id, bid.submitted_at = proposal, actor.user_id, clock.now()
    session.flush()
    audit.record(session, actor, "call.bid", stream=f"call:{call}", object_type="bid", object_id=bid.id,
                 after={"unit": unit_code, "bidder": actor.username, "proposal": proposal})
    return bid


def bids_of(session: Session, *, instance_id: int, call: str) -> list[tuple[Bid, OrgUnit, str | None]]:
    """Return a call's bids in the order they came, with unit and bidder username."""
    rows = session.execute(select(Bid, OrgUnit, User.username).join(OrgUnit, OrgUnit.id == Bid.unit_id)
                           .outerjoin(User, User.id == Bid.bidder_id)
                           .where(Bid.instance_id == instance_id, Bid.call_code == call)
                           .order_by(Bid.submitted_at, Bid.id)).all()
    return [(r[0], r[1], r[2]) for r in rows]


def appoint(session: Session, *, instance_id: int, call: str, unit_code: str, actor: Actor) -> Bid:
    """Appoint (挂帅) the bid of one unit; any earlier appointment of the call is withdrawn (flushes).

    Raises: ProjectInputInvalid (the unit did not bid)
    """
    chosen = None
    for bid, unit, _username in bids_of(session, instance_id=instance_id, call=call):
        if unit.code == unit_code:
            chosen = bid
        elif bid.appointed:
            bid.appointed = False
    if chosen is None:
        raise ProjectInputInvalid(f"单位“{unit_code}”未揭榜，不能挂帅", field="appointed_unit")
    chosen.appointed = True
    session.flush()
    audit.record(session, actor, "call.appoint", stream=f"call:{call}", object_type="bid", object_id=chosen.id,
                 after={"unit": unit_code, "appointed_by": actor.username})
    return chosen


def hand_over(session: Session, *, call: dict[str, Any], unit_code: str, sign_by: date, actor: Actor) -> Project:
    """Give the appointed unit the call's project: its lead (or a new lead named after the call), with the
    date to sign by as the planned signing, so that the project deadline sweep follows it up (flushes).

    Raises: ProjectInputInvalid (unknown unit), InvalidInput (the project is past the lead stage)
    """
    unit = _unit(session, unit_code)
    if unit is None:
        raise ProjectInputInvalid(f"单位“{unit_code}”不存在", field="appointed_unit")
    project = None
    if call.get("project_code"):
        project = session.scalar(select(Project).where(Project.code == call["project_code"]))
    if project is None:
        ind = find_industry(session, call.get("industry"))
        project = add_lead(session, actor=actor, name=str(call.get("title") or call.get("code")),
                           enterprise="（待定）", investment=Decimal("0"), industry=ind.code if ind else None,
                           category=None if ind else "key", description=f"揭榜挂帅 {call.get('code', '')}",
                           note=f"揭榜挂帅 {call.get('code', '')} 挂帅后建立")
    elif project.stage != "lead":
        raise InvalidInput(f"项目 {project.code} 已过线索阶段，不能再转交跟进", field="project_code")
    before = {"responsible_unit_id": project.responsible_unit_id, "planned_sign": project.planned_sign}
    project.responsible_unit_id, project.planned_sign = unit.id, sign_by
    session.flush()
    audit.record(session, actor, "project.hand_over", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before=before,
                 after={"responsible_unit": unit.code, "planned_sign": sign_by, "call": call.get("code")})
    return project


def sign(session: Session, *, actor: Actor, call: dict[str, Any], project_name: str, enterprise: str,
         investment: Decimal, project_type: str, signed_on: date, note: str = "") -> Project:
    """Record the signing (签约) of a call's project: the call's lead, or a new project (flushes).

    Raises: InvalidInput (the project was signed already)
    """
    project = None
    if call.get("project_code"):
        project = session.scalar(select(Project).where(Project.code == call["project_code"]))
    ind = find_industry(session, call.get("industry"))
    if project is None:
        project = Project(code=next_code(session, f"XM-{signed_on.year}"), name=project_name.strip()[:200],
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
    return project


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
    problems = check_leads(ctx.session, list(leads))
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


@effects.service("loop_open_calls")
def loop_open_calls(ctx: effects.RunContext, period: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """⑦ Open the submitted calls, one per industry chain, each as its own loop_call instance; any bad call
    (named by its field, e.g. calls[1].industry) opens none and sends the form back."""
    opened: list[tuple[dict[str, Any], dict[str, Any]]] = []
    problems: list[str] = []
    taken: set[str] = set()
    for n, given in enumerate(calls):
        try:
            call = open_call(ctx.session, period=period, title=str(given["call_title"]),
                             industry=str(given["industry"]), eligible_units=list(given["eligible_units"]),
                             project_code=str(given.get("project_code") or ""), taken=taken)
        except ProjectInputInvalid as exc:
            problems.append(f"第{n + 1}个榜单 calls[{n}].{exc.details.get('field', 'industry')}：{exc.message}")
            continue
        taken.add(call["code"])
        opened.append((given, call))
    if problems:
        return {"ok": False, "error": "；".join(problems), "calls": calls_of_period(ctx.session, period)}
    for given, call in opened:
        audit.record(ctx.session, ctx.actor, "call.publish", stream=f"call:{call['code']}", object_type="call",
                     object_id=call["code"], after={"title": call["title"], "industry": call["industry"],
                                                    "units": call["bid_units"], "window": str(given["bid_window"]),
                                                    "project_code": call["project_code"] or None})
        data = {"call": {k: call[k] for k in ("code", "title", "industry", "category", "project_code", "leader")}
                | {"period": period, "description": str(given.get("description") or "")},
                "bid_units": call["bid_units"], "bid_window": str(given["bid_window"])}
        instances.start_process(ctx, CALL_PROCESS, data=data, business_key=call["code"],
                                title=f"揭榜挂帅 {call['code']}《{call['title']}》"[:300])
    return {"ok": True, "error": None, "calls": calls_of_period(ctx.session, period)}


@effects.service("loop_record_bid")
def loop_record_bid(ctx: effects.RunContext, call: str, unit_code: str, proposal: str) -> dict[str, Any]:
    """⑦ Store one unit's bid as soon as it is submitted."""
    bid = record_bid(ctx.session, instance_id=ctx.running.row.id, call=call, unit_code=unit_code,
                     proposal=proposal, actor=ctx.actor)
    return {"id": bid.id, "unit_code": unit_code}


@effects.service("loop_close_bidding")
def loop_close_bidding(ctx: effects.RunContext, call: str) -> dict[str, Any]:
    """⑦ Close bidding (all units answered or the window ended): how many bids, from whom."""
    rows = bids_of(ctx.session, instance_id=ctx.running.row.id, call=call)
    audit.record(ctx.session, ctx.actor, "call.close", stream=f"call:{call}", object_type="call", object_id=call,
                 after={"bids": len(rows), "units": [u.code for _b, u, _n in rows]})
    return {"count": len(rows), "bids": [{"unit_code": u.code, "unit_name": u.name, "bidder": name}
                                         for _b, u, name in rows]}


@effects.service("loop_appoint")
def loop_appoint(ctx: effects.RunContext, call: dict[str, Any], unit_code: str, sign_by: Any = None) -> dict[str, Any]:
    """⑦ Appoint (挂帅) one bidding unit and hand it the call's project with the date to sign by; a unit that
    did not bid, or a project past its lead stage, sends the form back."""
    by = _as_date(sign_by)
    if by is None or by < today():
        return {"ok": False, "error": "签约期限 sign_by 必须是今天或以后的日期", "project_code": ""}
    stage = ctx.session.scalar(select(Project.stage).where(Project.code == call.get("project_code"))) \
        if call.get("project_code") else None
    if stage not in (None, "lead"):
        return {"ok": False, "error": f"项目 {call['project_code']} 已过线索阶段，不能再转交跟进", "project_code": ""}
    try:
        bid = appoint(ctx.session, instance_id=ctx.running.row.id, call=str(call["code"]), unit_code=unit_code,
                      actor=ctx.actor)
    except ProjectInputInvalid as exc:
        return {"ok": False, "error": exc.message, "project_code": ""}
    project = hand_over(ctx.session, call=dict(call), unit_code=unit_code, sign_by=by, actor=ctx.actor)
    bidder = ctx.session.scalar(select(User.username).where(User.id == bid.bidder_id)) if bid.bidder_id else None
    return {"ok": True, "error": None, "unit_code": unit_code, "bidder": bidder, "project_code": project.code,
            "sign_by": by.isoformat()}


@effects.service("project_sign")
def project_sign(ctx: effects.RunContext, call: dict[str, Any], project_name: str, enterprise: str,
                 investment: Any, project_type: str, signed_on: str, applicant: str) -> dict[str, Any]:
    """⑦ Signed: the project reaches `signed`; returns parallel_approval's start data (0001)."""
    signed = _as_date(signed_on) or today()
    project = sign(ctx.session, actor=ctx.actor, call=dict(call), project_name=project_name, enterprise=enterprise,
                   investment=Decimal(str(investment)), project_type=project_type, signed_on=signed)
    data = approval_start_data(project, applicant)
    return {**data, "investment": str(data["investment"])}  # JSON here; the BPMN makes it a Decimal again


__all__ = ["CALL_PROCESS", "add_lead", "appoint", "approval_start_data", "bids_of", "call_code", "calls_of_period",
           "check_leads", "count_in_stage", "find_industry", "hand_over", "next_code", "open_call", "reach_stage",
           "record_bid", "responsible_leader", "sign"]
