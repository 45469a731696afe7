"""Hostile, careless and simultaneous values for a new user (管理 → 用户, `jzflow add-user`, engine/org/core.py
`add_user`): the same role or unit given twice (or ten thousand times), display names that are too long, blank, or
carry control and bidirectional-override characters, and two administrators adding one username at once."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import Conflict, InvalidInput
from engine.org.models import Membership, OrgUnit, User
from tests.engine.conftest import at_once

pytestmark = pytest.mark.usefixtures("review_org")


def _memberships(s: Session, username: str) -> list[tuple[int | None, int | None]]:
    user_id = s.scalar(select(User.id).where(User.username == username))
    rows = s.execute(select(Membership.org_unit_id, Membership.role_id).where(Membership.user_id == user_id))
    return sorted(((unit, role) for unit, role in rows), key=repr)


def test_a_role_or_unit_given_many_times_is_held_once(session: Session) -> None:
    """A tampered form repeats a field: was one membership row per repetition (NULLs are distinct in the unique
    constraint), 10,000 rows and 10,000 lookups for 10,000 repetitions, and the audit event listed each."""
    user = org.add_user(session, username="li", display_name="李明", unit_codes=["fgj", "fgj"],
                        role_codes=["reviewer"] * 10_000)
    session.commit()  # audit events are appended at commit
    assert len(_memberships(session, "li")) == 2
    event = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"user:{user.id}"))
    assert event is not None and event.after["units"] == ["fgj"] and event.after["roles"] == ["reviewer"]


@pytest.mark.parametrize("name", ["x" * 121, "   ", "\u202e九八七", "张\u200b伟", "李\x07明", "王\x1b[31m五", "赵\u2028六",
                                  "孙\u2066八\u2069"])
def test_a_display_name_too_long_blank_or_with_control_characters_is_refused(session: Session, name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        org.add_user(session, username="li", display_name=name)
    assert refused.value.details["field"] == "display_name"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User).where(User.username == "li")) == 0


def test_a_display_name_with_ideographic_spaces_is_kept(session: Session) -> None:
    assert org.add_user(session, username="li", display_name="  李\u3000明 ").display_name == "李\u3000明"


def test_two_admins_adding_the_same_username_in_two_cases_at_once_add_one(
        factory: sessionmaker[Session], session: Session) -> None:
    """Was: both passed the case-insensitive check before either committed, and "Zhang" and "zhang" were two
    accounts (the unique constraint is on the exact spelling); the same spelling twice answered a 500."""
    session.close()  # SQLite: its reads began a transaction that holds the writer lock (BEGIN IMMEDIATE)
    for names in (("Zhang", "zhang"), ("wang", "wang")):
        def work(i: int, names: tuple[str, str] = names) -> None:
            with factory() as s:
                org.add_user(s, username=names[i], display_name="张伟")
                s.commit()

        outcomes = at_once(2, work)
        assert outcomes.count(None) == 1 and any(isinstance(o, Conflict) for o in outcomes), outcomes
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(User).where(
                func.lower(User.username) == names[1])) == 1


def test_a_new_head_is_audited_on_the_units_stream(session: Session) -> None:
    """Was: the unit's leader_id changed with no event on the unit's stream (the sync and 停用 record one)."""
    user = org.add_user(session, username="zj_head", display_name="住建主任", unit_codes=["zj"], is_head=True)
    session.commit()  # audit events are appended at commit
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "zj"))
    assert unit is not None and unit.leader_id == user.id
    events = list(session.scalars(select(AuditEvent).where(AuditEvent.stream == f"org_unit:{unit.id}",
                                                           AuditEvent.action == "org.unit.head")))
    assert len(events) == 1
    assert events[0].before == {"leader_id": None, "responsible_leader_id": None}
    assert events[0].after == {"leader_id": user.id, "responsible_leader_id": None}


def test_a_head_mark_on_a_unit_that_has_a_head_is_refused(session: Session) -> None:
    """Was: the new membership said head, the unit kept its head, and the audit event said head: true — the 管理
    page showed the old head, and nobody was told the tick was ignored."""
    org.add_user(session, username="zj_head", display_name="住建主任", unit_codes=["zj"], is_head=True)
    session.commit()
    with pytest.raises(Conflict) as refused:
        org.add_user(session, username="zj_head2", display_name="住建副主任", unit_codes=["zj"], is_head=True)
    assert refused.value.details["field"] == "is_head" and "住建主任" in refused.value.message
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User).where(User.username == "zj_head2")) == 0


@pytest.mark.parametrize("password", ["a", "x" * 7, "x" * 201])
def test_a_password_outside_8_to_200_characters_is_refused_whoever_adds_the_user(session: Session,
                                                                                  password: str) -> None:
    """Was: only the 管理 page checked the minimum, so `jzflow add-user x --password a` made a one-letter password,
    and the page took 100,000 characters where changing one's password allows 200."""
    with pytest.raises(InvalidInput) as refused:
        org.add_user(session, username="li", display_name="李明", password=password)
    assert refused.value.details["field"] == "password"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User).where(User.username == "li")) == 0
