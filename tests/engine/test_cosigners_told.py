"""Whoever held a task the engine cancels, and its co-signers (加签) asked to sign it, are told (任务已取消).

Before, a boundary timer, a terminate end event, an administrator's 终止 or a gateway closed the task and its
co-signers without a word: the task just left their 待办. Now the unit of work that cancels them queues one in-app
notice (kind task_cancelled, through the outbox: delivered after the commit, never for a rolled-back attempt) to the
task's holder and to each co-signer who had been asked (not one still waiting for the holder's submission), naming
the task and the event that closed it. Whoever caused it is not told of their own act.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, tasks
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from engine.runtime import instances, timers
from engine.tasks.models import HumanTask
from tests.engine.test_cosigners_closed import fire, start, with_cosigners


def told(session: Session) -> list[dict[str, Any]]:
    session.commit()
    return [m.payload for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.kind == "in_app" and m.payload.get("kind") == "task_cancelled"]


def _who(notices: list[dict[str, Any]], org: dict[str, Actor]) -> list[str]:
    names = {a.user_id: name for name, a in org.items()}
    return sorted(names[n["user_id"]] for n in notices)


def test_a_timer_closing_the_task_tells_its_holder_and_its_asked_co_signer_once(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any) -> None:
    instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)  # zr asked (before fg), st not yet (after fg)
    assert told(session) == []
    fire(session)
    notices = told(session)
    assert _who(notices, review_org) == ["fg", "zr"]  # st was never asked: nothing to tell
    by = {n["user_id"]: n for n in notices}
    fg, zr = by[review_org["fg"].user_id], by[review_org["zr"].user_id]
    assert "任务已取消" in fg["title"] and "部门审查" in fg["title"] and fg["link"] == f"/tasks/{review.id}"
    assert "加签: 部门审查" in zr["title"] and zr["link"] == f"/tasks/{cosigners['zr']}"
    assert all("定时" in n["body"] and "timer" in n["body"] for n in notices)  # the event that closed it
    clock.advance(timedelta(hours=2))  # another sweep: nothing more is cancelled, nobody told twice
    for due in timers.due_ids(session, now=clock.now()):
        timers.fire_instance(session, due, now=clock.now())
    assert len(told(session)) == 2
    assert instance_id


def test_a_rolled_back_attempt_tells_nobody_and_the_retry_tells_once(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any) -> None:
    instance_id, review = start(session, review_org)
    with_cosigners(session, review_org, review)
    clock.advance(timedelta(hours=2))
    assert timers.fire_instance(session, instance_id, now=clock.now())
    session.rollback()  # the sweep's transaction failed after the save: the retry does it all again
    assert told(session) == []
    assert timers.fire_instance(session, instance_id, now=clock.now())
    assert _who(told(session), review_org) == ["fg", "zr"]


def test_an_administrator_terminating_tells_the_holder_and_co_signers_not_themselves(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    instance_id, review = start(session, review_org, "abortable_review")
    with_cosigners(session, review_org, review)
    instances.suspend(session, instance_id=instance_id, actor=review_org["admin"])  # zr set aside: still asked
    session.commit()
    instances.terminate(session, instance_id=instance_id, actor=review_org["admin"])
    notices = told(session)
    # escalate (领导撤销) had no holder: its candidates are a role, nobody in particular to tell
    assert _who(notices, review_org) == ["fg", "zr"]
    assert all("终止" in n["body"] and "terminated" in n["body"] for n in notices)


def test_a_terminate_end_event_tells_the_others_not_the_one_who_ended_it(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    instance_id, review = start(session, review_org, "abortable_review")
    with_cosigners(session, review_org, review)
    escalate = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                       HumanTask.bpmn_id == "escalate")).one()
    tasks.complete(session, task_id=escalate.id, actor=review_org["boss"], data={})
    notices = told(session)
    assert _who(notices, review_org) == ["fg", "zr"]
    assert all("流程已结束" in n["body"] and "领导孙八" in n["body"] for n in notices)


def test_the_usual_end_tells_nobody(session: Session, factory: sessionmaker[Session],
                                    review_org: dict[str, Actor]) -> None:
    """zr signs, fg submits: nothing is cancelled, nobody is told so."""
    _instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)
    tasks.complete(session, task_id=cosigners["zr"], actor=review_org["zr"], data={}, opinion="同意")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={})  # held for st
    session.commit()
    tasks.complete(session, task_id=cosigners["st"], actor=review_org["st"], data={}, opinion="同意")
    session.commit()
    assert session.get(HumanTask, review.id).state == "completed"  # type: ignore[union-attr]
    assert told(session) == []
