"""A step whose project service acts on a project goes only to someone who can complete it (engine.tasks.fit).

Before: ⑦'s 跟进签约 (follow_up) of a call runs project_sign and project_start_approval on the call's project, bound to
the reach of the person completing it (plan.projects.acting). 转办 of the step to someone outside the appointed unit
(临空经济区's 招商专员, in the transferring person's scope: their unit bid on the call) went through, and their
"signed" report stopped the call in an incident an administrator had to repair. Now the 转办 (and 委派, 督办改派, a
successor's handover) is refused naming the field and the reason; and one who cannot complete it any more (moved to
another unit after it was handed to them) is refused naming the reason: nothing changes, the task stays theirs.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import StepOutOfReach
from engine.org.actors import Actor, actor_for
from engine.org.models import Membership, User
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks import handover, operations
from engine.tasks.models import HumanTask
from plan.projects.models import Project
from tests.processes import test_investment_loop as loop
from tests.processes.test_investment_loop import SIGNED, to_follow_up
from tests.steps import do, only_task

people, figures, deployed = loop.people, loop.figures, loop.deployed  # the loop's fixtures, used here too

REASON = ("此任务办理的项目“{code}”不在临空经济区郑洁（lkq_zs）的项目范围内，签约入库和并联审批只能由项目责任单位"
          "（挂帅单位）的人员办理")
GLOSS = "project {code} is out of lkq_zs's reach: only its responsible unit signs it and starts its approval"


def state(session: Session, cid: int, task_id: int) -> dict[str, Any]:
    """What a refusal must leave as it was: the call, its task's holder and the project, and no incident."""
    session.expire_all()
    task = session.get(HumanTask, task_id)
    lead = session.scalar(select(Project).where(Project.name == "智能家电产业链强链补链揭榜"))
    assert task is not None and lead is not None
    return {"status": session.get(ProcessInstance, cid).status,  # type: ignore[union-attr]
            "task": (task.state, task.assignee_id, task.owner_id, sorted(c.user_id or 0 for c in task.candidates)),
            "project": (lead.stage, lead.name), "incidents": session.scalar(select(func.count(Incident.id))),
            "events": session.scalar(select(func.count(AuditEvent.id)))}


