"""Who is acting: services take the acting user as an argument, never from a request."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import UserNotFound
from engine.org.models import Membership, Role, User


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    display_name: str
    org_unit_ids: frozenset[int] = field(default_factory=frozenset)
    role_ids: frozenset[int] = field(default_factory=frozenset)
    is_admin: bool = False
    role_codes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_system(self) -> bool:
        return self.user_id is None


SYSTEM = Actor(user_id=None, username="system", display_name="系统")


def actor_of(session: Session, user: User) -> Actor:
    """Build the Actor for a user, with the org units and roles they hold."""
    rows = session.execute(select(Membership.org_unit_id, Membership.role_id, Role.code)
                           .outerjoin(Role, Role.id == Membership.role_id)
                           .where(Membership.user_id == user.id)).all()
    return Actor(
        user_id=user.id, username=user.username, display_name=user.display_name,
        org_unit_ids=frozenset(r.org_unit_id for r in rows if r.org_unit_id is not None),
        role_ids=frozenset(r.role_id for r in rows if r.role_id is not None),
        is_admin=user.is_admin,
        role_codes=frozenset(r.code for r in rows if r.code is not None),
    )


def actor_for(session: Session, username: str) -> Actor:
    """Return the Actor for an active username.

    Raises: UserNotFound
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise UserNotFound(f"用户不存在或已停用: {username}", username=username)
    return actor_of(session, user)
