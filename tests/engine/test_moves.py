"""调岗: a person who moves to another unit (single sign-on's unit claim, the directory sync) leaves behind the work
they claimed as a member of the unit they left; what was given to them by name stays theirs. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import EngineError
from engine.notify.models import OutboxMessage
from engine.org import sso_users
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from engine.org.oidc import Settings
from engine.runtime import instances
from engine.tasks import handover, operations
from engine.tasks.models import HumanTask, TaskCandidate
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from tests.engine.conftest import staff
from tests.engine.test_task_lost_updates import Meanwhile, meanwhile  # noqa: F401 (its fixture)

SSO = Settings(issuer="https://idp.example.cn", client_id="jzflow")


def _claimed_and_named(factory: sessionmaker[Session]) -> tuple[int, int]:
    """u0 of 审批部门 (dept) claims one sibling task from the unit's pool and is offered the other alone by name."""
    staff(factory, 2)
    with factory() as s:
        org.add_unit(s, code="zrzy", name="自然资源局")
        u0 = actor_for(s, "u0")
        instances.start(s, process_key="siblings", actor=u0)
        ready = list(s.scalars(select(HumanTask).where(HumanTask.state == "ready").order_by(HumanTask.id)))
        assert len(ready) >= 2 and all(c.org_unit_id is not None for c in ready[0].candidates)
        tasks.claim(s, task_id=ready[0].id, actor=u0)
        ready[1].candidates.clear()
        ready[1].candidates.append(TaskCandidate(user_id=u0.user_id))
        tasks.claim(s, task_id=ready[1].id, actor=u0)
        user = s.scalar(select(User).where(User.username == "u0"))
        assert user is not None
        user.sso_subject = "sub-u0"
        s.commit()
        return ready[0].id, ready[1].id


def test_a_move_by_the_unit_claim_gives_back_what_was_claimed_from_the_old_unit(
        factory: sessionmaker[Session]) -> None:
    claimed, named = _claimed_and_named(factory)
    with factory() as s:
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None and task.state == "ready"  # back in 审批部门's pool
        event = s.scalars(select(AuditEvent).where(AuditEvent.object_type == "human_task",
                                                   AuditEvent.object_id == str(claimed))
                          .order_by(AuditEvent.id.desc())).first()
        assert event is not None and event.action == "task.return_to_candidates"
        assert event.before["assignee_id"] is not None and event.after["reason"] == "sso: moved"
        mine = s.get(HumanTask, named)
        assert mine is not None and mine.assignee_id is not None  # offered to them by name: still theirs
        u0 = actor_for(s, "u0")
        with pytest.raises(EngineError):  # neither the holder nor a candidate of the old unit's task any longer
            tasks.complete(s, task_id=claimed, actor=u0, data={})
        s.rollback()
        u1 = actor_for(s, "u1")
        tasks.claim(s, task_id=claimed, actor=u1)  # a colleague who stayed takes it
        s.commit()


def test_a_claim_that_does_not_change_the_units_gives_nothing_back(factory: sessionmaker[Session]) -> None:
    claimed, _named = _claimed_and_named(factory)
    with factory() as s:
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": ["dept", "zrzy"]})
        s.commit()
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is not None


def test_a_role_the_provider_takes_away_gives_back_what_was_claimed_as_that_role(
        factory: sessionmaker[Session]) -> None:
    claimed, named = _claimed_and_named(factory)
    with factory() as s:
        role = org.add_role(s, code="reviewer", name="审查员")
        task = s.get(HumanTask, claimed)
        assert task is not None
        task.candidates.clear()
        task.candidates.append(TaskCandidate(role_id=role.id))  # the step's pool is a role the provider gave
        s.commit()
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "roles": ["reviewer"]})
        s.commit()
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "roles": []})
        s.commit()
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None and task.state == "ready"
        reasons = [e.after["reason"] for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == "task.return_to_candidates", AuditEvent.object_id == str(claimed)))]
        assert reasons == ["sso: role removed"]
        mine = s.get(HumanTask, named)
        assert mine is not None and mine.assignee_id is not None


def _unit_id(s: Session, code: str) -> int:
    found = s.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    assert found is not None
    return found


