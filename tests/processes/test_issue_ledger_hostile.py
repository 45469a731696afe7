"""issue_ledger.bpmn (问题台账销号) under a busy office: 督办 changing the issue between its steps, and who may
act on it, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org, tasks
from engine.errors import AlreadyClaimed, Forbidden, FormInvalid
from engine.org.actors import Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import sendback
from engine.tasks.models import HumanTask
from plan import supervision
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary
from tests.processes.test_issue_ledger import (
    REGISTRATION,
    assert_row,
    by_hand,
    deployed,
    dispatch,
    issue_of,
    people,
)
from tests.steps import do, only_task

__all__ = ["by_hand", "deployed", "people"]


def test_a_reassigned_handler_gets_the_feedback_step_too(session: Session, by_hand: int,
                                                         people: dict[str, Actor], frozen: Any) -> None:
    """改派 during 办理: the new handler finishes 办理 and the 反馈 that follows is theirs, not the old handler's."""
    iid, officer, zhang, li = by_hand, people["officer"], people["gx_zhang"], people["gx_li"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-12")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    issue = issue_of(session, iid)
    supervision.reassign(session, actor=people["leader_sun"], object_type="issue", object_id=issue.id,
                         to_username="gx_li", note="张伟出差", seen=None)
    session.commit()
    handle = only_task(session, iid, "handle")
    assert handle.assignee_id == li.user_id and issue_of(session, iid).handler_id == li.user_id
    do(session, handle, li, {"action": "done"})
    feedback = only_task(session, iid, "feedback")
    assert feedback.assignee_id == li.user_id  # was gx_zhang: the snapshot in the data still named him
    do(session, feedback, li, {"evidence": "已协调供电公司完成方案批复。"})
    assert issue_of(session, iid).status == "feedback"


def test_a_person_starting_an_issue_cannot_name_who_confirms_the_fix(session: Session, deployed: None,
                                                                     people: dict[str, Actor]) -> None:
    """`reporter` decides who holds 回访, the confirmation 销号 waits for: another process names it (the 0001
    contract), a person starting by hand is the reporter. Named from a client, a starter handed 回访 to the handler
    of the issue (who then confirmed his own fix) or to anyone at all."""
    officer = people["officer"]
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="issue_ledger", actor=officer, from_client=True,
                        data={"reporter": "gx_zhang"})
    assert [e.field for e in refused.value.errors] == ["reporter"]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == 0
    row = instances.start(session, process_key="issue_ledger", actor=officer, from_client=True)
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), officer, REGISTRATION)
    assert issue_of(session, row.id).reported_by_id == officer.user_id


@pytest.mark.parametrize(("field", "value"), [("title", "长" * 301), ("due_date", "9999-12-31"), ("source", "hotline"),
                                              ("description", "x" * 4001), ("enterprise", "企" * 201),
                                              ("unit_code", "gxj"), ("project_code", "XM-2025-0001")])
