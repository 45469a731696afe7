"""A username is one account in any case; a user's e-mail address is one address: mail is sent to it as a header,
which a list, a name or a line break would change or break (engine/org/core.py `mailbox`)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org
from engine.errors import Conflict, InvalidInput
from engine.org import core
from engine.org.models import User

BAD = ["zhang@gxj.jiaozhou.test, boss@jiaozhou.test", "zhang@gxj.jiaozhou.test\nBcc: boss@jiaozhou.test",
       "张伟 <zhang@gxj.jiaozhou.test>", "张伟", "zhang@", "@gxj.jiaozhou.test", "zhang@gxj@jiaozhou.test",
       "zhang @gxj.jiaozhou.test", "x" * 190 + "@jiaozhou.test"]


@pytest.mark.parametrize("value", BAD)
def test_a_user_is_not_added_with_a_value_that_is_not_one_address(session: Session, value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        org.add_user(session, username="zhang", display_name="张伟", email=value)
    assert refused.value.details["field"] == "email"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User).where(User.username == "zhang")) == 0


def test_an_address_is_kept_as_given_and_a_blank_one_is_none(session: Session) -> None:
    user = org.add_user(session, username="zhang", display_name="张伟", email="  zhang.wei@gxj.jiaozhou.test ")
    assert user.email == "zhang.wei@gxj.jiaozhou.test"
    assert org.add_user(session, username="li", display_name="李娜", email="  ").email is None


@pytest.mark.parametrize("value", BAD)
def test_directory_values_that_are_not_one_address_are_dropped(value: str) -> None:
    assert core.mailbox_or_none(value) is None
    assert core.mailbox_or_none("sunmy@jiaozhou.gov.cn") == "sunmy@jiaozhou.gov.cn"


def test_a_username_that_differs_only_in_case_is_taken(session: Session) -> None:
    """"Zhang" beside "zhang" would be two people to the pickers and the audit trail, and one to the directory sync
    and to whoever reads the name."""
    org.add_user(session, username="zhang", display_name="张伟")
    with pytest.raises(Conflict) as refused:
        org.add_user(session, username="ZHANG", display_name="张伟")
    assert refused.value.details["field"] == "username"
