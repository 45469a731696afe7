"""Co-signers (加签) close with the task they sign when the engine closes it: an interrupting boundary timer, a
terminate end event, an administrator's 终止. Before, their rows stayed ready (or pending) in their inboxes for good.

The projection closes them in the save that closes their parent (PostgreSQL: its one statement; SQLite: the same
unit of work), and with them a pending 申请延期 of the closed tasks; the instance's audit event of that save covers
them as it covers the parent. A co-signer who then tries to sign is told the task is done (409), and nothing changes.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, runtime, tasks
from engine.audit.models import AuditEvent
from engine.deadlines.models import ExtensionRequest
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, projection, timers
from engine.runtime.models import ProcessInstance
from engine.tasks import lookup, operations
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from plan import supervision
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="{key}" /></bpmn:collaboration>
  <bpmn:process id="{key}" name="限时审查" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l3" name="领导"><bpmn:flowNodeRef>escalate</bpmn:flowNodeRef>{lead_refs}</bpmn:lane>
    </bpmn:laneSet>
"""
# review, with an interrupting boundary timer of one hour that goes on to the leader's 督办
TIMED = _HEAD.format(key="timed_review", lead_refs="") + """
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
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
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="done" />
    <bpmn:sequenceFlow id="f3" sourceRef="late" targetRef="escalate" />
    <bpmn:sequenceFlow id="f4" sourceRef="escalate" targetRef="done_late" />
  </bpmn:process>
</bpmn:definitions>
"""
# review beside the leader's 撤销 (escalate), which ends the whole instance at a terminate end event
ABORTABLE = _HEAD.format(key="abortable_review", lead_refs="") + """
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="fork"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:userTask id="review" name="部门审查"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="escalate" name="领导撤销"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="done"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="abort"><bpmn:incoming>f5</bpmn:incoming><bpmn:terminateEventDefinition id="te" />
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fork" />
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="escalate" />
    <bpmn:sequenceFlow id="f4" sourceRef="review" targetRef="done" />
    <bpmn:sequenceFlow id="f5" sourceRef="escalate" targetRef="abort" />
  </bpmn:process>
</bpmn:definitions>
"""


def start(session: Session, org: dict[str, Actor], key: str = "timed_review") -> tuple[int, HumanTask]:
    """Deploy both processes, start one; fg claims its review (commits)."""
    deploy.deploy(session, {"timed.bpmn": TIMED.encode(), "abortable.bpmn": ABORTABLE.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key=key, actor=org["applicant"])
    session.commit()
    review = session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "review",
                                                     HumanTask.state == "ready")).one()
    tasks.claim(session, task_id=review.id, actor=org["fg"])
    session.commit()
    return row.id, review


def with_cosigners(session: Session, org: dict[str, Actor], review: HumanTask) -> dict[str, int]:
    """zr signs before fg (ready), st after fg's submission (pending): their task ids (commits)."""
    [before] = operations.add_cosigners(session, task_id=review.id, actor=org["fg"], usernames=["zr"],
                                        position="before")
    [after] = operations.add_cosigners(session, task_id=review.id, actor=org["fg"], usernames=["st"],
                                       position="after")
    session.commit()
    assert (before.state, after.state) == ("ready", "pending")
    return {"zr": before.id, "st": after.id}


def fire(session: Session) -> None:
    clock.advance(timedelta(hours=2))
    for instance_id in timers.due_ids(session, now=clock.now()):
        assert timers.fire_instance(session, instance_id, now=clock.now())
    session.commit()


def states(session: Session, factory: sessionmaker[Session], ids: list[int]) -> list[tuple[str, bool]]:
    """Each task's state and whether it has a completion time, read afresh (`session`: ended first, SQLite's one
    writer lock with it)."""
    session.commit()
    with factory() as s:
        return [(t.state, t.completed_at is not None) for t in
                (s.get(HumanTask, i) for i in ids) if t is not None]


def events(session: Session, instance_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.stream == f"instance:{instance_id}")) or 0)


