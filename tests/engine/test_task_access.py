"""The task access table (Trust I item 5): every cell through the services, and the holes it closes."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import tasks
from engine.errors import Forbidden, InstanceNotFound, NotYourTask, TaskNotFound
from engine.org.actors import Actor, actor_for
from engine.runtime.models import ProcessInstance
from engine.tasks import access, operations, sendback, task_access, taskview
from engine.tasks.models import HumanTask
from engine.tasks.task_access import TABLE, Op, Rel
from tests import access_world
from tests.access_world import SERVICE, build, prepare


@pytest.fixture
def world(session: Session, review_org: dict[str, Actor]) -> Session:
    prepare(session)
    return session


def test_hole5_the_table_names_every_operation_and_relation() -> None:
    assert set(TABLE) == set(Op) == set(SERVICE)
    assert set(access_world.RELATIONS) - {"stranger"} == {r.value for r in Rel}
    for op, allowed in TABLE.items():
        assert allowed <= set(Rel), op


@pytest.mark.parametrize("relation", list(access_world.ACTORS))
def test_hole5_every_cell_through_the_services(world: Session, relation: str) -> None:
    session = world
    where = build(session, relation)
    actor = actor_for(session, where.actor)
    task = session.get(HumanTask, where.task_id)
    assert task is not None
    assert task_access.relations(session, actor, task) == access_world.RELATIONS[relation]
    outcome: dict[Op, bool] = {}
    unseen: set[Op] = set()
    for op, call in SERVICE.items():
        savepoint = session.begin_nested()
        try:
            call(session, actor, where)
            outcome[op] = True
        except (NotYourTask, Forbidden):
            outcome[op] = False
        except TaskNotFound as exc:  # may not see it at all: told as of a task that does not exist
            assert exc.message == f"任务不存在 (no such task): {exc.details['task_id']}", exc.message
            outcome[op] = False
            unseen.add(op)
        finally:
            savepoint.rollback()
        session.expire_all()
    wanted = {op: task_access.allows(op, access_world.RELATIONS[relation]) for op in Op}
    assert outcome == wanted
    assert unseen == (set(Op) if relation == "stranger" else set()), unseen
    # The task page offers exactly what the table allows.
    instance = session.get(ProcessInstance, task.instance_id)
    assert instance is not None
    page = taskview.abilities(session, actor, task, instance)
    assert page.claim == (wanted[Op.CLAIM] and task.assignee_id is None)
    assert page.complete == (wanted[Op.COMPLETE] and not task.blocked)
    assert page.unclaim == (wanted[Op.UNCLAIM] and task.kind == "bpmn")
    assert page.resolve == wanted[Op.RESOLVE] and page.urge == wanted[Op.URGE]
    assert page.handle == (wanted[Op.TRANSFER] and task.kind == "bpmn")
    assert page.remove_cosigner == wanted[Op.REMOVE_COSIGNER]


def test_an_instance_one_may_not_see_is_refused_as_one_that_does_not_exist(world: Session) -> None:
    where = build(world, "holder")
    task = world.get(HumanTask, where.task_id)
    assert task is not None
    stranger, fg = actor_for(world, "stranger"), actor_for(world, "fg")
    told = []
    for instance_id in (task.instance_id, 10**6):
        with pytest.raises(InstanceNotFound) as refused:
            access.require_view(world, stranger, instance_id)
        told.append((refused.value.code, refused.value.http_status, refused.value.message.replace(str(instance_id), "#"),
                     refused.value.details == {"instance_id": instance_id}))
    assert told[0] == told[1] == ("instance_not_found", 404, "流程实例不存在 (no such instance): #", True)
    access.require_view(world, fg, task.instance_id)  # its holder sees it


def _delegated(session: Session) -> tuple[HumanTask, Actor]:
    where = build(session, "delegate")
    task = session.get(HumanTask, where.task_id)
    assert task is not None
    return task, actor_for(session, "zr")


def test_hole5_delegate_cannot_transfer(world: Session) -> None:
    task, zr = _delegated(world)
    with pytest.raises(NotYourTask):
        operations.transfer(world, task_id=task.id, actor=zr, to_username="window")
    world.rollback()
    assert world.get(HumanTask, task.id).owner_id == actor_for(world, "fg").user_id  # type: ignore[union-attr]


def test_hole5_delegate_cannot_unclaim_send_back_or_add_cosigners(world: Session) -> None:
    task, zr = _delegated(world)
    with pytest.raises(NotYourTask):
        tasks.unclaim(world, task_id=task.id, actor=zr)
    with pytest.raises(NotYourTask):
        sendback.send_back(world, task_id=task.id, actor=zr, reason="退回")
    with pytest.raises(NotYourTask):
        operations.add_cosigners(world, task_id=task.id, actor=zr, usernames=["window"], position="before")
    world.rollback()
    again = world.get(HumanTask, task.id)
    assert again is not None and again.assignee_id == zr.user_id and again.delegation_state == "pending"
    assert world.scalars(select(HumanTask).where(HumanTask.parent_task_id == task.id,
                                                 HumanTask.assignee_id != None)).all()  # noqa: E711
    # The owner cannot act on it either until it comes back.
    fg = actor_for(world, "fg")
    with pytest.raises(NotYourTask):
        tasks.complete(world, task_id=task.id, actor=fg, data={})
    operations.resolve_delegation(world, task_id=task.id, actor=zr, opinion="建议同意")
    tasks.complete(world, task_id=task.id, actor=fg, data={}, opinion="同意")


def test_hole5_a_co_signer_may_only_sign(world: Session) -> None:
    where = build(world, "cosigner")
    boss = actor_for(world, "boss")
    with pytest.raises(NotYourTask):
        operations.transfer(world, task_id=where.task_id, actor=boss, to_username="window")
    with pytest.raises(NotYourTask):
        tasks.unclaim(world, task_id=where.task_id, actor=boss)
    tasks.complete(world, task_id=where.task_id, actor=boss, data={}, opinion="同意")
