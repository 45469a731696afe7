"""Whom a refused user asks for a right: the heads of their units and the system administrators, by name."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.org.models import OrgUnit, User


@dataclass(frozen=True)
class Contact:
    kind: str  # "head" (单位负责人) or "admin" (系统管理员)
    name: str
    unit: str | None


def whom_to_ask(session: Session, actor: Actor, *, limit: int = 3) -> list[Contact]:
    """Return the heads of the actor's units, then up to `limit` active administrators (never the actor)."""
    found: list[Contact] = []
    if actor.org_unit_ids:
        rows = session.execute(select(OrgUnit.name, User.display_name)
                               .join(User, User.id == OrgUnit.leader_id)
                               .where(OrgUnit.id.in_(actor.org_unit_ids), User.is_active.is_(True),
                                      User.id != actor.user_id)
                               .order_by(OrgUnit.name)).all()
        found += [Contact("head", name, unit) for unit, name in rows]
    admins = session.scalars(select(User.display_name).where(User.is_admin.is_(True), User.is_active.is_(True),
                                                             User.id != actor.user_id)
                             .order_by(User.id).limit(limit)).all()
    found += [Contact("admin", name, None) for name in admins]
    return found
