"""指定责任领导: set, change or clear by hand the responsible leader (`responsible_leader_id`) of a 问题台账 issue or a
招商线索 (lead).

派单 names the unit's responsible leader, and a leader's 停用 hands their items on or clears them (plan.leader_handover);
this is how a leader is named again, or another one chosen.

Who may: admins, 市级领导 (role `city_leader`: 市级领导包挂, the city assigns its leaders) and the head (负责人,
`org_unit.leader_id`) of the item's unit. Anyone else is refused (403) before the input is read; the web shows the
item only to who has it in reach (else 404).

Whom: an active leader — a holder of the `leader` (责任领导) or `city_leader` (市级领导) role, or a unit's responsible
leader (`org_unit.responsible_leader_id`, as the 停用 hand-over's ladder climbs). An issue 已销号 or a lead finished
(已转项目 / 未形成项目) keeps its leader (history), as the hand-over leaves them.

The chosen leader's row is share-locked first (FOR KEY SHARE, `engine.org.leaving.user_named`): a 停用 of them at the
same moment either waits for this change and then hands the item over, or is waited for and the change is refused as
naming someone deactivated — never an inactive leader. Then the item's row is locked and read again: two people at
once take turns. A page carries `seen` (`plan.stale`): a change saved since it was opened is refused. One audit event
per change on the item's stream (`ledger.leader`, `lead.leader`); none when nothing changes. Flushes; callers commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.leaving import user_named
from engine.org.models import Membership, OrgUnit, Role, User
from plan.leads.core import OPEN_STATES as LEAD_OPEN
from plan.leads.models import InvestmentLead
from plan.ledger.core import OPEN_STATES as ISSUE_OPEN
from plan.ledger.models import LedgerIssue
from plan.stale import require_fresh, version

LEADER_ROLES = ("leader", "city_leader")  # 责任领导, 市级领导
CITY_ROLE = "city_leader"  # 市级领导: sets the leader of any item
FIELD = "leader"


class ItemLeaderForbidden(Forbidden):
    """The actor may not name this item's responsible leader."""

    code = "item_leader_forbidden"


@dataclass(frozen=True)
class Kind:
    model: type[LedgerIssue] | type[InvestmentLead]
    stream: str  # the audit object type, also the stream's prefix
    action: str
    open_states: tuple[str, ...]
    what: str  # as the refusals name it


KINDS = {"issue": Kind(LedgerIssue, "ledger_issue", "ledger.leader", ISSUE_OPEN, "问题"),
         "lead": Kind(InvestmentLead, "investment_lead", "lead.leader", LEAD_OPEN, "招商线索")}


def _leader_ids() -> Any:
    """The ids of whoever counts as a leader (SQL): a leader role, or a unit's responsible leader mark."""
    by_role = select(Membership.user_id).join(Role, Role.id == Membership.role_id).where(Role.code.in_(LEADER_ROLES))
    by_mark = select(OrgUnit.responsible_leader_id).where(OrgUnit.responsible_leader_id.is_not(None))
    return or_(User.id.in_(by_role), User.id.in_(by_mark))


def leaders(session: Session) -> list[tuple[str, str]]:
    """Return the active leaders one may choose (username, name), by username."""
    rows = session.execute(select(User.username, User.display_name).where(User.is_active.is_(True), _leader_ids())
                           .order_by(User.username)).all()
    return [(r[0], r[1]) for r in rows]


def may_set(session: Session, actor: Actor, unit_id: int | None) -> bool:
    """Tell whether the actor may name the responsible leader of an item of this unit."""
    if actor.is_admin or actor.is_system or CITY_ROLE in actor.role_codes:
        return True
    if actor.user_id is None or unit_id is None:
        return False
    return session.scalar(select(OrgUnit.leader_id).where(OrgUnit.id == unit_id)) == actor.user_id


def leader_version(row: LedgerIssue | InvestmentLead) -> str:
    """The `seen` of the 责任领导 form."""
    return version(row.responsible_leader_id)


def _kind(kind: str) -> Kind:
    found = KINDS.get(kind)
    if found is None:
        raise InvalidInput(f"事项类型须为 issue 或 lead (kind: issue or lead): {kind!r}", field="kind")
    return found


