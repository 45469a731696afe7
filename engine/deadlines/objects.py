"""What the deadline sweep knows of a watched object: its deadline, and as the ladder sees it (people, unit).

Human tasks are the engine's own watched objects; an application adds its own kinds (see
`engine.deadlines.sources`) by saying how to read their deadlines and their people in these terms.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.models import Membership, OrgUnit, Role, User

MAX_RECIPIENTS = 50


@dataclass(frozen=True)
class Deadline:
    """An object's current deadline as the sweep sees it."""

    policy: str
    unit_id: int | None
    started_at: datetime | None
    due_at: datetime


@dataclass(frozen=True)
class UnitUnknown:
    """A task whose escalationUnit named no unit: the name as told, and where the model names it."""

    name: str
    process_key: str
    bpmn_id: str
    task_name: str
    instance_id: int


@dataclass
class Target:
    """A watched object as the ladder sees it: open or not, its deadline, its unit and its people."""

    object_type: str
    object_id: int
    title: str
    link: str
    stream: str
    audit_type: str
    open: bool
    due_at: datetime | None
    warn_at: datetime | None
    started_at: datetime | None
    policy: str
    unit_id: int | None
    handler_ids: list[int] = field(default_factory=list)
    responsible_leader_id: int | None = None
    unit_unknown: UnitUnknown | None = None  # the unit head's rung names nobody: it passes to the rung above


@dataclass
class Org:
    """Units with their leaders, who holds the role city_leader, and who is deactivated (read once per batch).

    A deactivated person (停用) is never a member or a holder here: the ladder reaches none of them.
    """

    units: dict[int, OrgUnit]
    city_leaders: set[int]
    inactive: frozenset[int] = frozenset()
    _members: dict[int, list[int]] = field(default_factory=dict)
    _holders: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session) -> Org:
        units = {u.id: u for u in session.scalars(select(OrgUnit))}
        city = set(session.scalars(select(Membership.user_id).join(Role, Role.id == Membership.role_id)
                                   .where(Role.code == "city_leader")))
        inactive = frozenset(session.scalars(select(User.id).where(User.is_active.is_(False))))
        return cls(units, city, inactive)

    def members(self, session: Session, unit_id: int | None) -> list[int]:
        if unit_id is None:
            return []
        if unit_id not in self._members:
            self._members[unit_id] = list(session.scalars(select(Membership.user_id).join(
                User, User.id == Membership.user_id).where(Membership.org_unit_id == unit_id, User.is_active.is_(True))
                .order_by(Membership.id).limit(MAX_RECIPIENTS)).unique())
        return self._members[unit_id]

    def holders(self, session: Session, role_id: int) -> list[int]:
        if role_id not in self._holders:
            self._holders[role_id] = list(session.scalars(select(Membership.user_id).join(
                User, User.id == Membership.user_id).where(Membership.role_id == role_id, User.is_active.is_(True))
                .order_by(Membership.id).limit(MAX_RECIPIENTS)).unique())
        return self._holders[role_id]

    def chain(self, unit_id: int | None) -> Iterable[OrgUnit]:
        seen: set[int] = set()
        while unit_id is not None and unit_id in self.units and unit_id not in seen:
            seen.add(unit_id)
            unit = self.units[unit_id]
            yield unit
            unit_id = unit.parent_id
