"""Inbox operations: 转办, 委派, 加签/减签, 退回, 撤回, 催办, 抄送, comments, attachments."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, deploy, jobs, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import Conflict, Forbidden, InstanceNotFound, InvalidInput, NotYourTask, RateLimited, TaskNotReady
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import TaskBlocked, access, collab, operations, sendback
from engine.tasks.collab_models import CarbonCopy, Notification
from engine.tasks.models import HumanTask

THREE_STEPS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="three_steps" /></bpmn:collaboration>
  <bpmn:process id="three_steps" name="三步审批" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="申请人">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>fill</bpmn:flowNodeRef>
      </bpmn:lane>
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l3" name="领导">
        <bpmn:flowNodeRef>sign_off</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill" name="填写申请">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="initiator" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="review" name="部门审查">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="sign_off" name="领导签发">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="sign_off" />
    <bpmn:sequenceFlow id="f4" sourceRef="sign_off" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def instance(session: Session, review_org: dict[str, Actor]) -> int:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"])
    session.commit()
    return row.id


def open_task(session: Session, instance_id: int, bpmn_id: str, kind: str = "bpmn") -> HumanTask:
    rows = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                        HumanTask.bpmn_id == bpmn_id, HumanTask.kind == kind,
                                                        HumanTask.state == "ready")))
    assert len(rows) == 1, rows
    return rows[0]


def fill(session: Session, instance_id: int, who: Actor, text: str = "胶州湾新材料项目") -> None:
    tasks.complete(session, task_id=open_task(session, instance_id, "fill").id, actor=who, data={"project": text})
    session.commit()


def at_review(session: Session, instance_id: int, org: dict[str, Actor]) -> HumanTask:
    fill(session, instance_id, org["applicant"])
    review = open_task(session, instance_id, "review")
    tasks.claim(session, task_id=review.id, actor=org["fg"])
    session.commit()
    return review


def test_transfer_hands_the_task_over_and_notifies(session: Session, factory: sessionmaker[Session], instance: int,
                                                   review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请赵六办理")
    session.commit()
    assert review.assignee_id == review_org["zr"].user_id
    with pytest.raises(NotYourTask):
        tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={})
    session.rollback()
    assert review.id in [t.id for t in tasks.open_tasks(session, review_org["zr"])]
    session.rollback()
    assert jobs.run_outbox(factory) >= 1
    note = session.scalar(select(Notification).where(Notification.user_id == review_org["zr"].user_id))
    assert note is not None and "转办" in note.title
    session.rollback()  # SQLite: one writer at a time, and our reads take the write lock too
    assert jobs.run_outbox(factory) == 0  # delivered once
    tasks.complete(session, task_id=review.id, actor=review_org["zr"], data={"ok": True})
    session.commit()
    open_task(session, instance, "sign_off")


def test_delegate_comes_back_to_the_owner_who_decides(session: Session, instance: int,
                                                      review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    operations.delegate(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请先看看")
    with pytest.raises(NotYourTask):
        tasks.complete(session, task_id=review.id, actor=review_org["zr"], data={})
    with pytest.raises(InvalidInput):
        operations.resolve_delegation(session, task_id=review.id, actor=review_org["zr"], opinion=" ")
    operations.resolve_delegation(session, task_id=review.id, actor=review_org["zr"], opinion="材料齐全，建议同意")
    assert review.assignee_id == review_org["fg"].user_id and review.delegation_state == "resolved"
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"ok": True}, opinion="同意")
    session.commit()
    open_task(session, instance, "sign_off")


def test_cosigners_before_me_sign_first(session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position="before")
    with pytest.raises(TaskBlocked):
        tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={})
    assert cosign.id in [t.id for t in tasks.open_tasks(session, review_org["zr"])]
    tasks.complete(session, task_id=cosign.id, actor=review_org["zr"], data={}, opinion="自然资源意见：同意")
    assert not review.blocked
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"ok": True})
    session.commit()
    open_task(session, instance, "sign_off")


def test_cosigners_after_me_sign_my_submission(session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr", "st"],
                             position="after")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"})
    session.commit()
    assert review.state == "ready" and review.blocked  # held for the co-signers
    cosigns = list(session.scalars(select(HumanTask).where(HumanTask.kind == "cosign", HumanTask.state == "ready")))
    assert {c.assignee_id for c in cosigns} == {review_org["zr"].user_id, review_org["st"].user_id}
    zr = next(c for c in cosigns if c.assignee_id == review_org["zr"].user_id)
    operations.remove_cosigner(session, cosign_task_id=zr.id, actor=review_org["fg"])  # 减签 zr
    st = open_task(session, instance, "review", kind="cosign")
    assert st.assignee_id == review_org["st"].user_id
    result = tasks.complete(session, task_id=st.id, actor=review_org["st"], data={}, opinion="生态环境：同意")
    session.commit()
    assert review.state == "completed" and review.completed_by_id == review_org["fg"].user_id
    sign_off = open_task(session, instance, "sign_off")
    assert result.next_tasks == [sign_off.id]
    assert runtime.load(session, instance).workflow.last_task.data["fg_says"] == "同意"


def test_a_held_submission_that_makes_the_state_too_large_is_an_incident_not_the_co_signers_refusal(
        session: Session, instance: int, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's data, held for co-signers after them, is finished by the last signature: the co-signer cannot
    change it, so a state it makes too large stops the instance (naming the step and the field) instead of refusing
    the signature forever."""
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "64")
    review = at_review(session, instance, review_org)
    operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"], position="after")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "字" * 20_000})
    session.commit()
    zr = open_task(session, instance, "review", kind="cosign")
    result = tasks.complete(session, task_id=zr.id, actor=review_org["zr"], data={}, opinion="同意")
    session.commit()
    assert result.status == "incident" and result.incident is not None and "fg_says" in result.incident
    row = session.get(ProcessInstance, instance)
    assert row is not None and row.status == "incident"


