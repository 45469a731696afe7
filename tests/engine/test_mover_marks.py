"""调岗 and what the mover leaves behind besides their tasks: the head mark (负责人) of a unit they left, and the
申请延期 they asked on a step they give back. Through single sign-on's unit claim (the directory sync's moves are in
tests/engine/test_ldap_moves.py, the administrator's in tests/engine/test_staffing.py). On SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, tasks
from engine.audit.models import AuditEvent
from engine.deadlines.models import ExtensionRequest
from engine.errors import Conflict
from engine.notify.models import OutboxMessage
from engine.org import sso_users
from engine.org.actors import actor_for
from engine.org.models import Membership, OrgUnit, User
from plan.supervision import actions
from tests.engine.conftest import at_once
from tests.engine.test_moves import SSO, _claimed_and_named


def _unit(s: Session, code: str) -> OrgUnit:
    found = s.scalar(select(OrgUnit).where(OrgUnit.code == code))
    assert found is not None, code
    return found


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def _told(s: Session, user_id: int) -> list[str]:
    return [str(m.payload.get("title")) for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
            if m.payload.get("user_id") == user_id]


def _head(factory: sessionmaker[Session]) -> None:
    """u0 heads 审批部门; u1 is its responsible leader (责任领导)."""
    with factory() as s:
        dept, u0, u1 = _unit(s, "dept"), _user(s, "u0"), _user(s, "u1")
        dept.leader_id, dept.responsible_leader_id = u0.id, u1.id
        for m in s.scalars(select(Membership).where(Membership.user_id == u0.id, Membership.org_unit_id == dept.id)):
            m.is_head = True
        s.commit()


def test_a_head_moved_by_the_unit_claim_leaves_the_unit_headless_audited_and_its_leader_told(
        factory: sessionmaker[Session]) -> None:
    _claimed_and_named(factory)
    _head(factory)
    with factory() as s:
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
    with factory() as s:
        dept, u0, u1 = _unit(s, "dept"), _user(s, "u0"), _user(s, "u1")
        assert dept.leader_id is None and dept.responsible_leader_id == u1.id  # 责任领导 is no membership's mark
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.unit.head",
                                                   AuditEvent.object_id == str(dept.id))).one()
        before, after = event.before or {}, event.after or {}
        assert before["leader_id"] == u0.id and after["leader_id"] is None and after["reason"] == "sso: moved"
        assert any("审批部门" in t and "负责人" in t for t in _told(s, u1.id))
        assert not [t for t in _told(s, u0.id) if "负责人" in t]
    with factory() as s:  # the same claim again changes nothing, records nothing
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
        assert len(list(s.scalars(select(AuditEvent).where(AuditEvent.action == "org.unit.head")))) == 1


def test_a_head_whose_claim_keeps_the_unit_keeps_the_mark(factory: sessionmaker[Session]) -> None:
    _claimed_and_named(factory)
    _head(factory)
    with factory() as s:  # a second unit besides: nothing left
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": ["dept", "zrzy"]})
        s.commit()
        assert _unit(s, "dept").leader_id == _user(s, "u0").id


def _asked(factory: sessionmaker[Session], task_id: int) -> int:
    """u0 asks for more time on the step; u1, 审批部门's responsible leader (its 督办 area), decides such requests."""
    with factory() as s:
        _unit(s, "dept").responsible_leader_id = _user(s, "u1").id
        request = actions.request_extension(s, actor=actor_for(s, "u0"), task_id=task_id,
                                            due_date=(clock.now() + timedelta(days=30)).date(), reason="材料未齐")
        s.commit()
        return request.id


def test_a_movers_pending_extension_on_a_step_they_give_back_is_cancelled_audited_and_they_are_told(
        factory: sessionmaker[Session]) -> None:
    claimed, named = _claimed_and_named(factory)
    given_back, kept = _asked(factory, claimed), _asked(factory, named)
    with factory() as s:
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
    with factory() as s:
        gone, stays = s.get(ExtensionRequest, given_back), s.get(ExtensionRequest, kept)
        assert gone is not None and gone.status == "cancelled" and gone.decided_at is not None
        assert gone.decided_by_id is None  # nobody decided it
        assert stays is not None and stays.status == "pending"  # the step offered to them by name is still theirs
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "supervision.extension_cancel")).one()
        assert event.object_id == str(claimed) and (event.after or {})["reason"] == "sso: moved"
        assert (event.before or {})["requested_by_id"] == _user(s, "u0").id
        assert any("延期申请" in t for t in _told(s, _user(s, "u0").id))
        with pytest.raises(Conflict):  # a leader finds nothing left to decide
            actions.decide_extension(s, actor=actor_for(s, "u1"), object_type="task", object_id=claimed, grant=False,
                                     opinion="不同意")
        s.rollback()
    with factory() as s:  # the colleague who takes the step over asks for themselves
        tasks.claim(s, task_id=claimed, actor=actor_for(s, "u1"))
        s.commit()
        request = actions.request_extension(s, actor=actor_for(s, "u1"), task_id=claimed,
                                            due_date=(clock.now() + timedelta(days=30)).date(), reason="接手后申请")
        s.commit()
        assert request.status == "pending"


def test_a_move_and_a_decision_at_once_leave_the_request_either_decided_or_cancelled(
        factory: sessionmaker[Session]) -> None:
    claimed, _named = _claimed_and_named(factory)
    asked = _asked(factory, claimed)

    def work(i: int) -> None:
        with factory() as s:
            if i == 0:
                sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
            else:
                actions.decide_extension(s, actor=actor_for(s, "u1"), object_type="task", object_id=claimed,
                                         grant=False, opinion="不同意")
            s.commit()

    outcomes = at_once(2, work)
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        assert request is not None
        assert outcomes[0] is None  # the move always goes through
        if request.status == "refused":  # decided first: nothing to cancel
            assert not s.scalars(select(AuditEvent).where(AuditEvent.action == "supervision.extension_cancel")).all()
        else:
            assert request.status == "cancelled" and isinstance(outcomes[1], Conflict)
            assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "supervision.extension_cancel")).all()) == 1