def test_registration_data_from_a_client_is_refused_at_the_start_naming_the_field(
        session: Session, deployed: None, people: dict[str, Actor], field: str, value: str) -> None:
    """By hand the 登记 form registers an issue. Start data from a client (the API, the CLI) skipped it: a title too
    long, a year 9999 or an unknown source reached ledger_register and left an instance in an incident, no issue."""
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="issue_ledger", actor=people["officer"], from_client=True,
                        data={**REGISTRATION, field: value})
    assert field in [e.field for e in refused.value.errors]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_a_head_handling_an_issue_may_not_grant_his_own_extension(session: Session, by_hand: int,
                                                                  people: dict[str, Actor]) -> None:
    """The head of 工信局 accepted the issue himself and asks for more time: through 督办 (his area is his unit) he
    once granted it himself, taking the decision over from the responsible leader."""
    head = org.add_user(session, username="gx_head", display_name="工信局局长", unit_codes=["gxj"], is_head=True)
    session.commit()
    boss = actor_for(session, "gx_head")
    iid, officer = by_hand, people["officer"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-12")
    do(session, only_task(session, iid, "respond"), boss, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), boss,
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆假期"})
    issue = issue_of(session, iid)
    due = issue.due_at
    for grant in (True, False):
        with pytest.raises(Forbidden) as refused:
            supervision.decide_extension(session, actor=boss, object_type="issue", object_id=issue.id, grant=grant,
                                         due_date=date(2025, 9, 30), opinion="同意")
        assert "本人" in str(refused.value)
        session.rollback()
    decide = only_task(session, iid, "decide_extension")
    assert decide.assignee_id is None and issue_of(session, iid).due_at == due
    supervision.decide_extension(session, actor=people["leader_sun"], object_type="issue", object_id=issue.id,
                                 grant=True, due_date=date(2025, 9, 30), opinion="同意")
    session.commit()
    assert issue_of(session, iid).due_at != due and head.id == issue_of(session, iid).handler_id


def test_a_withdrawn_dispatch_is_dispatched_again(session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """撤回 of 派单 before the unit answers (wrong unit picked): the officer dispatches again, the issue follows."""
    iid, officer = by_hand, people["officer"]
    dispatch(session, iid, officer, "zrzyj", due_date="2025-09-20")
    done = session.scalars(select(HumanTask).where(HumanTask.instance_id == iid, HumanTask.bpmn_id == "dispatch")).one()
    sendback.withdraw(session, task_id=done.id, actor=officer, reason="派错单位")
    session.commit()
    dispatch(session, iid, officer, "gxj", due_date="2025-09-26")
    assert_row(session, iid, "dispatched", unit="gxj", due=date(2025, 9, 26))
    do(session, only_task(session, iid, "respond"), people["gx_zhang"], {"response": "accept"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 26))


def test_a_verification_sent_back_to_the_revisit_goes_on(session: Session, by_hand: int,
                                                          people: dict[str, Actor]) -> None:
    """核验 sends 回访 back (退回: the officer wants the raiser to look again): the raiser confirms again, 销号 follows."""
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-20")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "已协调供电公司完成方案批复。"})
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify")
    tasks.claim(session, task_id=verify.id, actor=officer)
    sendback.send_back(session, task_id=verify.id, actor=officer, reason="请再向企业确认")
    session.commit()
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    do(session, only_task(session, iid, "verify"), officer, {"verdict": "pass"})
    assert_row(session, iid, "closed", unit="gxj", handler="gx_zhang", due=date(2025, 9, 20), closed=True)


def test_handling_sent_back_to_from_the_revisit_may_ask_for_more_time(session: Session, by_hand: int,
                                                                      people: dict[str, Actor]) -> None:
    """回访 sends the issue back to 办理 by 退回 (not the form's 未解决): the handler may report, ask for more time, and
    feed back again; the issue follows each step."""
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-20")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "已协调供电公司完成方案批复。"})
    handled = session.scalars(select(HumanTask).where(HumanTask.instance_id == iid, HumanTask.bpmn_id == "handle")).one()
    revisit = only_task(session, iid, "revisit")
    sendback.send_back(session, task_id=revisit.id, actor=officer, to=handled.id, reason="企业反映仍未送电")
    session.commit()
    do(session, only_task(session, iid, "handle"), zhang,
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "线路改造"})
    do(session, only_task(session, iid, "decide_extension"), people["leader_sun"],
       {"extension_decision": "grant", "new_due_date": "2025-09-30", "leader_opinion": "同意"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "线路已送电。"})
    assert_row(session, iid, "feedback", unit="gxj", handler="gx_zhang", due=date(2025, 9, 30))


def test_an_issue_reassigned_before_anyone_accepted_it_goes_to_the_chosen_person(
        session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """改派 while 响应 waits for the unit: the chosen person answers it. It once only wrote the issue's handler and
    told him, while the step stayed open to the whole unit and whoever accepted became the handler instead."""
    org.add_user(session, username="gx_head", display_name="工信局局长", unit_codes=["gxj"], is_head=True)
    session.commit()
    iid, officer, zhang, li = by_hand, people["officer"], people["gx_zhang"], people["gx_li"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-20")
    supervision.reassign(session, actor=actor_for(session, "gx_head"), object_type="issue",
                         object_id=issue_of(session, iid).id, to_username="gx_li", note="请李娜负责", seen=None)
    session.commit()
    respond = only_task(session, iid, "respond")
    assert respond.assignee_id == li.user_id
    with pytest.raises(AlreadyClaimed):
        tasks.claim(session, task_id=respond.id, actor=zhang)
    session.rollback()
    do(session, respond, li, {"response": "accept"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_li", due=date(2025, 9, 20))


def test_an_unknown_project_code_on_the_register_form_comes_back_naming_the_field(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    """关联项目编号 NOPE-1 was accepted and nothing linked: the 登记 form comes back with the message under
    project_code, the task stays open, no issue; a code in the 项目库 links the project."""
    row = instances.start(session, process_key="issue_ledger", actor=people["officer"], title="问题台账")
    session.commit()
    task = only_task(session, row.id, "register_issue")
    with pytest.raises(FormInvalid) as refused:
        do(session, task, people["officer"], {**REGISTRATION, "project_code": "NOPE-1"})
    assert [e.field for e in refused.value.errors] == ["project_code"]
    assert "项目库" in str(refused.value) and "NOPE-1" in str(refused.value)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(LedgerIssue)) == 0
    library = ProjectLibrary(code="investment", name="招商引资项目")
    session.add(library)
    session.flush()
    project = Project(code="ZS-2025-01", name="智能家电产业园", library_id=library.id, category="key",
                      investment=Decimal("1000"), stage="signed")
    session.add(project)
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), people["officer"],
       {**REGISTRATION, "project_code": "ZS-2025-01"})
    assert issue_of(session, row.id).project_id == project.id
