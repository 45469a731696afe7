"""揭榜挂帅 (⑦ 链式招商): one call (榜单) per industry chain (产业链) and period, each its own loop_call instance.

A call's code is `JB-YYYY-MM-<industry>`. The period's investment_loop opens the calls it is given all or
none (`loop_open_calls`: a chain that has a call this period, or twice in one submission, is refused naming
the field `calls[n].industry`) and starts one loop_call instance per call, business key = the code, so the
period's instance ends within its month. Every eligible unit may bid once (`bid` table, unique per instance,
call and unit), each bid stored the moment it is made so that closing the window (a timer that cancels the
open bid tasks) loses none; a leader appoints one bidder (挂帅, `bid.appointed`) with a date to sign by:
`hand_over` gives the appointed unit the call's lead project (or a new lead named after the call) with that
date as its planned signing, which the project deadline sweep (plan.projects.deadlines) watches. The unit
follows up until signing (plan.projects.core.sign), and the call's instance starts the parallel approval.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import InvalidInput, NotFound
from engine.org.actors import SYSTEM, Actor
from engine.org.models import OrgUnit, User
from engine.runtime import effects, instances
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks import fit
from plan.projects.acting import call_step_unfit, project_in_reach
from plan.projects.core import (
    INVESTMENT_LIBRARY,
    ProjectInputInvalid,
    _as_date,
    _unit,
    add_lead,
    find_industry,
    lock_project,
    responsible_leader,
    today,
)
from plan.projects.models import Bid, Project

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
              project_code: str = "", taken: set[str] | None = None, actor: Actor = SYSTEM) -> dict[str, Any]:
    """Check and describe a call before bidding opens: its code, the units that may bid, who appoints
    (changes nothing: loop_open_calls records and starts the calls once all of them are valid).

    A chain has one call per period: a code in `taken` (this submission) or already opened is refused.
    Units that do not exist are left out (listed in `skipped_units`). The target lead (`project_code`) is a lead of
    the 招商引资 library or a project in the publisher's (`actor`'s) reach: 挂帅 hands it over to the appointed unit.
    Raises: ProjectInputInvalid (unknown industry, a project not in the library or out of reach, a second call of the
    chain, no existing unit)
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
    if project_code:  # the 招商引资 library's leads (⑥'s), or a project in the publisher's reach (plan.projects.acting)
        project_in_reach(session, actor, project_code, library=INVESTMENT_LIBRARY)
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

    The project's row is locked before its stage is checked (`lock_project`, as every change to a project): an
    officer recording its 签约 at this moment is waited for, and the signed project is refused, not handed over.

    Raises: ProjectInputInvalid (unknown unit), InvalidInput (the project is past the lead stage)
    """
    unit = _unit(session, unit_code)
    if unit is None:
        raise ProjectInputInvalid(f"单位“{unit_code}”不存在", field="appointed_unit")
    project = None
    if call.get("project_code"):
        project = session.scalar(select(Project).where(Project.code == call["project_code"]))
    if project is not None:
        lock_project(session, project)
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


# -- service tasks ----------------------------------------------------------------------------------

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
                             project_code=str(given.get("project_code") or ""), taken=taken, actor=ctx.actor)
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
                                title=f"揭榜挂帅《{call['title']}》（{period}）"[:300])
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
    lead = ctx.session.scalar(select(Project).where(Project.code == call.get("project_code"))) \
        if call.get("project_code") else None
    if lead is not None:  # locked before its stage is read: a 签约 recorded at this moment sends the form back
        lock_project(ctx.session, lead)
    if lead is not None and lead.stage != "lead":
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

fit.register(CALL_PROCESS, call_step_unfit)  # a call's 跟进签约 goes only to someone who reaches its project

__all__ = ["CALL_PROCESS", "appoint", "bids_of", "call_code", "calls_of_period", "hand_over", "open_call", "record_bid"]
