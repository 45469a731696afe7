"""停用 hands over the person's open work, in the same transaction, the way the directory sync does for a leaver.

One service (`engine.org.deactivate_user`) for every path: the admin page, the directory sync. Each situation is
tests/access_world.py's review task (three_steps) in one relation to the person deactivated; on SQLite and
PostgreSQL. Hostile: an unknown, deactivated or self-naming successor (接手人), work nobody else could take,
two administrators deactivating the same person at once.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import EngineError, InvalidInput, NotFound
from engine.notify.models import OutboxMessage
from engine.org import leaving
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from engine.tasks import operations
from engine.tasks.models import HumanTask, TaskCandidate
from tests import access_world
from tests.engine.conftest import at_once
from tests.engine.test_task_lost_updates import Meanwhile, meanwhile  # noqa: F401 (its fixture)

pytestmark = pytest.mark.usefixtures("review_org")


def _id(s: Session, username: str) -> int:
    found = s.scalar(select(User.id).where(User.username == username))
    assert found is not None, username
    return found


def _unit(s: Session, code: str) -> int:
    found = s.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    assert found is not None, code
    return found


def _task(s: Session, task_id: int) -> HumanTask:
    s.expire_all()
    task = s.get(HumanTask, task_id)
    assert task is not None
    return task


def _events(s: Session, task_id: int) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.object_type == "human_task",
                                                   AuditEvent.object_id == str(task_id),
                                                   AuditEvent.action.in_(("task.return_to_candidates",
                                                                          "task.hand_over")))
                          .order_by(AuditEvent.id)))


def _situation(session: Session, relation: str) -> access_world.Situation:
    access_world.prepare(session)
    return access_world.build(session, relation)


def test_a_claimed_task_goes_back_to_its_candidates_audited(session: Session) -> None:
    where = _situation(session, "holder")  # fg holds the review; its lane's role (审批部门) are its candidates
    done = leaving.deactivate_user(session, user_id=_id(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.handed_over == [where.task_id] and done.successor is None
    task = _task(session, where.task_id)
    assert task.assignee_id is None and task.state == "ready"
    assert {c.org_unit_id for c in task.candidates} == {None}  # others could claim it: no unit added
    [event] = _events(session, where.task_id)
    assert event.action == "task.return_to_candidates" and event.before["assignee_id"] == _id(session, "fg")
    assert event.actor_id == _id(session, "admin") and event.after["reason"]
    assert not session.get(User, _id(session, "fg")).is_active  # type: ignore[union-attr]


def test_a_task_offered_to_them_alone_goes_to_their_unit(session: Session) -> None:
    where = _situation(session, "candidate")  # unclaimed: offered to the reviewer role
    task = _task(session, where.task_id)
    task.candidates.clear()
    task.candidates.append(TaskCandidate(user_id=_id(session, "fg")))
    session.commit()
    done = leaving.deactivate_user(session, user_id=_id(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.handed_over == [where.task_id]
    task = _task(session, where.task_id)
    assert task.assignee_id is None and _unit(session, "fgj") in {c.org_unit_id for c in task.candidates}
    assert [e.action for e in _events(session, where.task_id)] == ["task.return_to_candidates"]


def test_a_successor_receives_the_held_tasks_and_is_told(session: Session) -> None:
    where = _situation(session, "holder")
    done = leaving.deactivate_user(session, user_id=_id(session, "fg"), actor=actor_for(session, "admin"),
                               successor="head")
    session.commit()
    head = _id(session, "head")
    assert done.handed_over == [where.task_id] and done.successor is not None and done.successor.id == head
    task = _task(session, where.task_id)
    assert task.assignee_id == head and head in {c.user_id for c in task.candidates}
    [event] = _events(session, where.task_id)
    assert event.action == "task.hand_over" and event.after["to"] == "head"
    told = [m.payload for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
            if m.payload.get("user_id") == head]
    assert len(told) == 1 and "1" in told[0]["title"]


@pytest.mark.parametrize(("successor", "error"), [("nobody", NotFound), ("stranger-off", InvalidInput),
                                                  ("fg", InvalidInput), ("x" * 500, NotFound)])
def test_a_bad_successor_is_refused_naming_the_field_and_nothing_changes(
        session: Session, successor: str, error: type[EngineError]) -> None:
    where = _situation(session, "holder")
    org.add_user(session, username="stranger-off", display_name="已离岗")
    leaving.deactivate_user(session, user_id=_id(session, "stranger-off"), actor=actor_for(session, "admin"))
    session.commit()
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(error) as caught:
        leaving.deactivate_user(session, user_id=_id(session, "fg"), actor=actor_for(session, "admin"),
                            successor=successor)
    session.rollback()
    assert caught.value.details.get("field") == "successor" and "接手人" in str(caught.value)
    assert len(str(caught.value)) < 300  # the name it echoes is cut
    assert session.get(User, _id(session, "fg")).is_active  # type: ignore[union-attr]
    assert _task(session, where.task_id).assignee_id == _id(session, "fg")
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_a_co_signer_leaving_hands_their_signature_to_the_successor(session: Session) -> None:
    where = _situation(session, "cosigner")  # boss co-signs before fg; the review waits for him
    done = leaving.deactivate_user(session, user_id=_id(session, "boss"), actor=actor_for(session, "admin"),
                               successor="head")
    session.commit()
    assert done.handed_over == [where.task_id]
    cosign = _task(session, where.task_id)
    assert cosign.kind == "cosign" and cosign.state == "ready" and cosign.assignee_id == _id(session, "head")
    assert _task(session, where.parent_id).blocked  # still waits for the signature, now head's


def test_work_nobody_else_could_take_needs_a_successor(session: Session) -> None:
    """boss belongs to no unit, and his co-sign task names him alone: without a successor it would be stuck."""
    where = _situation(session, "cosigner")
    with pytest.raises(InvalidInput) as caught:
        leaving.deactivate_user(session, user_id=_id(session, "boss"), actor=actor_for(session, "admin"))
    session.rollback()
    assert caught.value.details.get("field") == "successor" and "接手人" in str(caught.value)
    assert session.get(User, _id(session, "boss")).is_active  # type: ignore[union-attr]
    assert _task(session, where.task_id).assignee_id == _id(session, "boss")


def test_a_co_signer_asked_after_the_holder_goes_to_their_unit(session: Session) -> None:
    """cs (住建) is asked to co-sign after fg: the task waits (state pending) and is cs's all the same."""
    where = _situation(session, "holder")
    done = leaving.deactivate_user(session, user_id=_id(session, "cs"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.handed_over == [where.removable_id]
    cosign = _task(session, where.removable_id)
    assert cosign.state == "pending" and cosign.assignee_id is None
    assert _unit(session, "zj") in {c.org_unit_id for c in cosign.candidates}


def test_a_task_delegated_to_them_goes_back_to_whoever_delegated_it(session: Session) -> None:
    where = _situation(session, "delegate")  # fg delegated the review to zr
    done = leaving.deactivate_user(session, user_id=_id(session, "zr"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.handed_over == [where.task_id]
    task = _task(session, where.task_id)
    assert task.assignee_id == _id(session, "fg") and task.delegation_state == "resolved"
    [event] = _events(session, where.task_id)
    assert event.action == "task.hand_over" and event.after["to"] == "fg"


def test_a_task_they_delegated_comes_back_to_its_candidates_not_to_them(session: Session) -> None:
    where = _situation(session, "owner")  # fg delegated the review to zr, and leaves
    leaving.deactivate_user(session, user_id=_id(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    task = _task(session, where.task_id)
    assert task.assignee_id == _id(session, "zr") and task.delegation_state == "pending" and task.owner_id is None
    operations.resolve_delegation(session, task_id=where.task_id, actor=actor_for(session, "zr"), opinion="建议同意")
    session.commit()
    task = _task(session, where.task_id)
    assert task.assignee_id is None  # back to the reviewers, not to a person who can no longer log in


def test_two_admins_deactivating_the_same_person_hand_over_once(
        factory: sessionmaker[Session], session: Session) -> None:
    where = _situation(session, "holder")
    org.add_user(session, username="admin2", display_name="管理员二", is_admin=True)
    session.commit()
    fg = _id(session, "fg")
    session.close()  # SQLite: its reads began a transaction that holds the writer lock (BEGIN IMMEDIATE)

    def work(i: int) -> None:
        with factory() as s:
            leaving.deactivate_user(s, user_id=fg, actor=actor_for(s, ("admin", "admin2")[i]))
            s.commit()

    assert at_once(2, work) == [None, None]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "org.user.deactivate", AuditEvent.object_id == str(fg))) == 1
        assert len(_events(s, where.task_id)) == 1
        assert _task(s, where.task_id).assignee_id is None


def test_work_left_with_someone_already_deactivated_is_handed_over_later(session: Session) -> None:
    """The directory sync leaves what nobody else could take; an administrator names a successor afterwards."""
    where = _situation(session, "cosigner")
    boss = _id(session, "boss")
    left = leaving.deactivate_user(session, user_id=boss, refuse_stuck=False, reason="directory: left")
    session.commit()
    assert left.stuck == [where.task_id] and left.handed_over == []
    done = leaving.deactivate_user(session, user_id=boss, actor=actor_for(session, "admin"), successor="head")
    session.commit()
    assert done.handed_over == [where.task_id] and _task(session, where.task_id).assignee_id == _id(session, "head")
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "org.user.deactivate", AuditEvent.object_id == str(boss))) == 1


def _holder_and_admin2(session: Session) -> tuple[access_world.Situation, int, int]:
    """fg holds a task; a second administrator; (the situation, fg's id, head's id). Ends the session's transaction."""
    where = _situation(session, "holder")
    org.add_user(session, username="admin2", display_name="管理员二", is_admin=True)
    session.commit()
    fg, head = _id(session, "fg"), _id(session, "head")
    session.close()
    return where, fg, head


def test_a_successor_deactivated_meanwhile_does_not_keep_what_they_were_given(
        factory: sessionmaker[Session], session: Session, meanwhile: Meanwhile) -> None:  # noqa: F811
    """admin hands fg's work to head while admin2 deactivates head: head's row is share-locked from the successor
    check to the commit, so admin2's 停用 waits for it and then hands over what head was just given (was: admin2 did
    not wait, read head's tasks before they were given, and head kept fg's task, deactivated)."""
    where, fg, head = _holder_and_admin2(session)
    meanwhile.at(leaving, "_successor", lambda s: leaving.deactivate_user(
        s, user_id=head, actor=actor_for(s, "admin2"), refuse_stuck=False), after=True)
    with factory() as s:
        leaving.deactivate_user(s, user_id=fg, actor=actor_for(s, "admin"), successor="head")
        s.commit()
    assert meanwhile.join() == ["done"]
    with factory() as s:
        task = _task(s, where.task_id)
        assert task.assignee_id not in (fg, head)  # nobody deactivated holds it
        assert [e.action for e in _events(s, where.task_id)] == ["task.hand_over", "task.return_to_candidates"]


def test_a_successor_deactivated_first_is_refused(factory: sessionmaker[Session], session: Session,
                                                  meanwhile: Meanwhile) -> None:  # noqa: F811
    where, fg, head = _holder_and_admin2(session)
    meanwhile.at(leaving, "_successor", lambda s: leaving.deactivate_user(
        s, user_id=head, actor=actor_for(s, "admin2"), refuse_stuck=False))
    with factory() as s, pytest.raises(InvalidInput) as refused:
        leaving.deactivate_user(s, user_id=fg, actor=actor_for(s, "admin"), successor="head")
    assert meanwhile.join() == ["done"] and refused.value.details.get("field") == "successor"
    with factory() as s:
        assert _task(s, where.task_id).assignee_id == fg and s.get(User, fg).is_active  # type: ignore[union-attr]
