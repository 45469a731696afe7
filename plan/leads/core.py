"""招商线索闭环 (plan line 110 “派单—响应—对接—反馈”; line 178: leads the monitoring platform pushes to units).

The service tasks of bpmn/investment_lead.bpmn. Each keeps the `investment_lead` row in step with the
instance, audits the change on the stream investment_lead:<id>, and returns a snapshot into the variable
`lead` (code, status, unit, handler, due date, and `at`/`by` of the step). Status: registered →
dispatched → accepted | returned (→ dispatched again) → contacting (each 对接 round) → project (a 线索
in the 招商引资项目 library, linked) | dropped (with the reason). A 反馈 that makes a project is done
once: a retry of the step finds the project already linked.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deadlines import calendar
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org.models import OrgUnit, User
from engine.runtime import due_time
from engine.runtime.effects import RunContext, service
from plan.dates import require_not_past
from plan.indicators.models import Industry
from plan.leads.models import SOURCES, InvestmentLead
from plan.projects import core as projects
from plan.projects import fields
from plan.projects.models import Project
from plan.status_moves import Lifecycle

OPEN_STATES = ("registered", "dispatched", "accepted", "returned", "contacting")
TRANSITIONS: dict[str, frozenset[str]] = {  # status → the statuses it may be reached from
    "dispatched": frozenset({"registered", "returned"}),
    "accepted": frozenset({"dispatched"}),
    "returned": frozenset({"dispatched"}),
    "contacting": frozenset({"accepted", "contacting"}),
    "project": frozenset({"contacting"}),
    "dropped": frozenset({"contacting"}),
}
# taken again after 退回 or 撤回 (a dispatch withdrawn, 对接 sent back to 响应), a step may move the lead back to its own
# status from a later one (plan/status_moves.py)
LIFECYCLE = Lifecycle(TRANSITIONS, {"registered": 0, "dispatched": 1, "returned": 2, "accepted": 2, "contacting": 3,
                                    "project": 4, "dropped": 4}, ended=frozenset({"project", "dropped"}))
CONTACT_WAYS = ("meeting", "visit", "video", "phone")
MAX_WORKING_DAYS = 250
MAX_CONTACTS = 100  # 对接 rounds of one lead (each adds to the instance's state)


def _amount(value: Any, field: str) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"{field} 须为数字（万元） (a number)", field=field) from None
    if amount.is_finite() and 0 <= amount < Decimal("1e12"):
        amount = amount.quantize(Decimal("0.01"))  # checked once rounded: 999999999999.995 is past NUMERIC(14, 2)
    if not amount.is_finite() or not 0 <= amount < Decimal("1e12"):
        raise InvalidInput(f"{field} 须为 0 至 1 万亿之间的数字（万元） "
                           f"({field}: a number from 0 to 1 trillion, in units of 10,000 yuan)", field=field)
    return amount


def _unit(session: Session, code: str | None, field: str = "unit_code") -> OrgUnit | None:
    if not code:
        return None
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is None:
        raise InvalidInput(f"单位不存在 (no such unit): {code}", field=field)  # a person's choice: refused, no incident
    return unit


def _username(session: Session, user_id: int | None) -> str | None:
    return session.scalar(select(User.username).where(User.id == user_id)) if user_id else None


def snapshot(session: Session, lead: InvestmentLead, ctx: RunContext) -> dict[str, Any]:
    """The lead as JSON for the task data."""
    unit = session.get(OrgUnit, lead.unit_id) if lead.unit_id else None
    local = clock.as_utc(lead.due_at).astimezone(clock.SHANGHAI).date().isoformat() if lead.due_at else None
    project = session.get(Project, lead.project_id) if lead.project_id else None
    return {"id": lead.id, "code": lead.code, "title": lead.title, "status": lead.status, "contacts": lead.contacts,
            "unit_code": unit.code if unit else None, "unit_name": unit.name if unit else None,
            "handler": _username(session, lead.handler_id), "dispatcher": _username(session, lead.dispatched_by_id),
            "due_at": clock.as_utc(lead.due_at).isoformat() if lead.due_at else None, "due_date": local,
            "project_code": project.code if project else None,
            "at": clock.now().isoformat(), "by": ctx.actor.username, "by_name": ctx.actor.display_name}


def _state(lead: InvestmentLead) -> dict[str, Any]:
    return {"status": lead.status, "unit_id": lead.unit_id, "handler_id": lead.handler_id,
            "due_at": clock.as_utc(lead.due_at).isoformat() if lead.due_at else None, "project_id": lead.project_id}


def _record(ctx: RunContext, lead: InvestmentLead, action: str, before: dict[str, Any] | None,
            **extra: Any) -> dict[str, Any]:
    ctx.session.flush()
    after = _state(lead)
    changed = {k: v for k, v in (before or {}).items() if after.get(k) != v}
    audit.record(ctx.session, ctx.actor, action, stream=f"investment_lead:{lead.id}", object_type="investment_lead",
                 object_id=lead.id, before=changed or None,
                 after={"code": lead.code, "instance_id": lead.instance_id, **after, **extra})
    return snapshot(ctx.session, lead, ctx)


def _own(ctx: RunContext, lead_id: Any) -> InvestmentLead:
    lead = ctx.session.get(InvestmentLead, int(lead_id), with_for_update=True)
    if lead is None:
        raise NotFound(f"招商线索不存在 (no such lead): {lead_id}", lead_id=lead_id)
    if lead.instance_id != ctx.running.row.id:
        raise Forbidden(f"线索 {lead.code} 不属于本流程实例 (not this instance's lead)", lead_id=lead.id)
    return lead


def _move(lead: InvestmentLead, status: str) -> None:
    if not LIFECYCLE.allows(lead.status, status):
        raise Conflict(f"线索 {lead.code} 状态为 {lead.status}，不能转为 {status} (transition not allowed)",
                       lead_id=lead.id, status=lead.status, to=status)
    lead.status = status


# -- service tasks ------------------------------------------------------------------------------

@service("lead_register")
def register(ctx: RunContext, title: str, enterprise: str = "", industry: str | None = None,
             investment: Any = None, source: str = "other", description: str = "",
             unit_code: str | None = None) -> dict[str, Any]:
    """登记: the instance's lead row, coded ZS-<year>-<id> (a repeated step updates it)."""
    session = ctx.session
    if source not in SOURCES:
        raise InvalidInput(f"线索来源 source 须为 {'/'.join(SOURCES)} (source: one of {', '.join(SOURCES)}): "
                           f"{source!r}", field="source")
    ref = fields.text(industry, "industry", limit=60)
    found = projects.find_industry(session, ref) if ref else None
    if ref and found is None:
        raise InvalidInput(f"产业不存在 (no such industry): {ref}", field="industry")
    unit = _unit(session, fields.text(unit_code, "unit_code", limit=80))
    values: dict[str, Any] = dict(
        title=fields.text(title, "title", required=True, limit=300),
        enterprise=fields.text(enterprise, "enterprise", limit=200),
        industry_id=found.id if found else None, investment=_amount(investment, "investment"), source=source,
        description=fields.text(description, "description", limit=4000), unit_id=unit.id if unit else None)
    lead = session.scalar(select(InvestmentLead).where(InvestmentLead.instance_id == ctx.running.row.id))
    before = _state(lead) if lead else None
    if lead is None:
        lead = InvestmentLead(code=f"ZS-new-{uuid4().hex[:24]}", instance_id=ctx.running.row.id, status="registered",
                              created_at=clock.now(), **values)
        session.add(lead)
        session.flush()  # the number comes from the row id: concurrent registrations never collide
        lead.code = f"ZS-{clock.now().astimezone(clock.SHANGHAI).year}-{lead.id:04d}"
    else:
        for key, value in values.items():
            setattr(lead, key, value)
    return _record(ctx, lead, "lead.register", before, title=lead.title, enterprise=lead.enterprise, source=source)


