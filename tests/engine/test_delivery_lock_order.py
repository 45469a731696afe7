"""A submission and a message or signal delivered to the same instance at once (PostgreSQL: row locks).

A delivery read its instance without a lock; its save's one statement updated the instance's row and then the task
rows it closed. A submission's save locks its task's row (the claim) and then the instance's: run at once, each waited
for the other until PostgreSQL ended one as a deadlock. Now the delivery's one read takes the instance FOR UPDATE
(runtime.load(lock=True)), as the timer sweep and 终止 do: the submission's first read (FOR KEY SHARE) and the delivery
wait for one another; one wins whole, the other is refused cleanly (409) or finds the instance no longer waiting.
"""
from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, tasks
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import core as runtime_core
from engine.runtime import instances, messages, projection, signals
from engine.runtime.message_models import BpmnMessage, SignalDelivery
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.engine.test_lock_order import _race, _refused, _verified
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)

# review (fg's department), which a withdrawal message or a plan_revised signal ends at once
WITHDRAWABLE = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:message id="m_withdraw" name="withdraw_review" />
  <bpmn:signal id="s_revised" name="review_revised" />
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="withdrawable_review" /></bpmn:collaboration>
  <bpmn:process id="withdrawable_review" name="可撤回审查" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="review" name="部门审查"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="withdrawn" name="申请撤回" attachedToRef="review" cancelActivity="true">
      <bpmn:outgoing>f3</bpmn:outgoing><bpmn:messageEventDefinition messageRef="m_withdraw" />
    </bpmn:boundaryEvent>
    <bpmn:boundaryEvent id="revised" name="计划调整" attachedToRef="review" cancelActivity="true">
      <bpmn:outgoing>f4</bpmn:outgoing><bpmn:signalEventDefinition signalRef="s_revised" />
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="withdrawn_end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="revised_end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="done" />
    <bpmn:sequenceFlow id="f3" sourceRef="withdrawn" targetRef="withdrawn_end" />
    <bpmn:sequenceFlow id="f4" sourceRef="revised" targetRef="revised_end" />
  </bpmn:process>
</bpmn:definitions>
"""
_keys = itertools.count(1)


@pytest.fixture
def deployed(session: Session, review_org: dict[str, Actor]) -> dict[str, Actor]:
    deploy.deploy(session, {"withdrawable.bpmn": WITHDRAWABLE.encode()}, actor=SYSTEM)
    session.commit()
    return review_org


def start(session: Session, org: dict[str, Actor]) -> tuple[int, int, str]:
    """Start one (a business key of its own); fg claims its review (commits). Its id, the review's, the key."""
    key = f"APP-{next(_keys)}"
    row = instances.start(session, process_key="withdrawable_review", actor=org["applicant"], business_key=key)
    session.commit()
    review = session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "review",
                                                     HumanTask.state == "ready")).one()
    tasks.claim(session, task_id=review.id, actor=org["fg"])
    session.commit()
    return row.id, review.id, key


def _submit(task_id: int) -> Work:
    return lambda s: tasks.complete(s, task_id=task_id, actor=actor_for(s, "fg"), data={"fg_says": "同意"})


def _withdraw(key: str) -> Work:
    return lambda s: messages.publish(s, name="withdraw_review", actor=SYSTEM, business_key=key,
                                      payload={"why": "重复申报"})


def _signal(session: Session, instance_id: int) -> Work:
    """Broadcast the signal (commits); the work delivers it to the instance, as the worker does."""
    signals.broadcast(session, name="review_revised", actor=SYSTEM)
    session.commit()
    delivery_id = session.scalars(select(SignalDelivery.id).where(SignalDelivery.instance_id == instance_id,
                                                                  SignalDelivery.state == "pending")).one()
    session.close()
    return lambda s: signals.deliver_one(s, delivery_id)


def _deliver(session: Session, kind: str, instance_id: int, key: str) -> Work:
    return _withdraw(key) if kind == "message" else _signal(session, instance_id)


def _steps(factory: sessionmaker[Session], instance_id: int) -> tuple[str, dict[str, str]]:
    with factory() as s:
        row = s.get(ProcessInstance, instance_id)
        assert row is not None
        return row.status, {t.bpmn_id: t.state for t in s.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.kind == "bpmn"))}


def _delivered(factory: sessionmaker[Session], kind: str, instance_id: int) -> bool:
    """Whether the message (the signal) reached the instance: its row delivered (the delivery done)."""
    with factory() as s:
        if kind == "message":
            return s.scalar(select(BpmnMessage.id).where(BpmnMessage.name == "withdraw_review",
                                                         BpmnMessage.instance_id == instance_id,
                                                         BpmnMessage.status == "delivered")) is not None
        states = list(s.scalars(select(SignalDelivery.state).where(SignalDelivery.instance_id == instance_id)))
        assert states and all(st in ("done", "skipped", "pending") for st in states), states
        return states == ["done"]


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_a_submission_made_while_a_delivery_is_under_way_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, kind: str) -> None:  # noqa: F811
    """The delivery has read the instance when fg submits: the submission waits for it (was: it went through, and the
    delivery's save conflicted), then finds the review cancelled (409) and writes nothing."""
    instance_id, review, key = start(session, deployed)
    deliver = _deliver(session, kind, instance_id, key)
    meanwhile.at(runtime_core, "load", _submit(review), after=True)
    assert _act(factory, lambda s, a: deliver(s)) == "done"
    [submitted] = meanwhile.join()
    _refused(submitted)
    assert _steps(factory, instance_id) == ("completed", {"review": "cancelled"})
    assert _delivered(factory, kind, instance_id)
    _verified(factory)


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_a_delivery_made_while_a_submission_is_under_way_waits_and_finds_it_done(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, kind: str) -> None:  # noqa: F811
    """fg's submission has read its task (the instance key-share locked) when the message or signal comes: the
    delivery waits for it (was: it went through, and the submission's save conflicted), then finds the instance
    completed and no longer waiting: the message is not delivered (kept), the signal's delivery skipped."""
    instance_id, review, key = start(session, deployed)
    deliver = _deliver(session, kind, instance_id, key)
    meanwhile.at(projection, "write_postgres", deliver)
    assert _act(factory, lambda s, a: _submit(review)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    assert not _delivered(factory, kind, instance_id)
    _verified(factory)


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_submissions_racing_a_delivery_never_deadlock(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, kind: str) -> None:  # noqa: F811
    """Started at once, a few times over, in both orders: never a deadlock (nor a lock wait ended by PostgreSQL); one
    wins whole, the other is refused cleanly (409) or finds the instance no longer waiting."""
    for round_ in range(6):
        instance_id, review, key = start(session, deployed)
        deliver = _deliver(session, kind, instance_id, key)
        works = [_submit(review), deliver] if round_ % 2 else [deliver, _submit(review)]
        outcomes: list[Any] = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        submitted, delivered = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        assert delivered == "done", outcomes
        status, steps = _steps(factory, instance_id)
        assert status == "completed"
        if submitted == "done":
            assert steps == {"review": "completed"} and not _delivered(factory, kind, instance_id)
        else:
            _refused(submitted)
            assert steps == {"review": "cancelled"} and _delivered(factory, kind, instance_id)
    _verified(factory)
