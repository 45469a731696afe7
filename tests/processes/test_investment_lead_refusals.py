"""招商线索: data the lead's services refuse sends the person's form back naming the field; nothing is kept.

Before, a contact date after today (对接) or a unit on the 派单 form the organisation does not have stopped the lead's
instance on an incident an administrator had to repair, with the step counted as done.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from engine import tasks
from engine.errors import SubmissionRefused
from engine.org.actors import Actor
from engine.runtime import instances
from tests.processes.test_investment_lead import PUSHED, lead_of, people
from tests.steps import do, kept, only_task

__all__ = ["people"]
DISPATCH = {"deadline_kind": "working_days", "working_days": 10}


def _refused(session: Session, iid: int, bpmn_id: str, actor: Actor, data: dict[str, Any]) -> SubmissionRefused:
    task = only_task(session, iid, bpmn_id)
    tasks.claim(session, task_id=task.id, actor=actor)
    session.commit()
    before = kept(session, iid)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=actor, data=data)
    session.rollback()
    assert kept(session, iid) == before
    return refused.value


def test_a_unit_the_organisation_does_not_have_is_refused_at_dispatch(session: Session,
                                                                     people: dict[str, Actor]) -> None:
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    refused = _refused(session, iid, "dispatch", people["zs_wang"], {"unit_code": "yhz", **DISPATCH})
    assert [e.field for e in refused.errors] == ["unit_code"] and refused.bpmn_id == "record_dispatch"
    assert lead_of(session, iid).status == "registered"
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"], {"unit_code": "shz", **DISPATCH})


def test_a_contact_date_after_today_is_refused_naming_the_date(session: Session, people: dict[str, Actor]) -> None:
    chen = people["shz_chen"]
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"], {"unit_code": "shz", **DISPATCH})
    do(session, only_task(session, iid, "respond"), chen, {"response": "accept"})
    contact = {"contact_way": "phone", "summary": "电话沟通投资意向。", "next_step": "again"}
    refused = _refused(session, iid, "contact", chen, {"contact_date": "2025-09-02", **contact})
    assert [e.field for e in refused.errors] == ["contact_date"] and "今天之后" in refused.errors[0].message
    assert lead_of(session, iid).contacts == 0
    do(session, only_task(session, iid, "contact"), chen, {"contact_date": "2025-09-01", **contact})
    assert lead_of(session, iid).contacts == 1


def test_a_feedback_date_already_past_is_refused_at_dispatch(session: Session, people: dict[str, Actor]) -> None:
    # 2025-09-01 is today here: a date before it (a slip of the year) turned the lead red the moment it was dispatched
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    refused = _refused(session, iid, "dispatch", people["zs_wang"],
                       {"unit_code": "shz", "deadline_kind": "date", "due_date": "2024-09-15"})
    assert [e.field for e in refused.errors] == ["due_date"] and "早于今天" in refused.errors[0].message
    assert lead_of(session, iid).status == "registered"
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"],
       {"unit_code": "shz", "deadline_kind": "date", "due_date": "2025-09-01"})  # today is still a deadline
    assert lead_of(session, iid).status == "dispatched"
