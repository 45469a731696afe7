"""A person changing their own password (修改密码) while an administrator resets it (重置密码): they take turns on the
person's row (PostgreSQL), so the reset — what follows a compromise, audited as done — is never undone by a change
that checked the password it replaced."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash

from engine import org
from engine.errors import InvalidInput
from engine.org import core, staffing
from engine.org.actors import actor_for
from engine.org.models import User
from tests.engine.test_task_lost_updates import Meanwhile, meanwhile  # noqa: F401 (its fixture)


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def test_a_reset_at_the_moment_of_a_password_change_is_not_undone(
        factory: sessionmaker[Session], meanwhile: Meanwhile) -> None:  # noqa: F811
    """The change checks the current password, the reset runs and commits, the change goes on: before, it wrote its
    new password and cleared the temporary mark over the reset (the one who knew the old password kept the account)."""
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        org.add_user(s, username="p", display_name="科员", password="Old-pass-123")
        s.commit()
        pid, seen = _user(s, "p").id, staffing.person(s, _user(s, "p")).seen

    def reset(s: Session) -> object:
        return staffing.reset_password(s, user_id=pid, password="Temp-pass-123", seen=seen, actor=actor_for(s, "root"))

    meanwhile.at(core, "check_password_hash", reset)
    with factory() as s:
        try:
            org.change_password(s, user_id=pid, current="Old-pass-123", new="Mine-pass-456", actor=actor_for(s, "p"))
            s.commit()
        except InvalidInput as refused:  # the reset came first: the old password is no longer the current one
            assert refused.details["field"] == "current_password"
            s.rollback()
    assert meanwhile.join() == ["done"]
    with factory() as s:
        p = _user(s, "p")
        assert p.must_change_password, "the reset was undone"
        assert p.password_hash is not None and check_password_hash(p.password_hash, "Temp-pass-123")
