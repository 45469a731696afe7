"""Usernames are one account whatever their case (core.add_user): on PostgreSQL, also when two are made at once.

The check read the committed users and the insert came after: the unique constraint is on the username as spelt, so
"ZhangSan" made by one transaction (an administrator, the SSO login of one subject) and "zhangsan" by another (the
directory sync, another subject's first login) at the same moment both passed it — two accounts one name, which
every lookup in any case (SSO, the directory, sso-link, the login counters) then took one for the other.
"""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.errors import Conflict
from engine.org.models import User


def test_the_same_username_in_two_cases_made_at_once_is_one_account(pg_factory: sessionmaker[Session]) -> None:
    first = pg_factory()
    org.add_user(first, username="ZhangSan", display_name="张三")  # not committed yet
    outcome: list[BaseException | None] = [None]

    def second_makes() -> None:
        with pg_factory() as second:
            try:
                org.add_user(second, username="zhangsan", display_name="张三")
                second.commit()
            except BaseException as exc:  # handed to the test
                outcome[0] = exc

    thread = threading.Thread(target=second_makes)
    thread.start()
    thread.join(1.0)  # the second waits for the first
    first.commit()
    first.close()
    thread.join(30)
    assert isinstance(outcome[0], Conflict) and outcome[0].details.get("field") == "username"
    with pg_factory() as s:
        assert s.scalar(select(func.count()).select_from(User).where(func.lower(User.username) == "zhangsan")) == 1


@pytest.mark.parametrize("taken", ["zhangsan", "ZHANGSAN"])
def test_a_username_taken_in_another_case_is_refused(pg_factory: sessionmaker[Session], taken: str) -> None:
    with pg_factory() as s:
        org.add_user(s, username="ZhangSan", display_name="张三")
        s.commit()
        with pytest.raises(Conflict):
            org.add_user(s, username=taken, display_name="张三")