def test_a_co_signer_added_while_my_submission_waits_signs_it_too(session: Session, instance: int,
                                                                   review_org: dict[str, Actor]) -> None:
    """加签 after fg once fg's submission waits for zr: st is asked at once, and it goes on only with both."""
    review = at_review(session, instance, review_org)
    operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"], position="after")
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"})
    operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["st"], position="after")
    session.commit()
    cosigns = {c.assignee_id: c for c in session.scalars(select(HumanTask).where(HumanTask.kind == "cosign"))}
    zr, st = cosigns[review_org["zr"].user_id], cosigns[review_org["st"].user_id]
    assert st.state == "ready"  # not pending: the submission it signs has been made
    tasks.complete(session, task_id=zr.id, actor=review_org["zr"], data={}, opinion="同意")
    session.commit()
    assert review.state == "ready" and review.blocked  # still waiting for st
    tasks.complete(session, task_id=st.id, actor=review_org["st"], data={}, opinion="同意")
    session.commit()
    assert review.state == "completed" and st.state == "completed"


def test_a_co_signer_after_me_cannot_sign_before_i_have_submitted(session: Session, instance: int,
                                                                  review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position="after")
    session.commit()
    assert cosign.state == "pending"
    with pytest.raises(TaskNotReady) as refused:  # nothing to sign yet: the holder has not submitted
        tasks.complete(session, task_id=cosign.id, actor=review_org["zr"], data={}, opinion="同意")
    assert "等待经办人提交" in refused.value.message and refused.value.details["task_id"] == cosign.id
    session.rollback()
    with pytest.raises(TaskNotReady):  # nor anything to urge them about
        operations.urge(session, task_id=cosign.id, actor=review_org["admin"], message="请尽快")
    session.rollback()
    with pytest.raises(NotYourTask):  # a co-signer does not claim, waiting or not
        tasks.claim(session, task_id=cosign.id, actor=review_org["zr"])
    session.rollback()
    assert session.get(HumanTask, cosign.id).state == "pending"  # type: ignore[union-attr]
    tasks.complete(session, task_id=review.id, actor=review_org["fg"], data={"fg_says": "同意"}, opinion="同意")
    session.commit()
    session.refresh(review)
    assert review.state == "ready" and review.blocked  # held for the co-signer, who now signs the submission
    tasks.complete(session, task_id=cosign.id, actor=review_org["zr"], data={}, opinion="自然资源：同意")
    session.commit()
    session.refresh(review)
    assert review.state == "completed"
    open_task(session, instance, "sign_off")


def test_a_co_sign_task_is_not_given_back_to_candidates_it_has_none(session: Session, instance: int,
                                                                    review_org: dict[str, Actor]) -> None:
    """取消认领 gives a task back to its candidates; a co-signer's task has none: unclaimed, nobody could sign it,
    and the holder's submission would wait for it for good. Removing a co-signer is 减签."""
    review = at_review(session, instance, review_org)
    [cosign] = operations.add_cosigners(session, task_id=review.id, actor=review_org["fg"], usernames=["zr"],
                                        position="before")
    session.commit()
    with pytest.raises(Conflict) as refused:
        tasks.unclaim(session, task_id=cosign.id, actor=review_org["admin"])
    assert "减签" in refused.value.message
    session.rollback()
    assert session.get(HumanTask, cosign.id).assignee_id == review_org["zr"].user_id  # type: ignore[union-attr]


