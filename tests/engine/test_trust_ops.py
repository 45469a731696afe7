"""Trust I holes 6 and 9, Trust II defects 5, 6 and 7: start data, public history, 退回, 催办, the audit timeline."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, tasks
from engine.audit import audit_views
from engine.deadlines import escalation
from engine.deadlines.models import EscalationStep
from engine.errors import FormInvalid
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.org.models import OrgUnit
from engine.runtime import instances, timeline
from engine.runtime.models import ProcessInstance
from engine.tasks import collab, operations, sendback
from engine.tasks.models import HumanTask, TaskCandidate
from tests.engine.test_operations import THREE_STEPS, at_review, fill, open_task
from tests.web.flows import start_form_bundle

# 一窗受理 (2 working days) → two departments review in parallel → end.
PARALLEL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="two_reviews" name="并联审查" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="accept" name="一窗受理">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="'window'" />
        <spiffworkflow:property name="sla" value="2wd" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:parallelGateway id="split"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>fa</bpmn:outgoing><bpmn:outgoing>fb</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:userTask id="review_a" name="发改审查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="'fg'" />
        <spiffworkflow:property name="sla" value="5wd" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>fa</bpmn:incoming><bpmn:outgoing>ja</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="review_b" name="自然资源审查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="'zr'" />
        <spiffworkflow:property name="sla" value="5wd" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>fb</bpmn:incoming><bpmn:outgoing>jb</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:parallelGateway id="join"><bpmn:incoming>ja</bpmn:incoming><bpmn:incoming>jb</bpmn:incoming>
      <bpmn:outgoing>f9</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>f9</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="accept" />
    <bpmn:sequenceFlow id="f2" sourceRef="accept" targetRef="split" />
    <bpmn:sequenceFlow id="fa" sourceRef="split" targetRef="review_a" />
    <bpmn:sequenceFlow id="fb" sourceRef="split" targetRef="review_b" />
    <bpmn:sequenceFlow id="ja" sourceRef="review_a" targetRef="join" />
    <bpmn:sequenceFlow id="jb" sourceRef="review_b" targetRef="join" />
    <bpmn:sequenceFlow id="f9" sourceRef="join" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def instance(session: Session, review_org: dict[str, Actor]) -> int:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"])
    session.commit()
    return row.id


# --- Trust I hole 6: initiator spoofing -----------------------------------------------------------------------

def test_hole6_initiator_spoofing_refused(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    session.commit()
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="three_steps", actor=review_org["applicant"],
                        data={"initiator": "fg", "project": "x"}, from_client=True)
    assert [e.field for e in refused.value.errors] == ["initiator"]
    session.rollback()
    with pytest.raises(FormInvalid) as linked:
        instances.start(session, process_key="three_steps", actor=review_org["applicant"],
                        data={"parent_instance_id": 1}, from_client=True)
    assert [e.field for e in linked.value.errors] == ["parent_instance_id"]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == 0
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"], data={"project": "x"})
    first = open_task(session, row.id, "fill")
    assert first.assignee_id == review_org["applicant"].user_id and row.started_by_id == review_org["applicant"].user_id


def test_hole6_client_start_data_is_checked_against_the_start_form(session: Session,
                                                                   review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, start_form_bundle(), actor=SYSTEM)
    session.commit()
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="start_form_demo", actor=review_org["applicant"],
                        data={"project_name": "园区", "investment": -1, "extra": 1}, from_client=True)
    assert {e.field for e in refused.value.errors} >= {"investment", "(form)"}
    session.rollback()
    row = instances.start(session, process_key="start_form_demo", actor=review_org["applicant"],
                          data={"project_name": "园区", "investment": 100}, from_client=True)
    assert row.status == "running"


# --- Trust I hole 9: applicants see the public history ------------------------------------------------------

def test_hole9_applicant_sees_public_history_only(session: Session, instance: int,
                                                  review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    collab.add_comment(session, instance_id=instance, actor=review_org["fg"], body="内部：该企业有欠税记录",
                       task_id=review.id)
    collab.carbon_copy(session, instance_id=instance, actor=review_org["fg"], usernames=["boss"],
                       note="内部：请领导关注")
    operations.delegate(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="内部：请先看")
    operations.resolve_delegation(session, task_id=review.id, actor=review_org["zr"], opinion="内部：建议退回")
    sendback.send_back(session, task_id=review.id, actor=review_org["fg"], to="applicant", reason="请补充环评材料")
    session.commit()
    staff = timeline.timeline(session, instance, with_details=True)
    assert {"内部：该企业有欠税记录", "内部：建议退回"} <= {e.text for e in staff}
    public = timeline.timeline(session, instance, with_details=True, public=True,
                               public_for=review_org["applicant"].user_id)
    shown = " ".join(f"{e.action} {e.text} {e.details or ''}" for e in public)
    assert "请补充环评材料" in shown and "task.send_back" in shown and "instance.start" in shown
    assert "内部" not in shown and "task.delegate" not in shown and "task.claim" not in shown
    assert all(e.details is None for e in public)


# --- Trust II defect 5: 退回 gets a fresh deadline and keeps the history ----------------------------------------

def test_defect5_sendback_fresh_deadline(session: Session, review_org: dict[str, Actor],
                                         frozen: Any) -> None:
    deploy.deploy(session, {"two_reviews.bpmn": PARALLEL.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="two_reviews", actor=review_org["applicant"])
    accept = open_task(session, row.id, "accept")
    first_due = accept.due_at
    tasks.complete(session, task_id=accept.id, actor=review_org["window"], data={})
    session.commit()
    frozen.advance(timedelta(days=30))  # long past 一窗受理's first deadline
    review_a, review_b = open_task(session, row.id, "review_a"), open_task(session, row.id, "review_b")
    [cosign] = operations.add_cosigners(session, task_id=review_b.id, actor=review_org["zr"], usernames=["window"],
                                        position="before")
    session.commit()

    seen = sendback.preview(session, task_id=review_a.id, actor=review_org["fg"])
    assert seen.target.id == accept.id and [t.id for t in seen.cancels] == [review_b.id]
    with pytest.raises(sendback.ConfirmationRequired) as asked:
        sendback.send_back(session, task_id=review_a.id, actor=review_org["fg"], reason="材料不全")
    assert asked.value.details["cancels"] == [{"task_id": review_b.id, "name": "自然资源审查"}]
    session.rollback()
    assert open_task(session, row.id, "review_b").id == review_b.id  # nothing changed

    reopened = sendback.send_back(session, task_id=review_a.id, actor=review_org["fg"], reason="材料不全",
                                  confirm=True)
    session.commit()
    assert reopened.id != accept.id and reopened.assignee_id == review_org["window"].user_id
    assert reopened.due_at is not None and first_due is not None and reopened.due_at > frozen.now() > first_due
    old = session.get(HumanTask, accept.id)
    assert old is not None and old.state == "completed" and old.completed_by_id == review_org["window"].user_id
    assert [t.bpmn_id for t in timeline.human_tasks(session, row.id)].count("accept") == 2
    assert session.get(HumanTask, review_b.id).state == "cancelled"  # type: ignore[union-attr]
    assert session.get(HumanTask, cosign.id).state == "cancelled"  # type: ignore[union-attr]  # nothing to sign
    told = [m.payload for m in session.scalars(select(OutboxMessage)) if m.payload.get("kind") == "task_cancelled"]
    assert [m["user_id"] for m in told] == [review_org["zr"].user_id, review_org["window"].user_id]

    escalation.sweep(session, now=frozen.now() + timedelta(minutes=1))
    session.commit()
    assert session.scalars(select(EscalationStep).where(EscalationStep.object_id == reopened.id)).all() == []


# --- Trust II defect 6: 催办 on a group task ---------------------------------------------------------------------

def test_defect6_urge_reaches_every_candidate(session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    fill(session, instance, review_org["applicant"])
    review = open_task(session, instance, "review")
    assert review.assignee_id is None and all(c.user_id is None for c in review.candidates)
    reached = operations.urge(session, task_id=review.id, actor=review_org["applicant"], message="请尽快审查")
    assert reached == 3  # 发改, 自然资源, 生态环境: every holder of the lane's role
    users = sorted(m.payload["user_id"] for m in session.scalars(select(OutboxMessage)))
    assert users == sorted(review_org[u].user_id for u in ("fg", "zr", "st"))


def test_defect6_urge_reaches_the_unit_head_when_nobody_is_a_candidate(session: Session, instance: int,
                                                                        review_org: dict[str, Actor]) -> None:
    fill(session, instance, review_org["applicant"])
    review = open_task(session, instance, "review")
    empty = session.scalar(select(OrgUnit).where(OrgUnit.code == "zj"))  # 住建: nobody works there yet
    assert empty is not None
    empty.leader_id = review_org["boss"].user_id
    review.candidates.clear()
    review.candidates.append(TaskCandidate(org_unit_id=empty.id))
    session.flush()
    assert operations.urge(session, task_id=review.id, actor=review_org["applicant"]) == 1
    [message] = session.scalars(select(OutboxMessage)).all()
    assert message.payload["user_id"] == review_org["boss"].user_id


# --- Trust II defect 7: the audit timeline's opinion of a delegated task ----------------------------------------

def test_defect7_timeline_shows_the_completers_opinion(session: Session, instance: int,
                                                        review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    operations.delegate(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请先看")
    operations.resolve_delegation(session, task_id=review.id, actor=review_org["zr"], opinion="材料齐全，建议同意")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"opinion": "同意，按程序报领导签发"})
    session.commit()
    steps = audit_views.timeline(session, instance).steps
    [done] = [s for s in steps if s.event.action == "task.complete" and s.bpmn_id == "review"]
    assert done.opinion == "同意，按程序报领导签发"
    [resolved] = [s for s in steps if s.event.action == "task.delegation_resolved"]
    assert resolved.opinion == "材料齐全，建议同意"

