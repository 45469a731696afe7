"""退回 and the timer sweep at once on one instance (PostgreSQL: row locks; SQLite has one writer).

A 退回 locked the task rows it closes (and, acting on a group task, claimed its row first), then loaded the instance
and saved it, updating the instance's row: the task rows first. The sweep takes the instance FOR UPDATE and then its
save closes the task its interrupting timer ends: the instance first. Run at once, each waited for the other until
PostgreSQL ended one as a deadlock. Now a 退回 (and 撤回) takes the instance in its load's one read
(`runtime.load(…, lock=True)`) before any task row: one waits for the other (or the sweep passes the instance by, SKIP
LOCKED, and fires at its next run); one wins whole, the other is refused cleanly (409).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, tasks
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, projection, timers
from engine.runtime.models import ProcessInstance
from engine.tasks import lookup, sendback
from engine.tasks.models import HumanTask
from tests.engine.test_cosigners_closed import _fire_at_once
from tests.engine.test_lock_order import _race, _refused, _verified
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)

# the applicant fills, fg's department reviews within an hour (or its leader takes over)
TIMED_FILL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="timed_fill" /></bpmn:collaboration>
  <bpmn:process id="timed_fill" name="限时申报" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="申请人"><bpmn:flowNodeRef>fill</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l3" name="领导"><bpmn:flowNodeRef>escalate</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill" name="填报"><bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f1</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="review" name="部门审查"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="late" name="超过1小时" attachedToRef="review" cancelActivity="true">
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="td"><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"PT1H"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:userTask id="escalate" name="领导督办"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="done_late"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="fill" />
    <bpmn:sequenceFlow id="f1" sourceRef="fill" targetRef="review" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="done" />
    <bpmn:sequenceFlow id="f3" sourceRef="late" targetRef="escalate" />
    <bpmn:sequenceFlow id="f4" sourceRef="escalate" targetRef="done_late" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def deployed(session: Session, review_org: dict[str, Actor]) -> dict[str, Actor]:
    deploy.deploy(session, {"timed_fill.bpmn": TIMED_FILL.encode()}, actor=SYSTEM)
    session.commit()
    return review_org


def start(session: Session, org: dict[str, Actor], *, claimed: bool = True) -> tuple[int, int]:
    """Start one; the applicant fills; fg claims the review unless not `claimed` (commits, closes). Its id, the review's."""
    row = instances.start(session, process_key="timed_fill", actor=org["applicant"])
    session.commit()

    def open_(bpmn_id: str) -> HumanTask:
        return session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == bpmn_id,
                                                       HumanTask.state == "ready")).one()
    fill = open_("fill")
    tasks.complete(session, task_id=fill.id, actor=org["applicant"], data={"amount": 1})
    session.commit()
    review = open_("review")
    if claimed:
        tasks.claim(session, task_id=review.id, actor=org["fg"])
        session.commit()
    instance_id, review_id = row.id, review.id
    session.close()
    return instance_id, review_id


def _send_back(task_id: int) -> Work:
    return lambda s: sendback.send_back(s, task_id=task_id, actor=actor_for(s, "fg"), reason="材料不全")


def _steps(factory: sessionmaker[Session], instance_id: int) -> tuple[str, list[tuple[str, str]]]:
    with factory() as s:
        row = s.get(ProcessInstance, instance_id)
        assert row is not None
        return row.status, [(t.bpmn_id, t.state) for t in s.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.kind == "bpmn")
            .order_by(HumanTask.id))]


SENT_BACK = ("running", [("fill", "completed"), ("review", "cancelled"), ("fill", "ready")])
TIMED_OUT = ("running", [("fill", "completed"), ("review", "cancelled"), ("escalate", "ready")])


@pytest.mark.parametrize("claimed", [True, False])
def test_the_sweep_passes_by_an_instance_being_sent_back_and_the_send_back_wins(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, claimed: bool) -> None:  # noqa: F811
    """fg's 退回 has locked what it closes when the sweep runs (was: the sweep took the instance, waited for the review's
    row, the 退回's save waited for the instance: a deadlock). Now the sweep passes the instance by (SKIP LOCKED), the
    退回 reopens the applicant's step, and the next sweep has no timer left to fire (the review is gone)."""
    instance_id, review = start(session, deployed, claimed=claimed)
    clock.advance(timedelta(hours=2))
    meanwhile.at(projection, "write_postgres", lambda s: _fire_at_once(s))
    assert _act(factory, lambda s, a: _send_back(review)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == SENT_BACK
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert _steps(factory, instance_id) == SENT_BACK
    _verified(factory)


@pytest.mark.parametrize("claimed", [True, False])
def test_a_send_back_made_while_the_sweep_fires_its_timer_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, claimed: bool) -> None:  # noqa: F811
    """The sweep holds the instance when fg sends the review back: the 退回 waits for it (was: a deadlock), then finds
    the review closed by the timer (409) and writes nothing (no claim either)."""
    instance_id, review = start(session, deployed, claimed=claimed)
    clock.advance(timedelta(hours=2))
    meanwhile.at(timers, "fire_taken", _send_back(review))
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    [sent] = meanwhile.join()
    _refused(sent)
    assert _steps(factory, instance_id) == TIMED_OUT
    with factory() as s:
        row = s.get(HumanTask, review)
        assert row is not None and row.assignee_id == (deployed["fg"].user_id if claimed else None)
    _verified(factory)


@pytest.mark.parametrize("claimed", [True, False])
def test_send_backs_racing_the_sweep_never_deadlock(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, claimed: bool) -> None:  # noqa: F811
    """Started at once, a few times over, in both orders: never a deadlock; one wins whole, the other is refused
    cleanly (409), or the sweep fires at its next run (here: nothing left when the 退回 won)."""
    for round_ in range(4):
        instance_id, review = start(session, deployed, claimed=claimed)
        clock.advance(timedelta(hours=2))
        sweep: Work = lambda s: _fire_at_once(s)  # noqa: E731
        works = [_send_back(review), sweep] if round_ % 2 else [sweep, _send_back(review)]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        sent, swept = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        assert swept == "done", outcomes
        _act(factory, lambda s, a: _fire_at_once(s))  # the next sweep
        if sent == "done":
            assert _steps(factory, instance_id) == SENT_BACK
        else:  # the sweep committed while the 退回 read (before its lock): the review closed, or escalate open
            assert isinstance(sent, (lookup.TaskAlreadyDone, sendback.ConfirmationRequired)), outcomes
            assert sent.http_status == 409
            assert _steps(factory, instance_id) == TIMED_OUT
    _verified(factory)


def test_the_sweep_passes_by_an_instance_whose_step_is_being_withdrawn_and_the_withdrawal_wins(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """撤回 shares the 退回's reopening: the applicant takes back the fill (the review untouched) as the sweep runs; the
    sweep passes the instance by and finds nothing to fire afterwards (was: a deadlock)."""
    instance_id, _review = start(session, deployed, claimed=False)
    with factory() as s:
        fill = s.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                    HumanTask.bpmn_id == "fill")).one()
    clock.advance(timedelta(hours=2))
    meanwhile.at(projection, "write_postgres", lambda s: _fire_at_once(s))
    assert _act(factory, lambda s, a: sendback.withdraw(s, task_id=fill, actor=a("applicant"), reason="补材料")) == "done"
    assert meanwhile.join() == ["done"]
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert _steps(factory, instance_id) == SENT_BACK
    _verified(factory)
