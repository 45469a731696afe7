"""离岗交接 of a leader: a person deactivated is no longer the 责任领导 / 包挂 leader of the plan's open items.

Registered by `plan.app.install` in `engine.org.leaving.HANDOVERS` beside `plan.handover` (the 责任人), so 管理 → 停用,
the directory sync and `jzflow deactivate-user` hand over, in the deactivation's transaction, the open items whose
responsible leader (`responsible_leader_id`) the person is:

  问题台账 issue not yet 销号 (closed)
  招商线索 still open (not 已转项目 / 未形成项目)
  project not yet 投产 (市级领导包挂)

Each goes to the successor (接手人) when one is named — a project's 包挂 only to a successor who is a 市级领导, as the
project page allows no one else. Else to whom the deadline ladder reaches at leader level in the person's place: the
first active responsible leader of the item's unit and its parents (for a project, the first 市级领导 among them; the
person's own unit marks are taken off first, engine.org.leaving). Else to nobody: the field is cleared rather than left
naming someone who cannot act, and the head (负责人) of the item's unit is told, once, to have a leader named (on a
project's page, 包挂领导; for an issue or lead, 责任领导 on its page, plan.item_leaders). Closed items keep theirs
(history). One audit event per item on the item's own stream, in the shape of the 责任人's handover; nothing is ever
stuck (an item without a leader still has its handler and unit).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from engine import audit, notify
from engine.org.leaving import Item, Passing
from engine.org.models import Membership, OrgUnit, Role, User
from plan.leads.core import OPEN_STATES as LEAD_OPEN
from plan.leads.models import InvestmentLead
from plan.ledger.core import OPEN_STATES as ISSUE_OPEN
from plan.ledger.models import LedgerIssue
from plan.projects.deadlines import NEXT_STAGE
from plan.projects.entry import LEADER_ROLE
from plan.projects.models import Project

Model = type[LedgerIssue] | type[InvestmentLead] | type[Project]


@dataclass(frozen=True)
class Kind:
    model: Model
    audit_type: str  # also the stream's prefix, as the item's steps audit
    action: str
    city_only: bool  # its leader must be a 市级领导 (a project's 包挂)

    def is_open(self) -> ColumnElement[bool]:
        if self.model is Project:
            return Project.stage.in_(list(NEXT_STAGE))
        model: Any = self.model
        return model.status.in_(ISSUE_OPEN if self.model is LedgerIssue else LEAD_OPEN)  # type: ignore[no-any-return]

    def unit_id(self, row: Any) -> int | None:
        return row.responsible_unit_id if self.model is Project else row.unit_id  # type: ignore[no-any-return]

    def label(self, row: Any) -> str:
        return f"{row.code} {row.name if self.model is Project else row.title}"


KINDS = (Kind(LedgerIssue, "ledger_issue", "ledger.leader_hand_over", False),
         Kind(InvestmentLead, "investment_lead", "lead.leader_hand_over", False),
         Kind(Project, "project", "project.leader_hand_over", True))


def _city_leaders(session: Session) -> set[int]:
    return set(session.scalars(select(Membership.user_id).join(Role, Role.id == Membership.role_id)
                               .where(Role.code == LEADER_ROLE)))


def _heir(session: Session, kind: Kind, unit_id: int | None, passing: Passing, city: set[int]) -> User | None:
    """Return who leads the item now: the successor, else the first active leader up its units (as the ladder's
    leader rungs climb, engine.deadlines.escalation.named), else None."""
    if passing.successor is not None and (not kind.city_only or passing.successor.id in city):
        return passing.successor
    seen: set[int] = set()
    while unit_id is not None and unit_id not in seen:  # `seen`: a cycle in the parents never loops
        seen.add(unit_id)
        unit = session.get(OrgUnit, unit_id)
        if unit is None:
            return None
        leader = session.get(User, unit.responsible_leader_id) \
            if unit.responsible_leader_id not in (None, passing.user.id) else None
        if leader is not None and leader.is_active and (not kind.city_only or leader.id in city):
            return leader
        unit_id = unit.parent_id
    return None


def _rows(session: Session, kind: Kind, user_id: int, *, lock: bool) -> list[Any]:
    model: Any = kind.model
    query = select(model).where(model.responsible_leader_id == user_id, kind.is_open()).order_by(model.id)
    if lock:  # as the item's own steps lock it: one that moved meanwhile is read as it is now
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(query))


def hand_over(session: Session, passing: Passing) -> tuple[list[Item], list[Item]]:
    """Hand over (or, `passing.apply` False, say what would be) the person's open items as their responsible leader:
    (handed over, stuck — always empty)."""
    if passing.left is not None:  # a move (调岗): a leader's marks on units are the directory's to move, not a membership
        return [], []
    given: list[Item] = []
    received: Counter[int] = Counter()
    leaderless: Counter[int] = Counter()  # by the item's unit
    city = _city_leaders(session)
    for kind in KINDS:
        for row in _rows(session, kind, passing.user.id, lock=passing.apply):
            to = _heir(session, kind, kind.unit_id(row), passing, city)
            given.append(Item(kind.audit_type, row.id, kind.label(row), to.username if to else None, duty="leader"))
            if not passing.apply:
                continue
            row.responsible_leader_id = to.id if to else None
            session.flush()
            audit.record(session, passing.actor, kind.action, stream=f"{kind.audit_type}:{row.id}",
                         object_type=kind.audit_type, object_id=row.id,
                         before={"responsible_leader_id": passing.user.id},
                         after={"code": row.code, "responsible_leader_id": row.responsible_leader_id,
                                "to": to.username if to else None, "unit_id": kind.unit_id(row),
                                "reason": passing.reason})
            if to is not None:
                received[to.id] += 1
            elif kind.unit_id(row) is not None:
                leaderless[kind.unit_id(row) or 0] += 1
    _tell(session, passing, received, leaderless)
    return given, []


def _tell(session: Session, passing: Passing, received: Counter[int], leaderless: Counter[int]) -> None:
    who = passing.user.display_name or passing.user.username
    for user_id, count in received.items():
        notify.send(session, notify.worded(user_id, "task_assigned", "led_handed_over", {"who": who, "count": count},
                                           link="/supervision"))
    for unit_id, count in leaderless.items():
        unit = session.get(OrgUnit, unit_id)
        head = session.get(User, unit.leader_id) if unit is not None and unit.leader_id is not None else None
        if head is not None and head.is_active:
            notify.send(session, notify.worded(head.id, "task_assigned", "leaderless", {"who": who, "count": count},
                                               link="/supervision"))
