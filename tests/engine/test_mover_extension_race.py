"""A person asking for more time (申请延期) on a step at the moment a move (调岗) gives it back to their old unit's pool.

The move withdraws the requests it can see once it holds the step's row. A request asked around that moment must end
one of two ways, never a third: asked first, it is withdrawn with the step (audited, the asker told); asked after, it
is refused naming the step, although the asker's page (their Actor, read when their request began) still showed them
in the unit they left. Before, a request that waited for the move's step row went on with that stale Actor and stayed
pending on a step in a pool its asker was no longer in (a leader could grant it; no one was told), and a request that
had the step's row when the move began waited for the move's lock on the person while the move waited for the step:
PostgreSQL ended one as a deadlock. Each interleaving is forced (test_mover_lock_order.Interleave). PostgreSQL only.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, org
from engine.deadlines.models import ExtensionRequest
from engine.org import leaving
from engine.org.actors import actor_for
from engine.tasks import handover
from engine.tasks.lookup import NotYourTask
from engine.tasks.models import HumanTask
from plan.supervision import actions
from tests.engine import test_mover_lock_order
from tests.engine.test_mover_lock_order import Interleave, Work, _cancels, _move_by, _run
from tests.engine.test_mover_marks import _told, _unit, _user
from tests.engine.test_moves import _claimed_and_named

interleave = test_mover_lock_order.interleave  # its fixture


def _ask(task_id: int) -> Work:
    """u0 asks for more time on the step: their Actor is read first, as the web reads it when a request begins."""
    def ask(s: Session) -> None:
        u0 = actor_for(s, "u0")
        actions.request_extension(s, actor=u0, task_id=task_id, due_date=(clock.now() + timedelta(days=30)).date(),
                                  reason="材料未齐")
    return ask


def _setup(factory: sessionmaker[Session]) -> int:
    """u0 of 审批部门 holds a step claimed from its pool (nothing asked yet); root administers."""
    claimed, _named = _claimed_and_named(factory)
    with factory() as s:
        _unit(s, "dept").responsible_leader_id = _user(s, "u1").id
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
    return claimed


def _pending(s: Session, task_id: int) -> list[ExtensionRequest]:
    return list(s.scalars(select(ExtensionRequest).where(ExtensionRequest.object_id == task_id,
                                                         ExtensionRequest.status == "pending")))


def _given_back(s: Session, task_id: int) -> HumanTask:
    task = s.get(HumanTask, task_id)
    assert task is not None and task.assignee_id is None and task.state == "ready"  # back in 审批部门's pool
    return task


def _refused_naming_the_step(asked: BaseException | None, task: HumanTask) -> None:
    assert isinstance(asked, NotYourTask), repr(asked)
    assert task.name in str(asked) and "申请延期" in str(asked), str(asked)


@pytest.mark.parametrize("path", ["sso", "admin"])
@pytest.mark.parametrize("after", [True, False], ids=["after_give_back", "before_give_back"])
def test_a_request_begun_during_a_move_is_refused_naming_the_step(
        factory: sessionmaker[Session], interleave: Interleave, path: str, after: bool) -> None:
    """The request begins once the move holds the step's row (given back: `after`): it waits, then finds the step no
    longer theirs to ask on, although its Actor was read while they were still in the unit. Or it begins once the
    move has locked the person's pending requests, before it takes the step's row: no deadlock; the move goes
    through and the request is refused naming the step."""
    claimed = _setup(factory)
    interleave.at(handover, "give_back", _ask(claimed), after=after)
    moved = _run(factory, _move_by(path))
    asked = interleave.join()
    assert moved is None, repr(moved)
    with factory() as s:
        task = _given_back(s, claimed)
        assert not _pending(s, claimed)
        _refused_naming_the_step(asked, task)


@pytest.mark.parametrize("path", ["sso", "admin"])
def test_a_move_begun_while_the_person_asks_waits_then_withdraws_the_request_and_tells_them(
        factory: sessionmaker[Session], interleave: Interleave, path: str) -> None:
    """The move begins once the request holds the step's row: the request is asked, then withdrawn with the step."""
    claimed = _setup(factory)
    interleave.at(audit, "record", _move_by(path))  # the request's row made, its audit event next
    asked = _run(factory, _ask(claimed))
    moved = interleave.join()
    assert asked is None, repr(asked)
    assert moved is None, repr(moved)
    with factory() as s:
        task = _given_back(s, claimed)
        assert not _pending(s, claimed)
        request = s.scalar(select(ExtensionRequest).where(ExtensionRequest.object_id == claimed))
        assert request is not None and request.status == "cancelled"
        assert len(_cancels(s)) == 1
        assert any("延期申请已撤回" in t and task.name in t for t in _told(s, _user(s, "u0").id))


def test_a_request_after_a_deactivation_that_began_first_is_refused(
        factory: sessionmaker[Session], interleave: Interleave) -> None:
    """停用 the same way: a request waiting for it finds its asker deactivated and the step handed over."""
    claimed = _setup(factory)

    def deactivate(s: Session) -> None:
        leaving.deactivate_user(s, user_id=_user(s, "u0").id, actor=actor_for(s, "root"), successor="u1")

    interleave.at(handover, "hand_over", _ask(claimed), after=True)
    left = _run(factory, deactivate)
    asked = interleave.join()
    assert left is None, repr(left)
    with factory() as s:
        assert not _pending(s, claimed)
        assert isinstance(asked, NotYourTask), repr(asked)


def test_a_request_with_an_actor_read_before_a_committed_move_is_refused(factory: sessionmaker[Session]) -> None:
    """No overlap needed (SQLite too): the page's Actor was read before the move, the request arrives after it."""
    claimed = _setup(factory)
    with factory() as s:
        stale = actor_for(s, "u0")
        s.commit()
    assert _run(factory, _move_by("admin")) is None
    with factory() as s:
        with pytest.raises(NotYourTask) as refused:
            actions.request_extension(s, actor=stale, task_id=claimed, reason="材料未齐",
                                      due_date=(clock.now() + timedelta(days=30)).date())
        s.rollback()
        _refused_naming_the_step(refused.value, _given_back(s, claimed))
        assert not _pending(s, claimed)