def refused_to_sign(session: Session, factory: sessionmaker[Session], instance_id: int, cosign_id: int,
                    who: Actor) -> None:
    """The co-signer's signature is refused as for any closed task (409 task_already_done), and changes nothing."""
    lock_version = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id))
    written = events(session, instance_id)
    session.commit()
    with pytest.raises(lookup.TaskAlreadyDone) as refused:
        tasks.complete(session, task_id=cosign_id, actor=who, data={}, opinion="同意")
    session.rollback()
    assert refused.value.http_status == 409 and refused.value.code == "task_already_done"
    assert "已取消" in refused.value.message  # not "someone else just acted": the engine closed it
    assert states(session, factory, [cosign_id]) == [("cancelled", True)]
    assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id)) == lock_version
    assert events(session, instance_id) == written


def test_an_interrupting_timer_closes_the_co_signers_with_their_task(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any) -> None:
    instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)
    assert cosigners["zr"] in [t.id for t in tasks.open_tasks(session, review_org["zr"])]
    fire(session)
    assert states(session, factory, [review.id, cosigners["zr"], cosigners["st"]]) == [("cancelled", True)] * 3
    assert tasks.open_tasks(session, review_org["zr"]) == [] and tasks.open_tasks(session, review_org["st"]) == []
    escalate = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                       HumanTask.bpmn_id == "escalate")).one()
    assert escalate.state == "ready"  # the timer's path goes on
    refused_to_sign(session, factory, instance_id, cosigners["zr"], review_org["zr"])
    refused_to_sign(session, factory, instance_id, cosigners["st"], review_org["st"])
    fired = session.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}",
                                                     AuditEvent.action == "timer.fire")).one()
    assert fired.after["ready"] == ["escalate"]  # the save that closed them, recorded as for their parent
    assert audit.verify(session).ok


def test_a_held_submission_and_its_co_signer_close_when_the_timer_fires(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any) -> None:
    """fg submitted; st was asked to sign it (ready): the timer ends the review, st's task with it, and fg's held
    submission is not applied by a signature afterwards."""
    instance_id, review = start(session, review_org)
    [after] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["st"],
                                       position="after")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"})
    session.commit()
    assert states(session, factory, [after.id]) == [("ready", False)]
    fire(session)
    assert states(session, factory, [review.id, after.id]) == [("cancelled", True), ("cancelled", True)]
    refused_to_sign(session, factory, instance_id, after.id, review_org["st"])
    assert "fg_says" not in runtime.load(session, instance_id).workflow.last_task.data


@pytest.mark.parametrize("how", ["admin", "terminate_end_event"])
def test_ending_the_instance_closes_the_co_signers(session: Session, factory: sessionmaker[Session],
                                                   review_org: dict[str, Actor], how: str) -> None:
    instance_id, review = start(session, review_org, "abortable_review")
    cosigners = with_cosigners(session, review_org, review)
    if how == "admin":
        instances.terminate(session, instance_id=instance_id, actor=review_org["admin"])
    else:
        escalate = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                           HumanTask.bpmn_id == "escalate")).one()
        tasks.complete(session, task_id=escalate.id, actor=review_org["boss"], data={})
    session.commit()
    row = session.get(ProcessInstance, instance_id)
    assert row is not None and row.status == ("terminated" if how == "admin" else "completed")
    assert states(session, factory, [review.id, cosigners["zr"], cosigners["st"]]) == [("cancelled", True)] * 3
    assert tasks.open_tasks(session, review_org["zr"]) == []
    refused_to_sign(session, factory, instance_id, cosigners["zr"], review_org["zr"])
    assert audit.verify(session).ok


