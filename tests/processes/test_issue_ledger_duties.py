"""问题台账 separation of duties (职责分离), on SQLite and PostgreSQL: whoever did the work of an issue (its handler, and
whoever completed its 办理 or 反馈) neither does its 回访 nor its 核验. Enforced where the step is assigned (they
are no candidate), where it is claimed or completed (refused naming the rule, nothing changed), when it is handed
on (转办, 委派, 加签), when who handled it changes (改派), and against a model that names them by expression. With
nobody else eligible the step goes to the unit's head and its responsible leader (督办), never to nobody.

And 改派 keeps to the object's own unit: an issue goes to another unit only by 退回 and 派单 again."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import DutyRefused, InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.leaving import deactivate_user
from engine.runtime import instances
from engine.tasks import operations
from engine.tasks.models import HumanTask
from plan import supervision
from tests.engine.test_supervision_races import Race, race
from tests.processes.test_issue_ledger import (
    REGISTRATION,
    by_hand,
    deployed,
    dispatch,
    issue_of,
    ledger_files,
    people,
)
from tests.steps import do, names, only_task

__all__ = ["by_hand", "deployed", "people", "race"]


def _wang(session: Session) -> Actor:
    """工信局's own 台账管理员: a ledger officer who is also a member of the responsible unit."""
    org.add_user(session, username="gx_wang", display_name="工信局王强", unit_codes=["gxj"],
                 role_codes=["ledger_officer", "handler"])
    session.commit()
    return actor_for(session, "gx_wang")


def _handled(session: Session, iid: int, handler: Actor, officer: Actor) -> None:
    """派单 to 工信局, accepted and handled by `handler`, 反馈 given: 回访 is next."""
    dispatch(session, iid, officer, "gxj", due_date="2025-09-19")
    do(session, only_task(session, iid, "respond"), handler, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), handler, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), handler, {"evidence": "已协调供电公司完成方案批复。"})


def _users(task: HumanTask) -> set[int]:
    return {c.user_id for c in task.candidates if c.user_id is not None}


def _refused(session: Session, call: Any) -> DutyRefused:
    with pytest.raises(DutyRefused) as refused:
        call()
    session.rollback()
    return refused.value


def _barred_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "task.duty_barred")) or 0)


def test_a_ledger_officer_who_handled_the_issue_cannot_verify_or_close_it(
        session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    iid, officer = by_hand, people["officer"]
    wang = _wang(session)
    _handled(session, iid, wang, officer)
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify")
    assert wang.user_id not in _users(verify) and officer.user_id in _users(verify)
    refused = _refused(session, lambda: tasks.claim(session, task_id=verify.id, actor=wang))
    assert "核验" in refused.message and refused.code == "separation_of_duties"
    refused = _refused(session, lambda: tasks.complete(session, task_id=verify.id, actor=wang, data={"verdict": "pass"}))
    assert "核验" in refused.message
    assert issue_of(session, iid).status == "confirmed" and names(session, iid) == ["verify"]
    assert only_task(session, iid, "verify").assignee_id is None
    do(session, only_task(session, iid, "verify"), officer, {"verdict": "pass"})
    assert issue_of(session, iid).status == "closed"


def test_the_return_visit_never_goes_to_the_handler_even_when_he_raised_the_issue(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    officer, wang = people["officer"], _wang(session)
    row = instances.start(session, process_key="issue_ledger", actor=wang, title="问题台账")
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), wang, REGISTRATION)  # the reporter: 王强
    _handled(session, row.id, wang, officer)  # and the handler: 王强
    revisit = only_task(session, row.id, "revisit")
    assert revisit.assignee_id != wang.user_id and wang.user_id not in _users(revisit)
    assert officer.user_id in _users(revisit)
    assert _barred_events(session) == 1
    refused = _refused(session, lambda: tasks.complete(session, task_id=revisit.id, actor=wang,
                                                        data={"revisit": "satisfied"}))
    assert "回访" in refused.message and issue_of(session, row.id).status == "feedback"
    do(session, only_task(session, row.id, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, row.id, "verify")
    assert wang.user_id not in _users(verify)
    do(session, verify, officer, {"verdict": "pass"})


def test_with_nobody_else_eligible_the_step_goes_to_the_unit_head_and_responsible_leader(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    """The only other ledger officer was deactivated: 回访 and 核验 surface to 督办, not to the handler, not to nobody."""
    wang = _wang(session)
    head = org.add_user(session, username="gx_head", display_name="工信局局长", unit_codes=["gxj"], is_head=True)
    deactivate_user(session, user_id=people["officer"].user_id, actor=SYSTEM)
    session.commit()
    row = instances.start(session, process_key="issue_ledger", actor=wang, title="问题台账")
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), wang, REGISTRATION)
    _handled(session, row.id, wang, wang)  # he dispatched it to his own unit and took it
    revisit = only_task(session, row.id, "revisit")
    assert _users(revisit) == {head.id, people["leader_sun"].user_id} and revisit.assignee_id is None
    _refused(session, lambda: tasks.claim(session, task_id=revisit.id, actor=wang))
    do(session, only_task(session, row.id, "revisit"), actor_for(session, "gx_head"), {"revisit": "satisfied"})
    verify = only_task(session, row.id, "verify")
    assert _users(verify) == {head.id, people["leader_sun"].user_id}
    do(session, verify, people["leader_sun"], {"verdict": "pass"})
    assert issue_of(session, row.id).status == "closed"


