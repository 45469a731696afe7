"""investment_lead.bpmn against a busy office: steps reopened by 撤回 or 退回 (the lead row is where later steps left
it), lead data from a client checked at the start."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import tasks
from engine.errors import FormInvalid
from engine.org.actors import Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import sendback
from engine.tasks.models import HumanTask
from tests.processes.test_investment_lead import PUSHED, lead_of, people
from tests.steps import do, only_task

__all__ = ["people"]
DISPATCH = {"deadline_kind": "working_days", "working_days": 10}


def _task(session: Session, iid: int, bpmn_id: str) -> HumanTask:
    return session.scalars(select(HumanTask).where(HumanTask.instance_id == iid, HumanTask.bpmn_id == bpmn_id)).one()


def test_a_withdrawn_dispatch_is_dispatched_again(session: Session, people: dict[str, Actor]) -> None:
    """撤回 of 派单 before the unit answers (wrong unit picked): the officer dispatches again, the lead follows."""
    officer = people["zs_wang"]
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    do(session, only_task(session, iid, "dispatch"), officer, {"unit_code": "jxj", **DISPATCH})
    sendback.withdraw(session, task_id=_task(session, iid, "dispatch").id, actor=officer, reason="派错单位")
    session.commit()
    do(session, only_task(session, iid, "dispatch"), officer, {"unit_code": "shz", **DISPATCH})
    assert lead_of(session, iid).status == "dispatched"
    do(session, only_task(session, iid, "respond"), people["shz_chen"], {"response": "accept"})
    assert lead_of(session, iid).status == "accepted"


def test_a_contact_sent_back_to_the_response_goes_on(session: Session, people: dict[str, Actor]) -> None:
    """对接 sends the lead back to 响应 by 退回 after a round: the unit accepts again, 对接 and 反馈 follow."""
    officer, chen = people["zs_wang"], people["shz_chen"]
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    do(session, only_task(session, iid, "dispatch"), officer, {"unit_code": "shz", **DISPATCH})
    do(session, only_task(session, iid, "respond"), chen, {"response": "accept"})
    do(session, only_task(session, iid, "contact"), chen, {"contact_date": "2025-09-01", "contact_way": "phone",
                                                          "summary": "电话沟通", "next_step": "again"})
    contact = only_task(session, iid, "contact")
    tasks.claim(session, task_id=contact.id, actor=chen)
    sendback.send_back(session, task_id=contact.id, actor=chen, to=_task(session, iid, "respond").id, reason="重新响应")
    session.commit()
    do(session, only_task(session, iid, "respond"), chen, {"response": "accept"})
    assert lead_of(session, iid).status == "accepted"
    do(session, only_task(session, iid, "contact"), chen, {"contact_date": "2025-09-01", "contact_way": "visit",
                                                          "summary": "上门走访", "next_step": "done"})
    assert lead_of(session, iid).status == "contacting"


@pytest.mark.parametrize(("field", "value"), [("title", "长" * 301), ("source", "hotline"), ("investment", -1),
                                              ("description", "x" * 4001), ("enterprise", "企" * 201),
                                              ("unit_code", "no_such_unit")])
def test_lead_data_from_a_client_is_checked_at_the_start_naming_the_field(
        session: Session, people: dict[str, Actor], field: str, value: Any) -> None:
    """The monitoring platform pushes a lead through the API (start data from a client): data the 登记 form refuses
    left an instance in an incident with no lead. It is refused at the start, naming the field, and nothing starts."""
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="investment_lead", actor=people["platform"], from_client=True,
                        data={**PUSHED, field: value})
    assert field in [e.field for e in refused.value.errors]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_a_lead_pushed_or_started_by_hand_through_a_client(session: Session, people: dict[str, Actor]) -> None:
    """The platform's push registers the lead at once; an officer starting with no data fills 登记 first."""
    pushed = instances.start(session, process_key="investment_lead", actor=people["platform"], from_client=True,
                             data=PUSHED).id
    by_hand = instances.start(session, process_key="investment_lead", actor=people["zs_wang"], from_client=True).id
    session.commit()
    assert lead_of(session, pushed).status == "registered" and only_task(session, pushed, "dispatch")
    assert only_task(session, by_hand, "register_lead")