@service("lead_dispatch")
def dispatch(ctx: RunContext, lead_id: int, unit_code: str, deadline_kind: str, due_date: str | None = None,
             working_days: int | None = None, note: str | None = None) -> dict[str, Any]:
    """派单: the unit that contacts the enterprise, and the date it must give its 反馈 by."""
    lead = _own(ctx, lead_id)
    unit = _unit(ctx.session, fields.text(unit_code, "unit_code", required=True, limit=80))
    assert unit is not None
    if deadline_kind == "working_days":
        if not isinstance(working_days, int) or isinstance(working_days, bool) \
                or not 1 <= working_days <= MAX_WORKING_DAYS:
            raise InvalidInput(f"工作日数须为 1–{MAX_WORKING_DAYS} (working days)", field="working_days")
        day = calendar.add_working_days(clock.now(), working_days).astimezone(clock.SHANGHAI).date()
    elif deadline_kind == "date":
        picked = fields.day(due_date, "due_date")
        if picked is None:
            raise InvalidInput("请填写反馈期限 (due_date required)", field="due_date")
        day = require_not_past(picked, field="due_date", name="反馈期限") or picked
    else:
        raise InvalidInput(f"期限方式须为 date 或 working_days (deadline_kind: date or working_days): "
                           f"{deadline_kind!r}", field="deadline_kind")
    before = _state(lead)
    _move(lead, "dispatched")
    lead.unit_id, lead.responsible_leader_id, lead.handler_id = unit.id, unit.responsible_leader_id, None
    lead.dispatched_by_id = ctx.actor.user_id
    lead.due_at = due_time(day)
    return _record(ctx, lead, "lead.dispatch", before, unit_code=unit.code, due_date=day.isoformat(),
                   note=fields.text(note, "dispatch_note", limit=2000))