def test_verify_cannot_be_handed_to_the_handler(session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """转办, 委派 or 加签 of 核验 to the handler: refused naming the field and the rule, the task as it was."""
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    _handled(session, iid, zhang, officer)
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify")
    tasks.claim(session, task_id=verify.id, actor=officer)
    session.commit()
    for call, field in [
        (lambda: operations.transfer(session, task_id=verify.id, actor=officer, to_username="gx_zhang"), "to_username"),
        (lambda: operations.delegate(session, task_id=verify.id, actor=officer, to_username="gx_zhang"), "to_username"),
        (lambda: operations.add_cosigners(session, task_id=verify.id, actor=officer, usernames=["gx_zhang"],
                                          position="before"), "usernames"),
    ]:
        refused = _refused(session, call)
        assert refused.details["field"] == field and "核验" in refused.message
    verify = only_task(session, iid, "verify")
    assert verify.assignee_id == officer.user_id and verify.delegation_state is None and not verify.blocked
    assert session.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.kind == "cosign")) == 0


def test_a_later_reassignment_bars_the_new_handler_from_the_verify_he_held(
        session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    wang = _wang(session)
    _handled(session, iid, zhang, officer)
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify")
    tasks.claim(session, task_id=verify.id, actor=wang)  # a ledger officer: a candidate, not the handler yet
    session.commit()
    supervision.reassign(session, actor=people["leader_sun"], object_type="issue", object_id=issue_of(session, iid).id,
                         to_username="gx_wang", note="王强接手", seen=None)
    session.commit()
    verify = only_task(session, iid, "verify")
    assert verify.assignee_id is None and wang.user_id not in _users(verify)
    refused = _refused(session, lambda: tasks.complete(session, task_id=verify.id, actor=wang, data={"verdict": "pass"}))
    assert "核验" in refused.message and issue_of(session, iid).status == "confirmed"


def _hostile(bpmn: bytes, *, rename: bool) -> bytes:
    text = bpmn.decode()
    marker = '<spiffworkflow:property name="formJsonSchemaFilename" value="ledger_verify.schema.json" />'
    assert marker in text
    text = text.replace(marker, marker + '\n<spiffworkflow:property name="assignee" value="ledger[&quot;handler&quot;]" />')
    if rename:  # the same step under another name: only the service stands in the way
        for old, new in [('id="verify"', 'id="check"'), ('bpmnElement="verify"', 'bpmnElement="check"'),
                         ('targetRef="verify"', 'targetRef="check"'), ('sourceRef="verify"', 'sourceRef="check"'),
                         ("<bpmn:flowNodeRef>verify<", "<bpmn:flowNodeRef>check<")]:
            text = text.replace(old, new)
    return text.encode()


@pytest.mark.parametrize("rename", [False, True])
def test_a_model_that_gives_verify_to_the_handler_by_expression_does_not_let_him_close_it(
        session: Session, people: dict[str, Actor], rename: bool) -> None:
    files = ledger_files()
    files["issue_ledger.bpmn"] = _hostile(files["issue_ledger.bpmn"], rename=rename)
    deploy.deploy(session, files, actor=SYSTEM)
    session.commit()
    officer, zhang = people["officer"], people["gx_zhang"]
    row = instances.start(session, process_key="issue_ledger", actor=officer, title="问题台账")
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), officer, REGISTRATION)
    _handled(session, row.id, zhang, officer)
    do(session, only_task(session, row.id, "revisit"), officer, {"revisit": "satisfied"})
    step = only_task(session, row.id, "check" if rename else "verify")
    if not rename:
        assert step.assignee_id != zhang.user_id and zhang.user_id not in _users(step)
        assert _barred_events(session) == 1
    else:
        assert step.assignee_id == zhang.user_id  # the model gave it to him; finishing it is refused
    refused = _refused(session, lambda: tasks.complete(session, task_id=step.id, actor=zhang, data={"verdict": "pass"}))
    assert "核验" in refused.message
    assert issue_of(session, row.id).status == "confirmed" and issue_of(session, row.id).closed_at is None
    assert names(session, row.id) == ["check" if rename else "verify"]


