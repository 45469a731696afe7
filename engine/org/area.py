"""A leader's area: the units they head (org_unit.leader_id) or are responsible for
(org_unit.responsible_leader_id: 责任领导 / 市级领导包挂), with their sub-units. Administrators, and
holders of a role that supervises every unit (审计督查, role `auditor`), have everything in their area.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.org.models import OrgUnit

SUPERVISE_ALL_ROLES = ("auditor",)  # 审计督查 sees every unit


@dataclass(frozen=True)
class Area:
    everything: bool
    unit_ids: frozenset[int]

    def covers(self, unit_id: int | None) -> bool:
        return self.everything or (unit_id is not None and unit_id in self.unit_ids)


def area(session: Session, actor: Actor) -> Area:
    """Return the units a leader supervises (with their sub-units), or everything for admins and 督查."""
    if actor.is_admin or actor.is_system:
        return Area(True, frozenset())
    if actor.role_codes & set(SUPERVISE_ALL_ROLES):
        return Area(True, frozenset())
    units = list(session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.leader_id, OrgUnit.responsible_leader_id)))
    mine = {u.id for u in units if actor.user_id is not None and actor.user_id in (u.leader_id, u.responsible_leader_id)}
    children: dict[int, list[int]] = {}
    for u in units:
        if u.parent_id is not None:
            children.setdefault(u.parent_id, []).append(u.id)
    todo = list(mine)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in mine:
                mine.add(child)
                todo.append(child)
    return Area(False, frozenset(mine))


__all__ = ["SUPERVISE_ALL_ROLES", "Area", "area"]
