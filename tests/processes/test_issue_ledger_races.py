"""问题台账 at once: two people on one issue at the same moment (the race harness of test_supervision_races: each
worker in its own session, held at its first audit.record until the other got there or waits for a lock)."""
from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org, tasks
from engine.audit.models import AuditEvent
from engine.org.actors import Actor, actor_for
from engine.tasks import sendback
from plan import supervision
from tests.engine.test_supervision_races import Race, race
from tests.processes.test_issue_ledger import (
    by_hand,
    deployed,
    dispatch,
    end_of_day,
    issue_of,
    people,
    workflow_data,
)
from tests.steps import do, names, only_task

__all__ = ["by_hand", "deployed", "people", "race"]


def _asked(session: Session, iid: int, people: dict[str, Actor]) -> Actor:
    """The issue handled by 工信局's 张伟, who asked to extend it; and the head of 工信局 (督办 of his unit)."""
    org.add_user(session, username="gx_head", display_name="工信局局长", unit_codes=["gxj"], is_head=True)
    session.commit()
    dispatch(session, iid, people["officer"], "gxj", due_date="2025-09-12")
    do(session, only_task(session, iid, "respond"), people["gx_zhang"], {"response": "accept"})
    do(session, only_task(session, iid, "handle"), people["gx_zhang"],
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆假期"})
    return actor_for(session, "gx_head")


def test_an_extension_decided_on_the_task_page_and_through_supervision_at_once_is_decided_once(
        session: Session, by_hand: int, people: dict[str, Actor], frozen: Any, race: Race) -> None:
    iid = by_hand
    head = _asked(session, iid, people)
    decide, issue_id = only_task(session, iid, "decide_extension").id, issue_of(session, iid).id
    session.rollback()

    def on_the_page(s: Session) -> None:
        tasks.claim(s, task_id=decide, actor=people["leader_sun"])
        tasks.complete(s, task_id=decide, actor=people["leader_sun"],
                       data={"extension_decision": "grant", "new_due_date": "2025-09-26", "leader_opinion": "同意"})

    def through_supervision(s: Session) -> None:
        supervision.decide_extension(s, actor=head, object_type="issue", object_id=issue_id, grant=True,
                                     due_date=date(2025, 9, 30), opinion="同意延至月底")

    outcomes = race(on_the_page, through_supervision)
    assert sum(o is None for o in outcomes) == 1, outcomes
    winner = date(2025, 9, 26) if outcomes[0] is None else date(2025, 9, 30)
    assert issue_of(session, iid).due_at == end_of_day(winner)
    assert names(session, iid) == ["handle"] and only_task(session, iid, "handle").due_at == end_of_day(winner)
    assert [e["due_date"] for e in workflow_data(session, iid)["extensions"]] == [winner.isoformat()]
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "ledger.extension.grant")) == 1


def test_a_reassignment_while_the_handler_submits_leaves_one_handler_of_the_next_step(
        session: Session, by_hand: int, people: dict[str, Actor], frozen: Any, race: Race) -> None:
    iid = by_hand
    head = _asked(session, iid, people)
    do(session, only_task(session, iid, "decide_extension"), people["leader_sun"],
       {"extension_decision": "refuse", "leader_opinion": "不同意"})
    handle, issue_id = only_task(session, iid, "handle").id, issue_of(session, iid).id
    session.rollback()

    def submit(s: Session) -> None:
        tasks.complete(s, task_id=handle, actor=people["gx_zhang"], data={"action": "done"})

    def reassign(s: Session) -> None:
        supervision.reassign(s, actor=head, object_type="issue", object_id=issue_id, to_username="gx_li",
                             note="出差", seen=None)

    outcomes = race(submit, reassign)
    assert outcomes[1] is None or outcomes[0] is None, outcomes  # the 改派 either waits for the submission or wins
    # one open step, held by the issue's handler: the 改派's man whenever it stood, 张伟 only when it was refused
    open_now = only_task(session, iid, "feedback" if outcomes[0] is None else "handle")
    holder = people["gx_li"] if outcomes[1] is None else people["gx_zhang"]
    assert open_now.assignee_id == issue_of(session, iid).handler_id == holder.user_id, outcomes


def _confirmed(session: Session, iid: int, people: dict[str, Actor]) -> int:
    """The issue fed back and confirmed at 回访: 核验 is open, claimed by the officer; return its task id."""
    officer, zhang = people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-20")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "已协调供电公司完成方案批复。"})
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    verify = only_task(session, iid, "verify").id
    tasks.claim(session, task_id=verify, actor=officer)
    session.commit()
    return verify


def test_a_close_out_submitted_twice_at_once_closes_once(session: Session, by_hand: int, people: dict[str, Actor],
                                                         frozen: Any, race: Race) -> None:
    iid = by_hand
    verify = _confirmed(session, iid, people)

    def close(s: Session) -> None:
        tasks.complete(s, task_id=verify, actor=people["officer"], data={"verdict": "pass"})

    outcomes = race(close, close)
    assert sum(o is None for o in outcomes) == 1, outcomes
    assert issue_of(session, iid).status == "closed" and names(session, iid) == []
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "ledger.closed")) == 1
    assert len(workflow_data(session, iid)["verifications"]) == 1


def test_a_close_out_and_a_send_back_of_it_at_once_do_one_of_them(session: Session, by_hand: int,
                                                                   people: dict[str, Actor], frozen: Any,
                                                                   race: Race) -> None:
    iid = by_hand
    verify = _confirmed(session, iid, people)

    def close(s: Session) -> None:
        tasks.complete(s, task_id=verify, actor=people["officer"], data={"verdict": "pass"})

    def send_back(s: Session) -> None:
        sendback.send_back(s, task_id=verify, actor=people["officer"], reason="请再向企业确认")

    outcomes = race(close, send_back)
    assert sum(o is None for o in outcomes) == 1, outcomes
    if outcomes[0] is None:
        assert issue_of(session, iid).status == "closed" and names(session, iid) == []
    else:
        assert issue_of(session, iid).status == "confirmed" and names(session, iid) == ["revisit"]
        assert issue_of(session, iid).closed_at is None
