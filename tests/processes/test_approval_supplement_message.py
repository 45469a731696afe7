"""并联审批: 补正 material handed in from the applicant's portal as the message 补正材料 (issue "Engine II").

The message correlates by the application's business key, is checked by the 补正 form, may only be sent by
the applicant the instance names (or an admin), ends the 补正 task in the inbox and sends the application
back to only the departments that asked — the same as completing the task by hand.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.errors import FormInvalid
from engine.org.actors import Actor
from engine.runtime import messages
from engine.runtime.message_models import BpmnMessage
from engine.tasks.models import HumanTask
from tests.processes import test_parallel_approval as approval
from tests.processes.test_parallel_approval import (
    APPLICATION,
    accept,
    at,
    data_of,
    restored,
    review,
    reviews_by_unit,
    start_by_hand,
)
from tests.steps import open_tasks

people, deployed, _fresh_spec_cache = approval.people, approval.deployed, approval._fresh_spec_cache  # its fixtures

REPLY = {"supplement_reply": "已补充界址点坐标及盖章红线图（门户提交）", "supplement_pledge": True}


def waiting_for_supplement(session: Session, people: dict[str, Actor]) -> int:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    clock.freeze(at("2025-09-29"))
    review(session, people, iid, "fgj")
    review(session, people, iid, "zrzyj", "supplement", supplement_materials="补充宗地界址点坐标及红线图（盖章）")
    review(session, people, iid, "sthjj")
    assert len(open_tasks(session, iid, "submit_supplement")) == 1
    return iid


def send(session: Session, actor: Actor, payload: dict[str, object], **kw: object) -> messages.Outcome:
    return messages.publish(session, name="补正材料", actor=actor, business_key=APPLICATION["project_code"],
                            payload=payload, **kw)  # type: ignore[arg-type]


def test_supplement_from_the_portal_goes_back_to_the_department_that_asked(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = waiting_for_supplement(session, people)
    restored(factory, session, iid, waiting_at="submit_supplement")  # save/restore while it waits for the message
    clock.freeze(at("2025-10-09"))
    out = send(session, people["qiye_zhang"], REPLY)
    session.commit()
    assert (out.status, out.instance_id) == ("delivered", iid)
    assert open_tasks(session, iid, "submit_supplement") == []
    cancelled = session.scalar(select(HumanTask.state).where(HumanTask.instance_id == iid,
                                                             HumanTask.bpmn_id == "submit_supplement"))
    assert cancelled == "cancelled"
    assert list(reviews_by_unit(session, iid)) == ["zrzyj"]  # only the department that asked reviews again
    data = data_of(session, iid)
    assert data["supplement_reply"] == REPLY["supplement_reply"]
    assert data["supplement_log"][-1]["via"] == "message" and data["review_round"] == 2


def test_only_the_applicant_may_send_it_and_the_form_checks_it(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    iid = waiting_for_supplement(session, people)
    with pytest.raises(FormInvalid):
        send(session, people["qiye_zhang"], {"supplement_reply": "", "supplement_pledge": False})
    session.rollback()
    # another applicant knows the business key: the message cannot resume this application
    with pytest.raises(messages.MessageUnmatched):
        send(session, people["qiye_li"], REPLY, ttl=0)
    session.rollback()
    assert len(open_tasks(session, iid, "submit_supplement")) == 1
    assert session.scalar(select(BpmnMessage.id)) is None


def test_supplement_sent_before_the_request_is_kept_then_used_once(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    clock.freeze(at("2025-09-29"))
    out = send(session, people["qiye_zhang"], REPLY, ttl=30 * 86400)
    session.commit()
    assert out.status == "buffered"
    review(session, people, iid, "fgj")
    review(session, people, iid, "zrzyj", "supplement", supplement_materials="补充红线图")
    review(session, people, iid, "sthjj")  # the 补正 task opens, the kept message ends it at once
    assert open_tasks(session, iid, "submit_supplement") == []
    assert list(reviews_by_unit(session, iid)) == ["zrzyj"]
    assert session.get(BpmnMessage, out.id).status == "delivered"  # type: ignore[union-attr]
