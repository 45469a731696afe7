"""investment_lead.bpmn against a busy office: steps reopened by 撤回 or 退回 (the lead row is where later steps left it)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import tasks
from engine.org.actors import Actor
from engine.runtime import instances
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
