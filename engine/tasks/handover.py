"""A person who leaves: their open tasks go back to their unit's candidates (退回单位候选人), each audited."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import audit
from engine.org.actors import Actor
from engine.tasks.models import OPEN_STATES, HumanTask, TaskCandidate


def return_to_candidates(session: Session, *, user_id: int, unit_id: int | None, actor: Actor,
                         reason: str) -> list[int]:
    """Release every open task the user holds, and make their unit a candidate where nobody else could claim it.

    Returns the ids of the tasks touched (flushes).
    """
    held = select(TaskCandidate.task_id).where(TaskCandidate.user_id == user_id)
    tasks = list(session.scalars(select(HumanTask).where(
        HumanTask.state.in_(OPEN_STATES),
        or_(HumanTask.assignee_id == user_id, (HumanTask.assignee_id.is_(None) & HumanTask.id.in_(held))))
        # Locked as read (PostgreSQL; SQLite: BEGIN IMMEDIATE), in id order as a save locks them: a task the person
        # completed or handed on meanwhile is read as it is now (no longer theirs), never released from under its
        # new holder.
        .order_by(HumanTask.id).with_for_update(of=HumanTask).execution_options(populate_existing=True)))
    touched: list[int] = []
    for task in tasks:
        others = [c for c in task.candidates if c.user_id != user_id]
        added_unit = False
        if not others and unit_id is not None:
            task.candidates.append(TaskCandidate(org_unit_id=unit_id))
            added_unit = True
        if task.assignee_id != user_id and not added_unit:
            continue  # claimable by others already, and not theirs: nothing to hand over
        before = task.assignee_id
        task.assignee_id = None
        if task.delegation_state == "pending":
            task.delegation_state = None
        session.flush()
        audit.record(session, actor, "task.return_to_candidates", stream=f"instance:{task.instance_id}",
                     object_type="human_task", object_id=task.id, before={"assignee_id": before},
                     after={"bpmn_id": task.bpmn_id, "unit_candidate": unit_id if added_unit else None,
                            "reason": reason})
        touched.append(task.id)
    return touched