def test_a_follow_up_transferred_out_of_the_appointed_unit_is_refused_naming_the_field(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    cid, lead = to_follow_up(session, people)
    task = only_task(session, cid, "follow_up")
    before = state(session, cid, task.id)
    with pytest.raises(StepOutOfReach) as refused:
        operations.transfer(session, task_id=task.id, actor=people["shz_zs"], to_username="lkq_zs", note="请跟进")
    session.rollback()
    assert refused.value.message == (f"转办给（to_username）：{REASON.format(code=lead.code)}，此人不能办理此任务，"
                                     f"请另选他人 (to_username: {GLOSS.format(code=lead.code)}; they cannot "
                                     "complete this task, choose someone else)")
    assert refused.value.details["field"] == "to_username"
    assert state(session, cid, task.id) == before
    # 委派 likewise: the delegate would fill in the form
    with pytest.raises(StepOutOfReach, match="委派给（to_username）"):
        operations.delegate(session, task_id=task.id, actor=people["shz_zs"], to_username="lkq_zs")
    session.rollback()
    assert state(session, cid, task.id) == before
    # the unit's own colleague can take it over, and completes it
    org.add_user(session, username="shz_zs2", display_name="上合示范区陈晨", unit_codes=["shz"],
                 role_codes=["investment_officer"])
    session.commit()
    operations.transfer(session, task_id=task.id, actor=people["shz_zs"], to_username="shz_zs2")
    session.commit()
    result = do(session, only_task(session, cid, "follow_up"), actor_for(session, "shz_zs2"), SIGNED)
    assert result.status == "completed"
    assert audit.verify(session).ok


def move_to_lkq(session: Session, username: str) -> Actor:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    for row in session.scalars(select(Membership).where(Membership.user_id == user.id,
                                                        Membership.org_unit_id == loop.unit_id(session, "shz"))):
        row.org_unit_id = loop.unit_id(session, "lkq")
    session.commit()
    return actor_for(session, username)


@pytest.mark.parametrize("outcome", ["signed", "not_signed"])
def test_one_who_moved_unit_after_taking_the_follow_up_is_refused_and_it_stays_theirs(
        session: Session, people: dict[str, Actor], deployed: dict[str, str], outcome: str) -> None:
    cid, lead = to_follow_up(session, people)
    task = only_task(session, cid, "follow_up")
    tasks.claim(session, task_id=task.id, actor=people["shz_zs"])
    session.commit()
    moved = move_to_lkq(session, "shz_zs")
    before = state(session, cid, task.id)
    data = SIGNED if outcome == "signed" else {"progress": "企业暂缓", "outcome": "not_signed"}
    with pytest.raises(StepOutOfReach) as refused:
        tasks.complete(session, task_id=task.id, actor=moved, data=data)
    session.rollback()
    assert refused.value.message == (
        f"您不能办理此任务：此任务办理的项目“{lead.code}”不在上合示范区吴磊（shz_zs）的项目范围内，签约入库和并联审批只能由"
        "项目责任单位（挂帅单位）的人员办理。未作任何更改，请联系上级把任务改派给能办理的人 (you cannot complete "
        f"this task: project {lead.code} is out of shz_zs's reach: only its responsible unit signs it and starts its "
        "approval; nothing was changed, ask a leader to reassign it)")
    assert state(session, cid, task.id) == before  # no incident, the task still theirs, nothing recorded


def test_a_service_refusing_a_project_the_person_did_not_submit_refuses_the_completion_not_the_instance(
        session: Session, people: dict[str, Actor], deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' own guard (a diagram whose step the check does not know): refused, not an incident."""
    from engine.tasks import fit
    cid, lead = to_follow_up(session, people)
    task = only_task(session, cid, "follow_up")
    monkeypatch.setattr(fit, "_CHECKS", {})  # as a process owner's diagram would have it: no check registered
    operations.transfer(session, task_id=task.id, actor=people["shz_zs"], to_username="lkq_zs")
    session.commit()
    before = state(session, cid, task.id)
    with pytest.raises(StepOutOfReach) as refused:
        tasks.complete(session, task_id=task.id, actor=people["lkq_zs"], data=SIGNED)
    session.rollback()
    assert refused.value.message == (
        f"您不能办理此任务：项目“{lead.code}”不在项目库中或不在您的查看范围内。未作任何更改，请联系上级把任务改派"
        "给能办理的人 (you cannot complete this task: no such project in your reach; nothing was changed, ask a leader "
        "to reassign it)")
    assert state(session, cid, task.id) == before


def test_a_handover_does_not_give_the_follow_up_to_a_successor_who_cannot_complete_it(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    cid, _lead = to_follow_up(session, people)
    task = only_task(session, cid, "follow_up")
    tasks.claim(session, task_id=task.id, actor=people["shz_zs"])
    session.commit()
    successor = session.scalar(select(User).where(User.username == "lkq_zs"))
    done = handover.hand_over(session, user_id=people["shz_zs"].user_id, unit_id=loop.unit_id(session, "shz"),
                              actor=people["shz_zs"], reason="调岗", successor=successor)
    session.commit()
    assert task.id in done.touched
    again = only_task(session, cid, "follow_up")
    assert again.assignee_id is None  # back to the appointed unit to claim, not to lkq_zs
    assert people["lkq_zs"].user_id not in [c.user_id for c in again.candidates]


def test_supervision_reassigning_the_follow_up_out_of_reach_is_refused_and_within_it_goes_through(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """督办改派 — the way a leader moves the step when its holder cannot complete it — applies the same rule."""
    from engine.org.actors import SYSTEM
    from plan.supervision import actions
    cid, lead = to_follow_up(session, people)
    task = only_task(session, cid, "follow_up")
    before = state(session, cid, task.id)
    with pytest.raises(StepOutOfReach) as refused:
        actions.reassign(session, actor=SYSTEM, object_type="task", object_id=task.id, to_username="lkq_zs", seen=None)
    session.rollback()
    assert refused.value.message.startswith(f"改派给（to_username）：{REASON.format(code=lead.code)}，此人不能办理")
    assert state(session, cid, task.id) == before
    org.add_user(session, username="shz_zs2", display_name="上合示范区陈晨", unit_codes=["shz"],
                 role_codes=["investment_officer"])
    session.commit()
    actions.reassign(session, actor=SYSTEM, object_type="task", object_id=task.id, to_username="shz_zs2", seen=None)
    session.commit()
    assert only_task(session, cid, "follow_up").assignee_id == actor_for(session, "shz_zs2").user_id
