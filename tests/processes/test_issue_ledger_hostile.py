"""issue_ledger.bpmn (问题台账销号) under a busy office: 督办 changing the issue between its steps, and who may
act on it, on SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.org.actors import Actor
from plan import supervision
from tests.processes.test_issue_ledger import by_hand, deployed, dispatch, issue_of, people
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