def test_the_issues_and_leads_of_the_old_unit_go_to_its_head_and_those_of_the_new_one_stay(
        factory: sessionmaker[Session]) -> None:
    _claimed_and_named(factory)
    with factory() as s:
        u0, u1 = actor_for(s, "u0"), actor_for(s, "u1")
        dept, zrzy = _unit_id(s, "dept"), _unit_id(s, "zrzy")
        unit = s.get(OrgUnit, dept)
        assert unit is not None
        unit.leader_id = u1.user_id  # u1 heads 审批部门
        due = clock.now()
        old = LedgerIssue(code="WT-2025-1", title="企业用电增容", unit_id=dept, source="manual", handler_id=u0.user_id,
                          responsible_leader_id=u1.user_id, status="in_progress", due_at=due, created_at=due)
        new = LedgerIssue(code="WT-2025-2", title="土地指标", unit_id=zrzy, source="manual", handler_id=u0.user_id,
                          status="in_progress", due_at=due, created_at=due)
        lead = InvestmentLead(code="XS-2025-1", title="智能家电配套", enterprise="海智电器", unit_id=dept,
                              handler_id=u0.user_id, status="contacting", due_at=due, created_at=due)
        s.add_all([old, new, lead])
        s.commit()
        ids = old.id, new.id, lead.id
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
    with factory() as s:
        got_old, got_new, got_lead = s.get(LedgerIssue, ids[0]), s.get(LedgerIssue, ids[1]), s.get(InvestmentLead, ids[2])
        assert got_old is not None and got_new is not None and got_lead is not None
        assert got_old.handler_id == u1.user_id and got_lead.handler_id == u1.user_id  # the old unit's head
        assert got_old.responsible_leader_id == u1.user_id  # the 责任领导 is not the mover's to hand on
        assert got_new.handler_id == u0.user_id  # an item of the unit they joined stays theirs
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "ledger.hand_over",
                                                  AuditEvent.object_id == str(ids[0])))
        assert event is not None and event.before == {"handler_id": u0.user_id}
        assert event.after["reason"] == "sso: moved" and event.after["to"] == "u1"
        told = [m.payload["title"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                if m.payload.get("user_id") == u1.user_id]
        assert any("已调离本单位" in t and "2 项" in t for t in told), told


def test_a_completion_while_the_move_holds_the_task_is_refused_and_a_completion_before_it_stands(
        factory: sessionmaker[Session], meanwhile: Meanwhile) -> None:  # noqa: F811
    """u0 submits the old unit's task while the login that moves them has read it: the submission waits for the move,
    then finds the task released (refused, nothing written); a second task submitted before the move stays done."""
    claimed, named = _claimed_and_named(factory)
    with factory() as s:
        u0 = actor_for(s, "u0")
        named_task = s.get(HumanTask, named)
        assert named_task is not None
        named_task.candidates.append(TaskCandidate(org_unit_id=_unit_id(s, "dept")))
        s.commit()
        tasks.complete(s, task_id=named, actor=u0, data={})  # before the move: done, whatever the move does
        s.commit()
    meanwhile.at(handover, "_theirs", lambda s: tasks.complete(s, task_id=claimed, actor=u0, data={}).task,
                 after=True)
    with factory() as s:
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
    outcome = meanwhile.join()
    assert len(outcome) == 1 and isinstance(outcome[0], EngineError), outcome
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None and task.state != "completed"  # back in the pool
        done = s.get(HumanTask, named)
        assert done is not None and done.state == "completed"


def test_a_step_they_delegated_from_the_old_unit_goes_back_to_its_pool_when_the_delegate_gives_it_back(
        factory: sessionmaker[Session]) -> None:
    claimed, _named = _claimed_and_named(factory)
    with factory() as s:
        operations.delegate(s, task_id=claimed, actor=actor_for(s, "u0"), to_username="u1")
        s.commit()
        sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        s.commit()
        u1 = actor_for(s, "u1")
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id == u1.user_id and task.owner_id is None  # u1 keeps working on it
        operations.resolve_delegation(s, task_id=claimed, actor=u1, opinion="已核实")
        s.commit()
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None  # back in 审批部门's pool, not with u0 in 自然资源局
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "task.hand_over",
                                                   AuditEvent.object_id == str(claimed))).one()
        assert event.before["owner_id"] == actor_for(s, "u0").user_id and event.after["reason"] == "sso: moved"
