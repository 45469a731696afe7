"""招商线索 page's read model: one lead, as who has it in reach sees it.

Nothing here writes. Who sees a lead is the 问题台账's rule (`plan.projects.views.Reach`): everything for admins,
city leaders and auditors; otherwise leads given to one's units or leader area, and leads one leads or handles. A lead
out of reach is reported exactly like one that does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import NotFound
from engine.org.models import OrgUnit
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from plan.indicators.models import Industry
from plan.leads.models import InvestmentLead
from plan.ledger.views import LogLine, record_of, user_names  # a lead's record reads as an issue's
from plan.projects.models import Project
from plan.projects.views import Reach


@dataclass(frozen=True)
class LeadDetail:
    lead: InvestmentLead
    unit: OrgUnit | None
    industry: str | None
    handler: str | None
    leader: str | None
    dispatcher: str | None
    project: Project | None  # None also when the project is out of reach
    instance: ProcessInstance | None
    open_tasks: list[HumanTask]
    log: list[LogLine]


def sees_lead(reach: Reach, lead: InvestmentLead) -> bool:
    """Tell whether the reach takes in the lead (its unit, or one leads or handles it)."""
    return reach.sees_unit(lead.unit_id) or (
        reach.user_id is not None and reach.user_id in (lead.responsible_leader_id, lead.handler_id))


def visible_lead(session: Session, reach: Reach, lead_id: int) -> InvestmentLead:
    """Return a lead in reach.

    Raises: NotFound (also for a lead out of reach: its existence is not told)
    """
    lead = session.get(InvestmentLead, lead_id)
    if lead is None or not sees_lead(reach, lead):
        raise NotFound(f"招商线索不存在 (no such lead): {lead_id}", lead_id=lead_id)
    return lead


def lead_detail(session: Session, reach: Reach, lead_id: int) -> LeadDetail:
    """Return a lead's fields, its instance and open tasks, and its record.

    Raises: NotFound
    """
    lead = visible_lead(session, reach, lead_id)
    names = user_names(session, {lead.handler_id, lead.responsible_leader_id, lead.dispatched_by_id})
    log = record_of(session, f"investment_lead:{lead.id}")
    instance = session.get(ProcessInstance, lead.instance_id) if lead.instance_id else None
    open_tasks = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                              HumanTask.state == "ready").order_by(HumanTask.id))) \
        if instance is not None else []
    project = session.get(Project, lead.project_id) if lead.project_id else None
    industry = session.get(Industry, lead.industry_id) if lead.industry_id else None
    return LeadDetail(lead, session.get(OrgUnit, lead.unit_id) if lead.unit_id else None,
                      industry.name if industry else None, names.get(lead.handler_id or -1),
                      names.get(lead.responsible_leader_id or -1), names.get(lead.dispatched_by_id or -1),
                      project if project is not None and reach.sees_project(project) else None, instance, open_tasks,
                      log)


def instance_leads(session: Session, reach: Reach, instance_id: int) -> list[InvestmentLead]:
    """Return the leads in reach an instance drives."""
    return [lead for lead in session.scalars(select(InvestmentLead).where(InvestmentLead.instance_id == instance_id))
            if sees_lead(reach, lead)]


__all__ = ["LeadDetail", "instance_leads", "lead_detail", "sees_lead", "visible_lead"]
