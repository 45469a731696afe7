"""离岗交接 of the plan's own items: a person deactivated is no longer anyone's 责任人.

Registered by `plan.app.install` in `engine.org.leaving.HANDOVERS`, so 管理 → 停用, the directory sync and
`jzflow deactivate-user` hand over, in the deactivation's transaction, what the person handles besides their tasks:

  问题台账 issue not yet 销号 (closed), whose 责任人 (handler_id) they are
  招商线索 still open (not 已转项目 / 未形成项目), whose handler (handler_id) they are

Each goes to the successor (接手人) when one is named; else to the head (负责人) of the item's unit, who
arranges the work there (the directory sync tells the same head about a leaver); else, the head being the person
or gone, back to the unit with no handler (its members are reminded, as after 派单). An item without a unit and
without a successor has nobody to take it: the admin page and the CLI refuse until a successor is named; the
directory sync leaves it and reports it. One audit event per item, on the item's own stream, as its steps are; the
deadline ladder and the views read the new handler from then on, and so do the item's next process steps
(their assignee comes from the item's snapshot, which each service step reads again).

A person who moves to another unit (调岗, `Passing.left`: engine.org.leaving.move) hands back the same way, with no
successor, the items of the units they left: the unit's head takes them (else the unit), not the mover's new unit.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, notify
from engine.org.leaving import Item, Passing
from engine.org.models import OrgUnit, User
from plan.leads.core import OPEN_STATES as LEAD_OPEN
from plan.leads.models import InvestmentLead
from plan.ledger.core import OPEN_STATES as ISSUE_OPEN
from plan.ledger.models import LedgerIssue


@dataclass(frozen=True)
class Kind:
    model: type[LedgerIssue] | type[InvestmentLead]
    open_states: tuple[str, ...]
    audit_type: str  # also the stream's prefix, as the item's steps audit
    action: str


KINDS = (Kind(LedgerIssue, ISSUE_OPEN, "ledger_issue", "ledger.hand_over"),
         Kind(InvestmentLead, LEAD_OPEN, "investment_lead", "lead.hand_over"))


def _heir(session: Session, unit_id: int | None, passing: Passing) -> tuple[bool, User | None]:
    """Return (someone takes it, who by name): the successor, else the unit's head, else the unit (None)."""
    if passing.successor is not None:
        return True, passing.successor
    unit = session.get(OrgUnit, unit_id) if unit_id is not None else None
    if unit is None:
        return False, None
    head = session.get(User, unit.leader_id) if unit.leader_id not in (None, passing.user.id) else None
    return True, head if head is not None and head.is_active else None


def _rows(session: Session, kind: Kind, user_id: int, *, lock: bool, units: frozenset[int] | None = None) -> list[Any]:
    query = select(kind.model).where(kind.model.handler_id == user_id, kind.model.status.in_(kind.open_states)) \
        .order_by(kind.model.id)
    if units is not None:  # a move: only the items of the units they left
        query = query.where(kind.model.unit_id.in_(units or {-1}))
    if lock:  # as an item's own step locks it: a step that moved it meanwhile is read as it is now
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(query))


def hand_over(session: Session, passing: Passing) -> tuple[list[Item], list[Item]]:
    """Hand over (or, `passing.apply` False, say what would be) the person's open items: (handed over, stuck)."""
    given: list[Item] = []
    stuck: list[Item] = []
    received: Counter[int] = Counter()
    for kind in KINDS:
        for row in _rows(session, kind, passing.user.id, lock=passing.apply, units=passing.left):
            label = f"{row.code} {row.title}"
            takes, to = _heir(session, row.unit_id, passing)
            if not takes:
                stuck.append(Item(kind.audit_type, row.id, label, None))
                continue
            given.append(Item(kind.audit_type, row.id, label, to.username if to else None))
            if not passing.apply:
                continue
            row.handler_id = to.id if to else None
            session.flush()
            audit.record(session, passing.actor, kind.action, stream=f"{kind.audit_type}:{row.id}",
                         object_type=kind.audit_type, object_id=row.id, before={"handler_id": passing.user.id},
                         after={"code": row.code, "instance_id": row.instance_id, "status": row.status,
                                "handler_id": row.handler_id, "to": to.username if to else None,
                                "unit_id": row.unit_id, "reason": passing.reason})
            if to is not None:
                received[to.id] += 1
    who = passing.user.display_name or passing.user.username
    text = "items_handed_over_left" if passing.left is None else "items_handed_over_moved"
    for user_id, count in received.items():
        notify.send(session, notify.worded(user_id, "task_assigned", text, {"who": who, "count": count},
                                           link="/supervision"))
    return given, stuck