def test_send_back_to_the_previous_step_and_to_the_applicant(session: Session, instance: int,
                                                             review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    with pytest.raises(InvalidInput):
        sendback.send_back(session, task_id=review.id, actor=review_org["fg"], reason="")
    reopened = sendback.send_back(session, task_id=review.id, actor=review_org["fg"], reason="缺少环评材料")
    session.commit()
    assert reopened.bpmn_id == "fill" and reopened.assignee_id == review_org["applicant"].user_id
    assert review.state == "cancelled"
    assert runtime.load(session, instance).workflow.get_task_from_id(
        __import__("uuid").UUID(reopened.task_guid)).data["project"] == "胶州湾新材料项目"  # their input comes back
    fill(session, instance, review_org["applicant"], "胶州湾新材料项目（补充环评）")
    review2 = open_task(session, instance, "review")
    tasks.claim(session, task_id=review2.id, actor=review_org["fg"])
    tasks.complete(session, task_id=review2.id, actor=review_org["fg"], data={"ok": True})
    session.commit()
    sign_off = open_task(session, instance, "sign_off")
    tasks.claim(session, task_id=sign_off.id, actor=review_org["boss"])
    targets = [t.bpmn_id for t in sendback.send_back_targets(session, sign_off)]
    assert targets == ["fill", "review"]
    back = sendback.send_back(session, task_id=sign_off.id, actor=review_org["boss"], to="applicant",
                                reason="投资额需重新核定")
    session.commit()
    assert back.bpmn_id == "fill"
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action == "task.send_back")))
    assert len(actions) == 2
    assert audit.verify(session).ok


def _filled(session: Session, instance: int, applicant: Actor) -> tuple[HumanTask, HumanTask]:
    """Submit the fill step; return it and the review step it opened."""
    fill(session, instance, applicant)
    done = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance, HumanTask.bpmn_id == "fill"))
    assert done is not None
    return done, open_task(session, instance, "review")


def test_withdraw_until_the_next_handler_acts(session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    fill(session, instance, review_org["applicant"])
    done = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance, HumanTask.bpmn_id == "fill"))
    assert done is not None
    with pytest.raises(NotYourTask):
        sendback.withdraw(session, task_id=done.id, actor=review_org["fg"])
    reopened = sendback.withdraw(session, task_id=done.id, actor=review_org["applicant"], reason="填错了")
    session.commit()
    assert reopened.state == "ready" and reopened.bpmn_id == "fill"
    assert session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.instance_id == instance, HumanTask.bpmn_id == "review", HumanTask.state == "ready")) == 0
    fill(session, instance, review_org["applicant"])
    review = open_task(session, instance, "review")
    tasks.claim(session, task_id=review.id, actor=review_org["fg"])
    session.commit()
    with pytest.raises(Conflict):
        sendback.withdraw(session, task_id=reopened.id, actor=review_org["applicant"])


def test_urge_is_rate_limited(session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    review = at_review(session, instance, review_org)
    assert operations.urge(session, task_id=review.id, actor=review_org["applicant"], message="请尽快审查") == 1
    with pytest.raises(RateLimited):
        operations.urge(session, task_id=review.id, actor=review_org["applicant"])


def test_whoever_holds_a_task_is_not_offered_to_urge_it_even_as_its_units_head(
        session: Session, instance: int, review_org: dict[str, Actor]) -> None:
    """A unit head handed a task of their unit (委派, 转办) was offered 催办 on it, and urged themselves: the notice
    "孙八催办" came back to them. Nobody is urged by the one who holds the task; a leader not holding it still urges."""
    from engine.org.actors import actor_for
    from engine.org.models import Membership, OrgUnit
    from engine.tasks import task_access
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert unit is not None
    unit.leader_id = review_org["boss"].user_id  # 孙八 heads 发改 and works there
    session.add(Membership(user_id=review_org["boss"].user_id, org_unit_id=unit.id))
    session.commit()
    review = at_review(session, instance, review_org)
    boss, fg = actor_for(session, "boss"), review_org["fg"]
    assert task_access.Op.URGE in task_access.permitted(session, boss, review)  # a leader over the holder
    assert task_access.Op.URGE not in task_access.permitted(session, fg, review)  # the holder
    operations.delegate(session, task_id=review.id, actor=fg, to_username="boss", note="请您先看")
    session.commit()
    assert task_access.Op.URGE not in task_access.permitted(session, boss, review)  # the delegate holds it now
    with pytest.raises(NotYourTask):
        operations.urge(session, task_id=review.id, actor=boss, message="快")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "urge")) == 0
    assert operations.urge(session, task_id=review.id, actor=fg, message="请尽快") == 1  # the owner urges the delegate
    operations.resolve_delegation(session, task_id=review.id, actor=boss, opinion="同意")
    operations.transfer(session, task_id=review.id, actor=fg, to_username="boss")
    session.commit()
    assert task_access.Op.URGE not in task_access.permitted(session, boss, review)  # the holder, again
    with pytest.raises(NotYourTask):
        operations.urge(session, task_id=review.id, actor=boss)


