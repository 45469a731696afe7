"""A 招商线索 as the deadline sweep sees it: its 反馈 deadline, its unit, handler and leader.

Registered with the engine's deadline sources as object type `lead`, policies under `leads:` in the
escalation file, keyed by the lead's source (来源).
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.deadlines.objects import Deadline, Org, Target
from engine.deadlines.sources import Source
from plan.leads.core import OPEN_STATES
from plan.leads.models import InvestmentLead


def lead_deadline(lead: InvestmentLead) -> Deadline | None:
    """An open lead's deadline (None when closed or not yet dispatched)."""
    if lead.status not in OPEN_STATES or lead.due_at is None:
        return None
    return Deadline(lead.source, lead.unit_id, lead.created_at, lead.due_at)


def lead_deadlines(session: Session, ids: Sequence[int] | None) -> dict[int, Deadline]:
    query = select(InvestmentLead).where(InvestmentLead.status.in_(OPEN_STATES), InvestmentLead.due_at.is_not(None))
    if ids is not None:
        query = query.where(InvestmentLead.id.in_(list(ids)))
    return {x.id: d for x in session.scalars(query) if (d := lead_deadline(x)) is not None}


def lead_targets(session: Session, ids: Sequence[int], org: Org) -> dict[int, Target]:
    found = {}
    for x in session.scalars(select(InvestmentLead).where(InvestmentLead.id.in_(ids))
                             .execution_options(populate_existing=True)):
        deadline = lead_deadline(x)
        handlers = [x.handler_id] if x.handler_id else org.members(session, x.unit_id)
        link = f"/leads/{x.id}"  # the lead's page (web.leads)
        found[x.id] = Target("lead", x.id, f"招商线索 {x.code} {x.title}（{x.enterprise}）", link,
                             f"investment_lead:{x.id}", "investment_lead", deadline is not None, x.due_at, None,
                             x.created_at, x.source, x.unit_id, handlers, x.responsible_leader_id)
    return found


SOURCE = Source("lead", "leads", lead_deadlines, lead_targets)
