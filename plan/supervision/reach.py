"""督办 改派: whom a leader may hand an object to — its own unit's people, never another unit's by the back door.

"派单—响应—对接—反馈": an issue (问题台账) or a lead (招商线索) reaches a unit by 派单, and leaves it by 退回 (非本单位职责)
and 派单 again, both audited on its own stream; its handler is one of that unit's people. So 改派 of an issue or a lead
goes to a member of its responsible unit (or a sub-unit), whoever asks, administrators included: giving it to another
unit's person would leave the unit answering for work done elsewhere.

A task of another process may go to a member of its unit (or a sub-unit), or of the units the leader supervises (their
area). An administrator may give it to anyone — the engine's way out for a task nobody in its unit can take (one the
system started, one of an instance in incident) — and such a 改派 across units is audited as such (`cross_unit`).
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.deadlines.escalation import Target
from engine.errors import InvalidInput
from engine.org.actors import Actor
from engine.org.area import area
from engine.org.models import Membership, OrgUnit, User
from engine.tasks import people
from engine.tasks.people import Group, Person

ITEMS = ("issue", "lead")  # the objects that carry a responsible unit of their own


def subtree(session: Session, unit_id: int) -> set[int]:
    """The unit and its sub-units."""
    children: dict[int, list[int]] = {}
    for child, parent in session.execute(select(OrgUnit.id, OrgUnit.parent_id).where(OrgUnit.parent_id.is_not(None))):
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found, todo = {unit_id}, [unit_id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _member(session: Session, user: User, units: set[int]) -> bool:
    return bool(units) and session.scalar(select(Membership.id).where(
        Membership.user_id == user.id, Membership.org_unit_id.in_(units)).limit(1)) is not None


def allowed_units(session: Session, actor: Actor, target: Target) -> set[int] | None:
    """The units whose members an ordinary 改派 of the object may go to (None: anyone — an administrator's, across
    units, audited as such)."""
    own = subtree(session, target.unit_id) if target.unit_id is not None else set()
    if target.object_type in ITEMS:
        return None if not own and (actor.is_admin or actor.is_system) else own  # not dispatched yet: no unit
    if actor.is_admin or actor.is_system:
        return None
    return own | set(area(session, actor).unit_ids)


def choices(session: Session, actor: Actor, target: Target, groups: list[Group]) -> list[Group]:
    """The 改派 form's people (the picker's tree of the case) narrowed to those `require_in_unit` accepts."""
    units = allowed_units(session, actor, target)
    if units is None:
        return groups
    return [g for g in groups if g.unit_id is not None and g.unit_id in units]


def search(session: Session, actor: Actor, target: Target, q: str, instance_id: int | None) -> list[Person]:
    """The 改派 picker's live search: the people search of the actor's scope on the case (engine.tasks.people)
    narrowed to those `require_in_unit` accepts, best matches first; the 改派 checks the choice again."""
    units = allowed_units(session, actor, target)
    if units is None:
        return people.search(session, actor, q, instance_id)
    found = people.search(session, actor, q, instance_id, limit=100_000)  # narrowed below, then cut
    members = set(session.scalars(select(Membership.user_id).where(
        Membership.user_id.in_({p.user_id for p in found} or {-1}), Membership.org_unit_id.in_(units or {-1}))))
    return [p for p in found if p.user_id in members][:people.MAX_RESULTS]


def require_in_unit(session: Session, actor: Actor, target: Target, user: User) -> bool:
    """Refuse a 改派 to someone outside the object's unit (see the module), naming the field; return True for an
    administrator's 改派 across units (to be audited as such).

    Raises: InvalidInput (field to_username)
    """
    own = subtree(session, target.unit_id) if target.unit_id is not None else set()
    if _member(session, user, own):
        return False
    units = allowed_units(session, actor, target)
    if units is None:
        return True
    if _member(session, user, units):
        return False
    unit = session.get(OrgUnit, target.unit_id) if target.unit_id is not None else None
    if target.object_type in ITEMS:
        where = f"责任单位{unit.name}" if unit is not None else "尚未派单的事项的责任单位"
        raise InvalidInput(f"改派给（to_username）：{user.display_name}（{user.username}）不属于{where}；"
                           "如属其他单位职责，请由责任单位退回后重新派单 "
                           f"(to_username: {user.username} is not in the responsible unit; if another unit is responsible, "
                           "the responsible unit sends the item back and it is dispatched again)",
                           field="to_username", username=user.username)
    where = f"{unit.name}或您督办范围内的单位" if unit is not None else "您督办范围内的单位"
    raise InvalidInput(f"改派给（to_username）：{user.display_name}（{user.username}）不属于{where}，不能跨单位改派 "
                       f"(reassign to: {user.username} is not a member of the task's unit or of your area)",
                       field="to_username", username=user.username)


__all__ = ["ITEMS", "allowed_units", "choices", "require_in_unit", "search", "subtree"]
