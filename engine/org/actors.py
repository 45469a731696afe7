"""Who is acting: services take the acting user as an argument, never from a request."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, select
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


HELD = (Membership.org_unit_id, Membership.role_id, Role.code)  # what actor_from reads of each membership


def with_holdings(statement: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """Add the User's memberships (HELD, one row each; none: one row of NULLs) to a statement that selects a User."""
    return (statement.add_columns(*HELD).outerjoin(Membership, Membership.user_id == User.id)
            .outerjoin(Role, Role.id == Membership.role_id))


# Built once (a statement built per call pays its cache key every time): what a user holds.
MEMBERSHIPS = (select(*HELD).outerjoin(Role, Role.id == Membership.role_id)
               .where(Membership.user_id == bindparam("user_id")))


_USER_HOLDING = with_holdings(select(User)).where(User.id == bindparam("user_id"))


def user_with_actor(session: Session, user_id: int) -> tuple[User, Actor] | None:
    """Return a user by id with its Actor, in one read (a signed-in request's first), or None."""
    rows = session.execute(_USER_HOLDING, {"user_id": user_id}).all()
    if not rows:
        return None
    user = rows[0][0]
    return user, actor_from(user, rows)


def actor_of(session: Session, user: User) -> Actor:
    """Build the Actor for a user, with the org units and roles they hold."""
    return actor_from(user, session.execute(MEMBERSHIPS, {"user_id": user.id}).all())


class Named(Protocol):
    """What actor_from reads of a user: a User, or a row of these columns."""

    id: int
    username: str
    display_name: str
    is_admin: bool


def actor_from(user: Named, held: Iterable[Sequence[Any]]) -> Actor:
    """Build the Actor for a user from its membership rows, as read: each ends with HELD's columns (with_holdings)."""
    rows = [r[-len(HELD):] for r in held]
    return Actor(
        user_id=user.id, username=user.username, display_name=user.display_name,
        org_unit_ids=frozenset(r[0] for r in rows if r[0] is not None),
        role_ids=frozenset(r[1] for r in rows if r[1] is not None),
        is_admin=user.is_admin,
        role_codes=frozenset(r[2] for r in rows if r[2] is not None),
    )


def actor_for(session: Session, username: str) -> Actor:
    """Return the Actor for an active username.

    Raises: UserNotFound
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise UserNotFound(f"用户不存在或已停用 (no such active user): {username}", username=username)
    return actor_of(session, user)
