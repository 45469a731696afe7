"""催办 (the task page's and 督办's), 转办, 委派 and 委派退回 while 终止 (or the sweep) closes the task (PostgreSQL).

They took the task's row first (催办 FOR UPDATE, the others the compare-and-set that writes it) and the instance's
only afterwards, when the note they leave (its foreign key) share-locked it: 终止 and the sweep take the instance first
and the task rows after, so each waited for the other until PostgreSQL ended one as a deadlock (a 500). Now they
share-lock the instance first, as a submission, a signature or 减签: the two take turns (one that came second
after 终止 is refused, 409).
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import tasks
from engine.errors import Conflict
from engine.org.actors import Actor, actor_for
from engine.runtime import instances
from engine.tasks import operations, task_access
from engine.tasks.collab_models import Comment
from plan import supervision
from plan.supervision import actions as supervision_actions
from tests.engine.test_lock_order import _race, _verified
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)
from tests.engine.test_withdraw_lock_order import _steps, deployed, start  # noqa: F401 (deployed: its fixture)


def _terminate(instance_id: int) -> Work:
    return lambda s: instances.terminate(s, instance_id=instance_id, actor=actor_for(s, "admin"))


def _claimed(session: Session, org: dict[str, Actor]) -> tuple[int, int]:
    """An instance at its review, claimed by fg: its id and the review's."""
    instance_id, _fill, review = start(session, org)
    tasks.claim(session, task_id=review, actor=actor_for(session, "fg"))
    session.commit()
    session.close()
    return instance_id, review


def _urge(review: int) -> Work:
    return lambda s: operations.urge(s, task_id=review, actor=actor_for(s, "applicant"), message="请尽快审查")


def _supervise(review: int) -> Work:
    """An administrator's 督办 of the task (its urge comment, as the task page's)."""
    return lambda s: supervision.urge(s, seen=None, actor=actor_for(s, "admin"), object_type="task",
                                      object_id=review, message="请尽快办理")


def _transfer(review: int) -> Work:
    return lambda s: operations.transfer(s, task_id=review, actor=actor_for(s, "fg"), to_username="zr",
                                         note="请赵六办理")


def _delegate(review: int) -> Work:
    return lambda s: operations.delegate(s, task_id=review, actor=actor_for(s, "fg"), to_username="zr",
                                         note="请赵六先看")


def _resolve(review: int) -> Work:
    return lambda s: operations.resolve_delegation(s, task_id=review, actor=actor_for(s, "zr"), opinion="已看过")


OPERATIONS: dict[str, tuple[Callable[[int], Work], str, str]] = {
    # its work, where it is caught (after its first lock), the kind of note it leaves
    "urge": (_urge, "open_task", "urge"),
    "supervise": (_supervise, "open_target", "urge"),
    "transfer": (_transfer, "add_note", "transfer"),
    "delegate": (_delegate, "add_note", "delegate"),
    "resolve": (_resolve, "add_note", "opinion"),
}


def _prepared(session: Session, org: dict[str, Actor], name: str) -> tuple[int, int]:
    instance_id, review = _claimed(session, org)
    if name == "resolve":
        operations.delegate(session, task_id=review, actor=actor_for(session, "fg"), to_username="zr")
        session.commit()
        session.close()
    return instance_id, review


def _notes(factory: sessionmaker[Session], instance_id: int, kind: str) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(Comment).where(Comment.instance_id == instance_id,
                                                                            Comment.kind == kind)) or 0)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_terminate_while_an_operation_holds_the_task_waits_for_it(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, name: str) -> None:  # noqa: F811
    """终止 comes while the operation holds the task (before it writes its note): 终止 waits for it, then closes the
    task (was: each waited for the other, and PostgreSQL ended one as a deadlock)."""
    instance_id, review = _prepared(session, deployed, name)
    work, caught_at, kind = OPERATIONS[name]
    owner = {"open_task": task_access, "open_target": supervision_actions}.get(caught_at, operations)
    meanwhile.at(owner, caught_at, _terminate(instance_id))
    assert _act(factory, lambda s, a: work(review)(s)) == "done"
    assert meanwhile.join() == ["done"]
    status, steps = _steps(factory, instance_id)
    assert status == "terminated" and ("review", "cancelled") in [(b, st) for b, st, _held in steps]
    assert _notes(factory, instance_id, kind) == 1
    _verified(factory)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_an_operation_and_terminate_at_once_never_deadlock(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, name: str) -> None:  # noqa: F811 (its fixture: PostgreSQL only)
    """Started at once, in both orders: never a deadlock; 终止 always stands, the operation went first or is refused
    (409: the task was cancelled) and left no note."""
    for round_ in range(4):
        instance_id, review = _prepared(session, deployed, name)
        work, _caught_at, kind = OPERATIONS[name]
        pair = [work(review), _terminate(instance_id)]
        works = pair if round_ % 2 else pair[::-1]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        done, terminated = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        assert terminated == "done", outcomes
        if done != "done":
            assert isinstance(done, Conflict) and done.http_status == 409, outcomes  # the task (or 督办's item) closed
            assert _notes(factory, instance_id, kind) == 0
        assert _steps(factory, instance_id)[0] == "terminated"
    _verified(factory)
