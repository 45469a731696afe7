"""A ledger issue (问题台账) as the deadline sweep sees it: its `due_at`, its unit, handler and leader.

Registered with the engine's deadline sources as object type `issue`, policies under `issues:` in
the escalation file, keyed by the issue's source (来源).
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.deadlines.objects import Deadline, Org, Target
from engine.deadlines.sources import Source
from plan.ledger.models import LedgerIssue

OPEN_STATES = ("registered", "dispatched", "accepted", "in_progress", "feedback", "confirmed", "returned")


def issue_deadline(issue: LedgerIssue) -> Deadline | None:
    """Return an open issue's deadline (None when closed or without one)."""
    if issue.status not in OPEN_STATES or issue.due_at is None:
        return None
    return Deadline(issue.source, issue.unit_id, issue.created_at, issue.due_at)


def issue_deadlines(session: Session, ids: Sequence[int] | None) -> dict[int, Deadline]:
    """Return the deadlines of open issues that have one (all, or these)."""
    query = select(LedgerIssue).where(LedgerIssue.status.in_(OPEN_STATES), LedgerIssue.due_at.is_not(None))
    if ids is not None:
        query = query.where(LedgerIssue.id.in_(list(ids)))
    return {i.id: d for i in session.scalars(query) if (d := issue_deadline(i)) is not None}


def issue_targets(session: Session, ids: Sequence[int], org: Org) -> dict[int, Target]:
    """Return issues as the escalation ladder sees them."""
    found = {}
    for i in session.scalars(select(LedgerIssue).where(LedgerIssue.id.in_(ids)).execution_options(populate_existing=True)):
        deadline = issue_deadline(i)
        handlers = [i.handler_id] if i.handler_id else org.members(session, i.unit_id)
        found[i.id] = Target("issue", i.id, f"{i.code} {i.title}", f"/ledger/{i.id}", f"ledger_issue:{i.id}",
                             "ledger_issue", deadline is not None, i.due_at, None, i.created_at, i.source, i.unit_id,
                             handlers, i.responsible_leader_id)
    return found


SOURCE = Source("issue", "issues", issue_deadlines, issue_targets)