@service("lead_respond")
def respond(ctx: RunContext, lead_id: int, response: str, reason: str | None = None) -> dict[str, Any]:
    """响应: the unit accepts the lead (the responder becomes its handler) or returns it with the reason."""
    lead = _own(ctx, lead_id)
    before = _state(lead)
    if response == "accept":
        _move(lead, "accepted")
        lead.handler_id = ctx.actor.user_id
        return _record(ctx, lead, "lead.accepted", before)
    if response == "return":
        text = fields.text(reason, "return_reason", required=True, limit=2000)
        _move(lead, "returned")
        lead.handler_id = None
        return _record(ctx, lead, "lead.returned", before, reason=text)
    raise InvalidInput(f"响应须为 accept 或 return (response: accept or return): {response!r}", field="response")


@service("lead_contact")
def contact(ctx: RunContext, lead_id: int, contact_date: str, contact_way: str, summary: str) -> dict[str, Any]:
    """对接: one round of contact with the enterprise (date, way, what was said)."""
    lead = _own(ctx, lead_id)
    day = fields.day(contact_date, "contact_date")
    if day is None:
        raise InvalidInput("请填写对接日期 (contact_date required)", field="contact_date")
    if day > clock.now().astimezone(clock.SHANGHAI).date():
        raise InvalidInput(f"对接日期 {day} 在今天之后 (in the future)", field="contact_date")
    if contact_way not in CONTACT_WAYS:
        raise InvalidInput(f"对接方式须为 {'/'.join(CONTACT_WAYS)} (contact_way: one of "
                           f"{', '.join(CONTACT_WAYS)}): {contact_way!r}", field="contact_way")
    if lead.contacts >= MAX_CONTACTS:
        raise Conflict(f"线索 {lead.code} 已记录 {MAX_CONTACTS} 次对接，请反馈结果 (too many rounds)", lead_id=lead.id)
    before = _state(lead)
    _move(lead, "contacting")
    lead.contacts += 1
    return _record(ctx, lead, "lead.contact", before, contact_date=day.isoformat(), contact_way=contact_way,
                   summary=fields.text(summary, "summary", required=True, limit=4000), round=lead.contacts)


@service("lead_feedback")
def feedback(ctx: RunContext, lead_id: int, outcome: str, project_name: str | None = None,
             investment: Any = None, drop_reason: str | None = None) -> dict[str, Any]:
    """反馈: the lead becomes a project (线索 of the 招商引资项目 library, linked) or ends with the reason."""
    lead = _own(ctx, lead_id)
    before = _state(lead)
    if outcome == "project":
        if lead.project_id is not None:  # the step ran already (a retry): the project exists
            return snapshot(ctx.session, lead, ctx)
        name = fields.text(project_name, "project_name", required=True, limit=200)
        amount = _amount(investment, "investment")
        if amount is None:
            raise InvalidInput("请填写计划投资（万元） (investment required)", field="investment")
        industry = ctx.session.get(Industry, lead.industry_id) if lead.industry_id else None
        project = projects.add_lead(ctx.session, actor=ctx.actor, name=name, enterprise=lead.enterprise,
                                    investment=amount, industry=industry.code if industry else None,
                                    category=None if industry else "key",
                                    description=lead.description, note=f"招商线索 {lead.code} 对接形成")
        if lead.unit_id is not None and project.responsible_unit_id is None:
            project.responsible_unit_id = lead.unit_id
        _move(lead, "project")
        lead.project_id, lead.closed_at = project.id, clock.now()
        lead.outcome_note = name
        return _record(ctx, lead, "lead.project", before, project_code=project.code, investment=amount)
    if outcome == "dropped":
        text = fields.text(drop_reason, "drop_reason", required=True, limit=2000)
        _move(lead, "dropped")
        lead.closed_at, lead.outcome_note = clock.now(), text
        return _record(ctx, lead, "lead.dropped", before, reason=text)
    raise InvalidInput(f"对接结果须为 project 或 dropped (outcome: project or dropped): {outcome!r}", field="outcome")


# -- queries ------------------------------------------------------------------------------------

def list_leads(session: Session, *, status: str | None = None, unit_code: str | None = None,
               open_only: bool = False, limit: int = 200) -> list[InvestmentLead]:
    """Leads, newest first (the 招商线索 list and the reports)."""
    query = select(InvestmentLead).order_by(InvestmentLead.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(InvestmentLead.status == status)
    if open_only:
        query = query.where(InvestmentLead.status.in_(OPEN_STATES))
    if unit_code:
        query = query.join(OrgUnit, OrgUnit.id == InvestmentLead.unit_id).where(OrgUnit.code == unit_code)
    return list(session.scalars(query))


def overdue(session: Session, now: datetime, ids: Sequence[int] | None = None) -> list[InvestmentLead]:
    """Open leads past their 反馈 deadline."""
    query = select(InvestmentLead).where(InvestmentLead.status.in_(OPEN_STATES), InvestmentLead.due_at < now)
    if ids is not None:
        query = query.where(InvestmentLead.id.in_(list(ids)))
    return list(session.scalars(query.order_by(InvestmentLead.due_at)))


__all__ = ["CONTACT_WAYS", "OPEN_STATES", "contact", "dispatch", "feedback", "list_leads", "overdue", "register",
           "respond", "snapshot"]
