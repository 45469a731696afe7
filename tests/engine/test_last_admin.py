"""停用 never leaves the system without an active administrator: not the CLI (whose actor is the system, so the
"not yourself" rule does not stop it), nor two administrators deactivating each other at the same moment."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import InvalidInput
from engine.org import leaving
from engine.org.actors import actor_for
from engine.org.models import User
from tests.engine.conftest import at_once

pytestmark = pytest.mark.usefixtures("review_org")


def _id(s: Session, username: str) -> int:
    found = s.scalar(select(User.id).where(User.username == username))
    assert found is not None, username
    return found


def _active_admins(s: Session) -> list[str]:
    return list(s.scalars(select(User.username).where(User.is_admin.is_(True), User.is_active.is_(True))
                          .order_by(User.username)))


def test_the_last_active_administrator_is_not_deactivated_by_the_cli(session: Session) -> None:
    admin = _id(session, "admin")
    with pytest.raises(InvalidInput) as refused:
        leaving.deactivate_user(session, user_id=admin, reason="cli: deactivated")  # the CLI's actor: the system
    assert refused.value.details.get("field") == "user" and "管理员" in refused.value.message
    session.rollback()
    assert _active_admins(session) == ["admin"]
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "org.user.deactivate")) == 0


def test_an_administrator_may_deactivate_another_while_one_stays(session: Session) -> None:
    org.add_user(session, username="admin2", display_name="管理员二", is_admin=True)
    session.commit()
    leaving.deactivate_user(session, user_id=_id(session, "admin2"), actor=actor_for(session, "admin"))
    session.commit()
    assert _active_admins(session) == ["admin"]


def test_two_administrators_deactivating_each_other_at_once_leave_one(
        factory: sessionmaker[Session], session: Session) -> None:
    org.add_user(session, username="admin2", display_name="管理员二", is_admin=True)
    session.commit()
    ids = {"admin": _id(session, "admin"), "admin2": _id(session, "admin2")}
    session.close()  # SQLite: its reads began a transaction that holds the writer lock (BEGIN IMMEDIATE)

    def work(i: int) -> None:
        me, other = (("admin", "admin2"), ("admin2", "admin"))[i]
        with factory() as s:
            leaving.deactivate_user(s, user_id=ids[other], actor=actor_for(s, me))
            s.commit()

    outcomes = at_once(2, work)
    # One goes first; the other is refused as the last administrator (PostgreSQL: it waited on the administrators'
    # lock; was: a deadlock, or on SQLite both went through) or, when it begins after that commit, as deactivated.
    assert outcomes.count(None) == 1, outcomes
    assert any(type(o).__name__ in ("InvalidInput", "UserNotFound") for o in outcomes), outcomes
    with factory() as s:
        assert len(_active_admins(s)) == 1
