"""Looking users up: by id, by username, names for a list, and the demo logins the dev runner shows."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.models import Membership, Role, User


def get_user(session: Session, user_id: int) -> User | None:
    """Return a user by id, or None."""
    return session.get(User, user_id)


def by_username(session: Session, username: str) -> User | None:
    """Return the user with this username, or None."""
    return session.scalar(select(User).where(User.username == username)) if username else None


def display_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Return display names by id, in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {user_id: name for user_id, name in session.execute(
        select(User.id, User.display_name).where(User.id.in_(wanted))).all()}


def usernames(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Return usernames by id, in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {user_id: name for user_id, name in session.execute(
        select(User.id, User.username).where(User.id.in_(wanted))).all()}


MAX_NAME_LOOKUP = 200  # values a page asks about at once (one query; the rest stay as they are)


def names_by_username(session: Session, values: Iterable[object]) -> dict[str, str]:
    """Return display names by username for those of the values that are usernames, in one query.

    Only strings that could be a username are asked about (≤ 150 characters, at most `MAX_NAME_LOOKUP`).
    """
    wanted = sorted({v for v in values if isinstance(v, str) and 0 < len(v) <= 150})[:MAX_NAME_LOOKUP]
    if not wanted:
        return {}
    return {username: display or username for username, display in session.execute(
        select(User.username, User.display_name).where(User.username.in_(wanted))).all()}


def demo_logins(session: Session) -> tuple[list[tuple[str, str, str]], str | None]:
    """Return the first user with a password of each role, each user once — (username, display name, the roles it
    is first for, joined by 、) — and an administrator's username when that one is not already listed (else None,
    and 管理员 (admin) is among the listed user's roles): `make run` printed wangjianguo and admin twice."""
    rows = session.execute(select(User.username, User.display_name, Role.name)
                           .join(Membership, Membership.user_id == User.id)
                           .join(Role, Role.id == Membership.role_id)
                           .where(User.password_hash.is_not(None)).order_by(Role.id, User.id)).all()
    seen: set[str] = set()
    roles: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for username, name, role in rows:
        if role not in seen:
            seen.add(role)
            roles.setdefault(username, []).append(role)
            names[username] = name
    admin = session.scalar(select(User.username).where(User.is_admin.is_(True)).order_by(User.id))
    if admin is not None and admin in roles:
        roles[admin].append("管理员 (admin)")
        admin = None
    return [(username, names[username], "、".join(held)) for username, held in roles.items()], admin