def test_a_reassignment_and_the_verification_at_once_never_both_succeed(
        session: Session, by_hand: int, people: dict[str, Actor], race: Race) -> None:
    """One supervisor makes the ledger officer holding 核验 the handler while he passes it: one of the two is refused."""
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    wang = _wang(session)
    _handled(session, iid, zhang, officer)
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify").id
    tasks.claim(session, task_id=verify, actor=wang)
    session.commit()
    issue_id = issue_of(session, iid).id
    session.rollback()

    def verifies(s: Session) -> None:
        tasks.complete(s, task_id=verify, actor=wang, data={"verdict": "pass"})

    def reassigns(s: Session) -> None:
        supervision.reassign(s, actor=people["leader_sun"], object_type="issue", object_id=issue_id,
                             to_username="gx_wang", note="王强接手", seen=None)

    outcomes = race(verifies, reassigns)
    assert sum(o is None for o in outcomes) == 1, outcomes
    issue = issue_of(session, iid)
    assert not (issue.status == "closed" and issue.handler_id == wang.user_id)


def test_two_supervisors_at_once_never_leave_the_handler_holding_verify(
        session: Session, by_hand: int, people: dict[str, Actor], race: Race) -> None:
    """The responsible leader makes 王强 the handler while an administrator gives him the 核验 task: whichever goes
    second sees the first, and 王强 never ends up both the handler and the holder of 核验."""
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    wang = _wang(session)
    org.add_user(session, username="root", display_name="管理员", is_admin=True)
    session.commit()
    root = actor_for(session, "root")
    _handled(session, iid, zhang, officer)
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify, issue_id = only_task(session, iid, "verify").id, issue_of(session, iid).id
    session.rollback()

    def handler_changes(s: Session) -> None:
        supervision.reassign(s, actor=people["leader_sun"], object_type="issue", object_id=issue_id,
                             to_username="gx_wang", note="王强接手", seen=None)

    def verify_given(s: Session) -> None:
        supervision.reassign(s, actor=root, object_type="task", object_id=verify, to_username="gx_wang",
                             note="王强核验", seen=None)

    outcomes = race(handler_changes, verify_given)
    assert outcomes[0] is None, outcomes  # the handler's change stands; the task's 改派 may have gone first
    assert outcomes[1] is None or isinstance(outcomes[1], DutyRefused), outcomes
    task = only_task(session, iid, "verify")
    assert issue_of(session, iid).handler_id == wang.user_id and task.assignee_id != wang.user_id
    assert wang.user_id not in _users(task)


def test_reassign_keeps_to_the_issues_unit(session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """自然资源局 returned the issue (so 刘洋 is a person of the case); 工信局 has it now. 改派 to 刘洋 is refused naming
    the field, from the responsible leader and from an administrator: the unit changes by 退回 and 派单 again."""
    iid, officer = by_hand, people["officer"]
    dispatch(session, iid, officer, "zrzyj", due_date="2025-09-20")
    do(session, only_task(session, iid, "respond"), people["zr_liu"],
       {"response": "return", "return_reason": "非本局职责。"})
    dispatch(session, iid, officer, "gxj", due_date="2025-09-26")
    do(session, only_task(session, iid, "respond"), people["gx_zhang"], {"response": "accept"})
    admin = org.add_user(session, username="root", display_name="管理员", is_admin=True)
    session.commit()
    issue_id = issue_of(session, iid).id
    for actor in (people["leader_sun"], actor_for(session, "root")):
        with pytest.raises(InvalidInput) as refused:
            supervision.reassign(session, actor=actor, object_type="issue", object_id=issue_id, to_username="zr_liu",
                                 note="", seen=None)
        session.rollback()
        assert refused.value.details["field"] == "to_username" and "责任单位" in refused.value.message
    assert issue_of(session, iid).handler_id == people["gx_zhang"].user_id
    assert only_task(session, iid, "handle").assignee_id == people["gx_zhang"].user_id
    assert admin.id and supervision.reassign(session, actor=people["leader_sun"], object_type="issue",
                                             object_id=issue_id, to_username="gx_li", note="", seen=None)