def test_what_was_handed_on_or_asked_about_the_closed_task_closes_too(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any) -> None:
    """委派 to zr: the task leaves zr's inbox; fg's 申请延期 of it no longer waits for a leader's decision; a
    co-signer's own 申请延期 neither."""
    _instance_id, review = start(session, review_org)
    supervision.request_extension(session, actor=review_org["fg"], task_id=review.id,
                                  due_date=(clock.now() + timedelta(days=10)).date(), reason="材料待补")
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["st"],
                                        position="before")
    supervision.request_extension(session, actor=review_org["st"], task_id=cosign.id,
                                  due_date=(clock.now() + timedelta(days=10)).date(), reason="需现场核查")
    operations.delegate(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请先看看")
    session.commit()
    assert review.id in [t.id for t in tasks.open_tasks(session, review_org["zr"])]
    fire(session)
    assert tasks.open_tasks(session, review_org["zr"]) == [] and tasks.open_tasks(session, review_org["fg"]) == []
    requests = session.scalars(select(ExtensionRequest).order_by(ExtensionRequest.id)).all()
    assert [(r.object_id, r.status) for r in requests] == [(review.id, "cancelled"), (cosign.id, "cancelled")]
    assert all(r.decided_at is not None and r.decided_by_id is None for r in requests)
    assert supervision.pending_extension(session, "task", review.id) is None


def test_a_completed_task_keeps_its_signed_co_signers_as_they_were(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    """The usual end: zr signs, fg submits. Nothing of it is cancelled afterwards."""
    _instance_id, review = start(session, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position="before")
    session.commit()
    tasks.complete(session, task_id=cosign.id, actor=review_org["zr"], data={}, opinion="同意")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={})
    session.commit()
    assert states(session, factory, [review.id, cosign.id]) == [("completed", True), ("completed", True)]
    with factory() as s:
        assert s.get(HumanTask, cosign.id).completed_by_id == actor_for(s, "zr").user_id  # type: ignore[union-attr]


# --- a co-signer signing while the timer fires (PostgreSQL: row locks; SQLite has one writer) -----------------------

def _fire_at_once(s: Session) -> None:
    for instance_id in timers.due_ids(s, now=clock.now()):
        timers.fire_instance(s, instance_id, now=clock.now())


@pytest.mark.parametrize(("position", "first"), [("before", "timer"), ("before", "signer"), ("after", "timer"),
                                                 ("after", "signer")])
def test_a_co_signer_signing_while_the_timer_fires_one_wins_whole(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, position: str, first: str) -> None:  # noqa: F811
    """zr signs (before fg; or after fg's submission, the last signature going on with it) at the moment the timer
    ends the review. Whichever goes first wins whole: the timer first, the signature is refused (409) and nothing of
    it stays; the signature first, it is kept (and a held submission goes on), and the timer finds the review done or
    closes it. Never a signed co-signer on a cancelled review with its holder's submission half applied."""
    instance_id, review = start(session, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position=position)
    if position == "after":
        tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"})
    session.commit()
    clock.advance(timedelta(hours=2))
    sign: Work = lambda s: tasks.complete(s, task_id=cosign.id, actor=actor_for(s, "zr"), data={},  # noqa: E731
                                           opinion="同意")
    if first == "timer":  # the timer's save about to write: zr signs then
        meanwhile.at(projection, "write_postgres", sign)
        outcome = _act(factory, lambda s, a: _fire_at_once(s))
    else:  # zr's signature written (the review's row locked): the timer fires then
        meanwhile.at(operations, "_after_cosign", lambda s: _fire_at_once(s))
        outcome = _act(factory, lambda s, a: sign(s))
    other = meanwhile.join()
    outcomes = [outcome, *other] if first == "timer" else [*other, outcome]  # [timer's, signature's]
    with factory() as s:
        parent, signed = s.get(HumanTask, review.id), s.get(HumanTask, cosign.id)
        assert parent is not None and signed is not None
        row = s.get(ProcessInstance, instance_id)
        assert row is not None
        steps = {t.bpmn_id: t.state for t in s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                                             HumanTask.kind == "bpmn"))}
        if signed.state == "cancelled":  # the timer won: the signature left nothing
            assert isinstance(outcomes[1], lookup.TaskAlreadyDone), outcomes
            assert signed.completed_by_id is None and parent.state == "cancelled" and steps["escalate"] == "ready"
            assert not s.scalars(select(Comment).where(Comment.task_id == cosign.id)).all()
        else:  # the signature won, whole
            assert outcomes[1] == "done" and signed.state == "completed", outcomes
            assert signed.completed_by_id == actor_for(s, "zr").user_id
            if position == "after":  # it went on with fg's submission: the review is done, the timer went with it
                assert parent.state == "completed" and "escalate" not in steps and row.status == "completed"
    if signed.state == "completed" and position == "before":  # the timer's sweep passed it by (SKIP LOCKED) or
        assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"  # waited: the next one ends the review
        assert states(session, factory, [review.id, cosign.id]) == [("cancelled", True), ("completed", True)]
    with factory() as s:
        assert audit.verify(s).ok
