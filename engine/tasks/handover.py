"""A person who leaves (离岗交接): their open work goes to a successor (接手人), else back to its candidates.

Called by `engine.org.deactivate_user` for every way a person is deactivated (管理 → 停用, the directory sync's
leavers), in the deactivation's transaction. What a person holds, and where each goes:

  held (claimed, assigned, transferred to them)      the successor; else released to its candidates
  offered to them alone by name                      the successor; else their unit becomes a candidate
  a co-signer's task (加签, waiting or ready)          the successor signs instead; else as above
  delegated to them (委派, pending)                    back to whoever delegated it, while they are active
  delegated by them to someone else                  its owner becomes the successor (else nobody): when the
                                                     delegate gives it back it goes to them, or to the candidates

A task nobody else could take (no other candidate, no unit, no successor) is `stuck`: the admin page refuses
the deactivation until a successor is named; the directory sync leaves it where it is (its leavers have a unit).

A person who moves to another unit (调岗: the directory sync, single sign-on's unit claim) stays active and keeps what
was given to them by name; what they claimed from the pool of a unit they left goes back to it (`give_back`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from engine import audit, notify
from engine.db import is_postgres
from engine.errors import InvalidInput
from engine.org.actors import Actor, actor_of
from engine.org.models import User
from engine.runtime.models import ProcessInstance
from engine.tasks import duties, fit
from engine.tasks.lookup import is_candidate
from engine.tasks.models import OPEN_STATES, HumanTask, TaskCandidate

# A co-signer's task waiting for its holder's submission (state pending) is open and the co-signer's too.
HELD_STATES = (*OPEN_STATES, "pending")


@dataclass
class Handover:
    """What a handover did: the tasks it touched, and those nobody else could take (left where they were)."""

    touched: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)


def _theirs_where(user_id: int) -> ColumnElement[bool]:
    offered = select(TaskCandidate.task_id).where(TaskCandidate.user_id == user_id)
    return HumanTask.state.in_(HELD_STATES) & or_(
        HumanTask.assignee_id == user_id, (HumanTask.owner_id == user_id) & (HumanTask.delegation_state == "pending"),
        HumanTask.assignee_id.is_(None) & HumanTask.id.in_(offered))


def lock_instances(session: Session, user_id: int) -> None:
    """Share-lock the instances of the person's open tasks (FOR KEY SHARE, id order; PostgreSQL), before their
    account's row and the task rows, as a submission takes its instance before its task's row.

    The task rows alone, in id order, were taken across instances in another order than the 迁移实例 page's
    migration takes them (its list FOR UPDATE in id order, then each instance's rows): a handover holding an older
    row of a later instance and waiting for a newer row of an earlier one the migration had rewritten deadlocked
    with it. Now the handover waits for the migration (or it for the handover). The sweep, 终止 and a delivery
    (FOR UPDATE) wait the same way; other submissions (FOR KEY SHARE) do not.
    """
    if not is_postgres(session):
        return  # SQLite: BEGIN IMMEDIATE, one writer
    instances = select(HumanTask.instance_id).where(_theirs_where(user_id), HumanTask.instance_id.is_not(None))
    session.execute(select(ProcessInstance.id).where(ProcessInstance.id.in_(instances)).order_by(ProcessInstance.id)
                    .with_for_update(read=True, key_share=True, of=ProcessInstance))


def _theirs(session: Session, user_id: int) -> list[HumanTask]:
    return list(session.scalars(select(HumanTask).where(_theirs_where(user_id))
        # Locked as read (PostgreSQL; SQLite: BEGIN IMMEDIATE), in id order as a save locks them: a task the person
        # completed or handed on meanwhile is read as it is now (no longer theirs), never released from under its
        # new holder.
        .order_by(HumanTask.id).with_for_update(of=HumanTask).execution_options(populate_existing=True)))


def _may_sign(session: Session, task: HumanTask, user_id: int) -> bool:
    """Tell whether a successor may take over a co-signer's task: not on a task they hold or already co-sign."""
    parent = session.get(HumanTask, task.parent_task_id) if task.parent_task_id is not None else None
    if parent is None or parent.assignee_id == user_id:
        return False
    return session.scalar(select(HumanTask.id).where(
        HumanTask.parent_task_id == parent.id, HumanTask.kind == "cosign", HumanTask.assignee_id == user_id,
        HumanTask.state.in_(HELD_STATES)).limit(1)) is None


def _plan(session: Session, task: HumanTask, user_id: int, unit_id: int | None,
          successor: User | None) -> tuple[str, int | None]:
    """Decide where one task goes: (how, to whom) — how is owner_back, successor, release, owner_gone, skip, stuck."""
    others = [c for c in task.candidates if c.user_id != user_id]
    if task.delegation_state == "pending" and task.assignee_id == user_id and task.owner_id not in (None, user_id):
        owner = session.get(User, task.owner_id)
        if owner is not None and owner.is_active:
            return "owner_back", owner.id
    if task.delegation_state == "pending" and task.owner_id == user_id and task.assignee_id != user_id:
        if successor is None and not others and unit_id is None:
            return "stuck", None
        return "owner_gone", successor.id if successor else None
    if task.assignee_id != user_id and others:
        return "skip", None  # claimable by others already, and not theirs: nothing to hand over
    duty = duties.duty_of(session, task)  # 职责分离, fit: never to a successor barred or unfit; its candidates instead
    if successor is not None and (duty is None or successor.id not in duty.barred) and (
            fit.unfit(session, task, successor.id) is None) and (
            task.kind != "cosign" or _may_sign(session, task, successor.id)):
        return "successor", successor.id
    if not others and unit_id is None:
        return "stuck", None
    return "release", unit_id if not others else None


def hand_over(session: Session, *, user_id: int, unit_id: int | None, actor: Actor, reason: str,
              successor: User | None = None, refuse_stuck: bool = False) -> Handover:
    """Hand over every open task of the user (flushes); each task touched is audited once.

    `unit_id`: the unit that becomes a candidate of a task nobody else could claim; `refuse_stuck`: refuse, changing
    nothing, when a task would be left with nobody who could take it.

    Raises: InvalidInput (field successor: `refuse_stuck` and work nobody else could take)
    """
    tasks = _theirs(session, user_id)
    plans = [(task, *_plan(session, task, user_id, unit_id, successor)) for task in tasks]
    done = Handover(stuck=[t.id for t, how, _ in plans if how == "stuck"])
    told: list[notify.Note] = []
    if done.stuck and refuse_stuck:
        raise InvalidInput(f"有 {len(done.stuck)} 项待办除此人外无人可办理，请指定接手人 (successor: {len(done.stuck)} "
                           "open tasks have no one else to take them; name a successor)", field="successor",
                           tasks=done.stuck)
    for task, how, to in plans:
        if how in ("skip", "stuck"):
            continue
        before = {"assignee_id": task.assignee_id, "owner_id": task.owner_id}
        action = "task.hand_over"
        after: dict[str, Any] = {"bpmn_id": task.bpmn_id, "reason": reason}
        if how == "owner_back":
            task.assignee_id, task.delegation_state = to, "resolved"
        elif how == "owner_gone":
            task.owner_id = to
            if to is None and not [c for c in task.candidates if c.user_id != user_id]:
                task.candidates.append(TaskCandidate(org_unit_id=unit_id))
        elif how == "successor":
            task.assignee_id, task.delegation_state = to, None
            if task.kind != "cosign":
                task.owner_id = to
            if not any(c.user_id == to for c in task.candidates):
                task.candidates.append(TaskCandidate(user_id=to))
        else:
            action, after["unit_candidate"] = "task.return_to_candidates", to
            if to is not None:
                task.candidates.append(TaskCandidate(org_unit_id=to))
            task.assignee_id = None
            if task.delegation_state == "pending":
                task.delegation_state = None
        if how != "release":
            taker = session.get(User, to) if to is not None else None
            after["to"] = taker.username if taker is not None else None
        session.flush()
        audit.record(session, actor, action, stream=f"instance:{task.instance_id}", object_type="human_task",
                     object_id=task.id, before=before, after=after)
        done.touched.append(task.id)
        if how == "owner_back" and to is not None:
            told.append(notify.worded(to, "task_returned", "delegate_left", {"task": task.name},
                                      link=f"/tasks/{task.id}", instance_id=task.instance_id))
    given = [t.id for t, how, _ in plans if how == "successor"]
    if successor is not None and given:
        told.append(notify.worded(successor.id, "task_assigned", "tasks_handed_over", {"count": len(given)},
                                  link="/inbox"))
    notify.send_many(session, told)  # after every audit event: the notice counters are the last locks taken
    return done


def give_back(session: Session, *, user: User, actor: Actor, reason: str, left: set[int] | None = None,
              roles: set[int] | None = None) -> list[int]:
    """调岗: release the tasks the person claimed from the pool of a unit they have left, or of a role they lost
    (flushes); return their ids.

    Called once their memberships are what they are now. A task goes back when one of its candidates is a unit in
    `left` (or a role in `roles`) and none names them any longer (by name, a unit or a role they still hold): until
    then they remained its holder, could complete it and saw its case, and the colleagues who stayed could not claim
    it. A task they delegated (委派) from such a pool keeps its delegate and, given back, goes to the pool, not to them.
    What was given to them by name (an assignment, 转办, 委派 to them, 加签) stays theirs. Each change is audited
    once, as a handover's.
    """
    left, roles = left or set(), roles or set()
    if not left and not roles:
        return []
    lock_instances(session, user.id)  # as a 停用: the instances first, then the task rows
    now = actor_of(session, user)
    done: list[int] = []
    for task in _theirs(session, user.id):
        if task.kind == "cosign" or is_candidate(task, now) \
                or not any(c.org_unit_id in left or c.role_id in roles for c in task.candidates):
            continue
        pending = task.delegation_state == "pending"
        before = {"assignee_id": task.assignee_id, "owner_id": task.owner_id}
        if pending and task.owner_id == user.id and task.assignee_id != user.id:
            task.owner_id, action = None, "task.hand_over"  # delegated by them (委派): given back, it goes to the pool
        elif task.assignee_id == user.id and not pending:
            task.assignee_id, action = None, "task.return_to_candidates"
        else:
            continue  # delegated to them by name: theirs until they give it back
        session.flush()
        audit.record(session, actor, action, stream=f"instance:{task.instance_id}", object_type="human_task",
                     object_id=task.id, before=before,
                     after={"bpmn_id": task.bpmn_id, "reason": reason, "unit_candidate": None, "to": None})
        done.append(task.id)
    return done
