"""Co-signers (加签) follow their instance when an administrator suspends it (挂起) and resumes it (恢复).

Before, suspending set the instance's open bpmn rows aside (state suspended) but left the co-signers' rows ready: a
co-signer could still sign, and the last signature unblocked the parent inside a suspended instance. Now the save
that suspends the parent sets its asked co-signers aside too (ready → suspended; pending ones were never asked and
stay pending), the save that resumes it gives them back (suspended → ready), and a co-signer can neither sign nor be
urged meanwhile (409 naming the suspension; nothing changes).
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, tasks
from engine.errors import EngineError, InstanceNotRunning
from engine.org.actors import Actor, actor_for
from engine.runtime import instances, projection
from engine.runtime.models import ProcessInstance
from engine.tasks import operations
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from tests.engine.test_cosigners_closed import events, start, states, with_cosigners
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)


def _lock_version(session: Session, instance_id: int) -> int:
    return int(session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id)) or 0)


def _refused(session: Session, factory: sessionmaker[Session], instance_id: int, task_ids: list[int],
             act: Any) -> EngineError:
    """`act` is refused because the instance is suspended (409), and nothing of it stays."""
    session.commit()
    before = (states(session, factory, task_ids), _lock_version(session, instance_id), events(session, instance_id))
    with pytest.raises(EngineError) as refused:
        act()
    session.rollback()
    assert (states(session, factory, task_ids), _lock_version(session, instance_id),
            events(session, instance_id)) == before
    return refused.value


def _suspended_error(error: EngineError) -> None:
    assert isinstance(error, InstanceNotRunning) and error.http_status == 409, error
    assert "挂起" in error.message and "suspended" in error.message


def test_suspending_sets_the_co_signers_aside_and_resuming_gives_them_back_as_they_were(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)  # zr ready (before fg), st pending (after fg)
    ids = [review.id, cosigners["zr"], cosigners["st"]]
    instances.suspend(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    assert states(session, factory, ids) == [("suspended", False), ("suspended", False), ("pending", False)]
    assert tasks.open_tasks(session, review_org["zr"]) == []  # not in zr's 待办 while suspended
    # zr may not sign; an administrator may not urge zr; a stranger learns nothing more than before
    _suspended_error(_refused(session, factory, instance_id, ids, lambda: tasks.complete(
        session, task_id=cosigners["zr"], actor=review_org["zr"], data={}, opinion="同意")))
    _suspended_error(_refused(session, factory, instance_id, ids, lambda: operations.urge(
        session, task_id=cosigners["zr"], actor=review_org["admin"], message="请尽快")))
    stranger = _refused(session, factory, instance_id, ids, lambda: tasks.complete(
        session, task_id=cosigners["zr"], actor=review_org["boss"], data={}, opinion="同意"))
    assert stranger.http_status == 404  # one who may not see the task: as if it did not exist
    assert not session.scalars(select(Comment).where(Comment.task_id == cosigners["zr"])).all()
    instances.resume(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    assert states(session, factory, ids) == [("ready", False), ("ready", False), ("pending", False)]
    assert cosigners["zr"] in [t.id for t in tasks.open_tasks(session, review_org["zr"])]
    tasks.complete(session, task_id=cosigners["zr"], actor=review_org["zr"], data={}, opinion="同意")
    session.commit()
    assert states(session, factory, ids[:2]) == [("ready", False), ("completed", True)]
    with factory() as s:
        assert s.get(HumanTask, review.id).blocked is False  # type: ignore[union-attr]
        assert audit.verify(s).ok


def test_a_held_submission_waits_through_the_suspension_and_goes_on_after(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    """fg submitted; st was asked (ready) to sign it. Suspended, st cannot sign (the held submission stays held);
    resumed, st signs and the review completes with fg's data."""
    instance_id, review = start(session, review_org)
    [after] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["st"],
                                       position="after")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"})
    session.commit()
    instances.suspend(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    assert states(session, factory, [review.id, after.id]) == [("suspended", False), ("suspended", False)]
    _suspended_error(_refused(session, factory, instance_id, [review.id, after.id], lambda: tasks.complete(
        session, task_id=after.id, actor=review_org["st"], data={}, opinion="同意")))
    instances.resume(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    assert states(session, factory, [review.id, after.id]) == [("ready", False), ("ready", False)]
    tasks.complete(session, task_id=after.id, actor=review_org["st"], data={}, opinion="同意")
    session.commit()
    assert states(session, factory, [review.id, after.id]) == [("completed", True), ("completed", True)]


def test_terminating_a_suspended_instance_cancels_its_set_aside_co_signers(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)
    instances.suspend(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    instances.terminate(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    assert states(session, factory, [review.id, cosigners["zr"], cosigners["st"]]) == [("cancelled", True)] * 3


def test_the_holder_cannot_add_or_remove_co_signers_while_suspended(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    """加签 would ask someone to sign in a suspended instance; 减签 of zr would unblock the review there."""
    instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)
    instances.suspend(session, instance_id=instance_id, actor=review_org["admin"])
    session.commit()
    ids = [review.id, cosigners["zr"], cosigners["st"]]
    _suspended_error(_refused(session, factory, instance_id, ids, lambda: operations.add_cosigners(
        session, task_id=review.id, actor=review_org["fg"], usernames=["boss"], position="before")))
    _suspended_error(_refused(session, factory, instance_id, ids, lambda: operations.remove_cosigner(
        session, cosign_task_id=cosigners["zr"], actor=review_org["fg"])))
    review_id = review.id
    session.commit()
    with factory() as s:
        assert s.get(HumanTask, review_id).blocked is True  # type: ignore[union-attr]
        assert len(s.scalars(select(HumanTask).where(HumanTask.parent_task_id == review_id)).all()) == 2


@pytest.mark.parametrize("first", ["suspend", "sign"])
def test_a_co_signer_signing_while_an_admin_suspends_one_wins_whole(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, first: str) -> None:  # noqa: F811
    """zr signs at the moment the administrator suspends. The suspension first: the signature is refused (409
    suspended) and leaves nothing. The signature first: it is kept, the review unblocked, and then suspended."""
    instance_id, review = start(session, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position="before")
    session.commit()
    sign: Work = lambda s: tasks.complete(s, task_id=cosign.id, actor=actor_for(s, "zr"), data={},  # noqa: E731
                                           opinion="同意")
    suspend: Work = lambda s: instances.suspend(s, instance_id=instance_id, actor=actor_for(s, "admin"))  # noqa: E731
    if first == "suspend":  # the suspension's save about to write: zr signs then
        meanwhile.at(projection, "write_postgres", sign, after=True)
        outcome = _act(factory, lambda s, a: suspend(s))
    else:  # zr's signature written (the review's row locked): the admin suspends then
        meanwhile.at(operations, "_after_cosign", suspend)
        outcome = _act(factory, lambda s, a: sign(s))
    other = meanwhile.join()
    suspended, signed = ([outcome, *other] if first == "suspend" else [*other, outcome])
    assert suspended == "done", suspended
    with factory() as s:
        parent, row = s.get(HumanTask, review.id), s.get(HumanTask, cosign.id)
        assert parent is not None and row is not None and parent.state == "suspended"
        assert row.state == ("suspended" if first == "suspend" else "completed"), (row.state, signed)
        if first == "suspend":  # the suspension won: nothing of the signature stayed
            _suspended_error(signed)  # type: ignore[arg-type]
            assert parent.blocked and row.completed_by_id is None
            assert not s.scalars(select(Comment).where(Comment.task_id == cosign.id)).all()
        else:  # the signature won, whole
            assert signed == "done" and row.state == "completed", signed
            assert not parent.blocked
        assert audit.verify(s).ok