def test_cc_comments_and_attachments_respect_who_may_see(session: Session, instance: int,
                                                        review_org: dict[str, Actor]) -> None:
    outsider = review_org["window"]
    assert not access.can_view_instance(session, outsider, instance)
    with pytest.raises(InstanceNotFound, match=rf"流程实例不存在 \(no such instance\): {instance}$"):  # as if absent
        collab.add_comment(session, instance_id=instance, actor=outsider, body="我来看看")
    with pytest.raises(InstanceNotFound, match=rf"流程实例不存在 \(no such instance\): {instance}$"):
        collab.carbon_copy(session, instance_id=instance, actor=outsider, usernames=["window"])
    with pytest.raises(Forbidden) as refused:  # the window does not handle the applicant's case: out of their scope
        collab.carbon_copy(session, instance_id=instance, actor=review_org["applicant"], usernames=["window"])
    assert refused.value.details["field"] == "usernames"
    collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=["window"],
                       note="请知悉")
    assert access.can_view_instance(session, outsider, instance)
    assert session.scalar(select(CarbonCopy.note).where(CarbonCopy.user_id == outsider.user_id)) == "请知悉"
    comment = collab.add_comment(session, instance_id=instance, actor=outsider, body="<script>x</script>已阅")
    assert comment.body == "<script>x</script>已阅"  # stored as given; escaping is the template's job
    att = collab.attach(session, instance_id=instance, actor=review_org["applicant"],
                        name="../../etc/环评报告.pdf", content=b"%PDF-1.4 ...", content_type="application/pdf")
    assert att.name == "环评报告.pdf" and att.size == 12
    with pytest.raises(InvalidInput):
        collab.attach(session, instance_id=instance, actor=review_org["applicant"], name="big.bin",
                      content=b"x" * (collab.MAX_ATTACHMENT_BYTES + 1))
    assert session.get(ProcessInstance, instance) is not None
    session.commit()
    assert audit.verify(session).ok


def test_withdraw_is_refused_once_the_next_handler_has_uploaded_a_file(session: Session, instance: int,
                                                                      review_org: dict[str, Actor]) -> None:
    done, review = _filled(session, instance, review_org["applicant"])
    assert review.assignee_id is None  # not claimed: the upload is the only trace
    collab.attach(session, instance_id=instance, actor=review_org["fg"], name="审查意见.docx", content=b"doc",
                  task_id=review.id)
    session.commit()
    assert sendback.withdraw_refusal(session, review_org["applicant"], done) is not None
    with pytest.raises(Conflict, match="下一步已有人处理"):
        sendback.withdraw(session, task_id=done.id, actor=review_org["applicant"])


def test_withdraw_is_not_refused_for_what_others_than_the_next_handlers_did(session: Session, instance: int,
                                                                           review_org: dict[str, Actor]) -> None:
    done, review = _filled(session, instance, review_org["applicant"])
    # 催办 by the submitter and by an administrator, the submitter's own note and file, an administrator's comment
    # and 抄送 on the next step: none of them is the next handler acting.
    operations.urge(session, task_id=review.id, actor=review_org["applicant"], message="请尽快审查")
    operations.urge(session, task_id=review.id, actor=review_org["admin"], message="督办")
    collab.add_comment(session, instance_id=instance, actor=review_org["applicant"], body="补充说明",
                       task_id=review.id)
    collab.attach(session, instance_id=instance, actor=review_org["applicant"], name="补充.pdf", content=b"p",
                  task_id=review.id)
    collab.add_comment(session, instance_id=instance, actor=review_org["admin"], body="已阅", task_id=review.id)
    collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=["boss"],
                       note="请知悉", task_id=review.id)
    session.commit()
    assert sendback.withdraw_refusal(session, review_org["applicant"], done) is None
    reopened = sendback.withdraw(session, task_id=done.id, actor=review_org["applicant"], reason="填错了")
    session.commit()
    assert reopened.state == "ready" and reopened.bpmn_id == "fill"


def test_withdraw_is_refused_once_the_next_handler_has_commented(session: Session, instance: int,
                                                                review_org: dict[str, Actor]) -> None:
    done, review = _filled(session, instance, review_org["applicant"])
    collab.add_comment(session, instance_id=instance, actor=review_org["fg"], body="材料在看", task_id=review.id)
    session.commit()
    with pytest.raises(Conflict, match="下一步已有人处理"):
        sendback.withdraw(session, task_id=done.id, actor=review_org["applicant"])