def _row(session: Session, kind: Kind, item_id: int, *, lock: bool) -> Any:
    query = select(kind.model).where(kind.model.id == item_id)
    if lock:  # read again under the lock: a change committed meanwhile is seen
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"{kind.what}不存在 (no such item): {item_id}", item_id=item_id)
    return row


def _require(session: Session, kind: Kind, row: Any, actor: Actor) -> None:
    if not may_set(session, actor, row.unit_id):
        raise ItemLeaderForbidden(f"只有管理员、市级领导或责任单位负责人可以指定{kind.what} {row.code} 的责任领导 "
                                  "(only admins, city leaders and the unit's head name its responsible leader)")


def _chosen(session: Session, username: str) -> User:
    """Return the active leader named, share-locked. Raises: InvalidInput naming the field"""
    try:
        user = user_named(session, username, what="责任领导（leader）", field=FIELD, lock=True)
    except NotFound as exc:
        raise InvalidInput(exc.message, field=FIELD) from None  # 中文 (leader: no such user): name
    if not user.is_active:
        raise InvalidInput(f"责任领导（leader）已停用: {user.username} (leader: deactivated)", field=FIELD)
    if session.scalar(select(User.id).where(User.id == user.id, _leader_ids())) is None:
        raise InvalidInput(f"责任领导（leader）“{user.username}”不是领导 (leader: {user.username} is not a "
                           "leader — give a person with a leader role, or a unit's responsible leader)", field=FIELD)
    return user


def set_leader(session: Session, kind: str, item_id: int, *, actor: Actor, username: str,
               seen: str | None) -> bool:
    """Name the responsible leader of an open issue or lead (blank: none); return whether it changed (flushes).

    `seen`: the `leader_version` the page showed (None: not a page).

    Raises: NotFound, ItemLeaderForbidden, InvalidInput (field leader), Conflict (field leader: the item is closed;
    field seen: the page is stale)
    """
    what = _kind(kind)
    _require(session, what, _row(session, what, item_id, lock=False), actor)  # before the input is read
    name = username.strip()
    leader = _chosen(session, name) if name else None  # the person first, then the item (as a 停用 locks them)
    row = _row(session, what, item_id, lock=True)
    _require(session, what, row, actor)  # its unit may have changed meanwhile
    if row.status not in what.open_states:
        raise Conflict(f"{what.what} {row.code} 已{'销号' if kind == 'issue' else '办结'}，不能更改责任领导 "
                       "(leader: the item is closed)", field=FIELD, status=row.status)
    before = row.responsible_leader_id
    after = leader.id if leader else None
    require_fresh(seen, leader_version(row), what=f"{what.what} {row.code} 的责任领导", changes=after != before)
    if after == before:
        return False
    old = session.scalar(select(User.username).where(User.id == before)) if before else None
    row.responsible_leader_id = after
    session.flush()
    audit.record(session, actor, what.action, stream=f"{what.stream}:{row.id}", object_type=what.stream,
                 object_id=row.id, before={"responsible_leader_id": before, "leader": old},
                 after={"code": row.code, "responsible_leader_id": after, "leader": leader.username if leader else None,
                        "unit_id": row.unit_id})
    return True


@dataclass(frozen=True)
class LeaderForm:
    """What the item page's 责任领导 form needs: the choices, the one chosen now and what the page saw."""

    choices: list[tuple[str, str]]
    current: str | None  # username
    seen: str


def form_for(session: Session, kind: str, row: LedgerIssue | InvestmentLead, actor: Actor) -> LeaderForm | None:
    """Return the 责任领导 form of an item page, or None when the actor may not change it or the item is closed."""
    what = _kind(kind)
    if row.status not in what.open_states or not may_set(session, actor, row.unit_id):
        return None
    current = session.scalar(select(User.username).where(User.id == row.responsible_leader_id)) \
        if row.responsible_leader_id else None
    return LeaderForm(leaders(session), current, leader_version(row))


__all__ = ["KINDS", "LEADER_ROLES", "ItemLeaderForbidden", "LeaderForm", "form_for", "leader_version", "leaders",
           "may_set", "set_leader"]
