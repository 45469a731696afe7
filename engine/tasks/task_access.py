"""Who may do what to a task: ONE table of operation × relation to the task, consulted by every service.

The services call `require` before they act; the task page and the API derive the buttons they offer
from `permitted`; tests walk every cell of `TABLE` through the services and the JSON API. A relation is
what the actor is to this task now — an actor may hold several (a holder can also see the instance):
an operation is allowed when any of them allows it. The services still check the task's state
(open, claimed by someone else, blocked by co-signers) after the table has said yes.

  relation   who
  holder     the assignee of a task that is not delegated (办理人)
  owner      who delegated a task that is still with the delegate (委派人, delegation pending)
  delegate   whom a pending delegation went to (被委派人): they may only give it back with an opinion
  candidate  a candidate (user, unit member, role holder) of a task nobody else holds (候选人)
  cosigner   the assignee of a co-signer task (加签人): they may only sign it
  leader     a city leader, or the head / responsible leader of the task's unit (领导)
  admin      an administrator
  viewer     anyone else who may see the instance (initiator, CC'd, auditors, process owners,
             colleagues of a task someone holds): only when none of the relations above applies
  (none)     anyone else may not see the task: every operation answers as for a task that does not exist
             (404, the same body), never 403 — a 403 would tell them the id exists
"""
from __future__ import annotations

from enum import StrEnum
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import NotYourTask
from engine.org.actors import Actor
from engine.org.area import area
from engine.org.models import Membership
from engine.tasks import access, lookup
from engine.tasks.models import HumanTask


class Op(StrEnum):
    VIEW = "view"
    CLAIM = "claim"  # 认领 (the holder claiming again is a no-op)
    UNCLAIM = "unclaim"  # 取消认领
    COMPLETE = "complete"  # 提交 / 加签人签署
    RESOLVE = "resolve"  # 委派退回: the delegate gives the task back with an opinion
    TRANSFER = "transfer"  # 转办
    DELEGATE = "delegate"  # 委派
    ADD_COSIGNER = "add_cosigner"  # 加签
    REMOVE_COSIGNER = "remove_cosigner"  # 减签 (asked of the parent task)
    SEND_BACK = "send_back"  # 退回
    URGE = "urge"  # 催办


class Rel(StrEnum):
    HOLDER = "holder"
    OWNER = "owner"
    DELEGATE = "delegate"
    CANDIDATE = "candidate"
    COSIGNER = "cosigner"
    LEADER = "leader"
    ADMIN = "admin"
    VIEWER = "viewer"


HOLDER, OWNER, DELEGATE, CANDIDATE = Rel.HOLDER, Rel.OWNER, Rel.DELEGATE, Rel.CANDIDATE
COSIGNER, LEADER, ADMIN, VIEWER = Rel.COSIGNER, Rel.LEADER, Rel.ADMIN, Rel.VIEWER
# A candidate acting on an unclaimed group task claims it first (acting claims).
TABLE: dict[Op, frozenset[Rel]] = {
    Op.VIEW: frozenset(Rel),
    Op.CLAIM: frozenset({HOLDER, CANDIDATE}),
    Op.UNCLAIM: frozenset({HOLDER, ADMIN}),  # admins release a task stuck with somebody
    Op.COMPLETE: frozenset({HOLDER, CANDIDATE, COSIGNER}),
    Op.RESOLVE: frozenset({DELEGATE}),
    Op.TRANSFER: frozenset({HOLDER, CANDIDATE}),
    Op.DELEGATE: frozenset({HOLDER, CANDIDATE}),
    Op.ADD_COSIGNER: frozenset({HOLDER, CANDIDATE}),
    Op.REMOVE_COSIGNER: frozenset({HOLDER}),
    Op.SEND_BACK: frozenset({HOLDER, CANDIDATE}),
    Op.URGE: frozenset({OWNER, LEADER, ADMIN, VIEWER}),
}
# Relations that rule an operation out whatever else the actor is: whoever holds a task (a unit head handed one of
# their unit's tasks, say) would urge nobody but themselves.
EXCLUDED: dict[Op, frozenset[Rel]] = {Op.URGE: frozenset({HOLDER, DELEGATE, COSIGNER})}
CITY_LEADER_ROLE = "city_leader"


def _task_units(session: Session, task: HumanTask) -> set[int]:
    units = {c.org_unit_id for c in task.candidates if c.org_unit_id is not None}
    people = [p for p in [task.assignee_id, *(c.user_id for c in task.candidates)] if p is not None]
    if people:
        units |= {u for u in session.scalars(select(Membership.org_unit_id).where(
            Membership.user_id.in_(people), Membership.org_unit_id.is_not(None))) if u is not None}
    return units


def is_leader(session: Session, actor: Actor, task: HumanTask) -> bool:
    """Tell whether the actor is a city leader, or leads (heads, is responsible for) a unit the task belongs to."""
    if actor.user_id is None:
        return False
    if CITY_LEADER_ROLE in actor.role_codes:
        return True
    led = area(session, actor)
    return bool(led.unit_ids) and any(led.covers(u) for u in _task_units(session, task))


def _direct(actor: Actor, task: HumanTask) -> set[Rel]:
    """The relations the task row and the actor tell by themselves (no query)."""
    found: set[Rel] = set()
    me = actor.user_id
    pending = task.delegation_state == "pending"
    if me is not None and task.assignee_id == me:
        if task.kind == "cosign":
            found.add(Rel.COSIGNER)
        elif pending:
            found.add(Rel.DELEGATE)
        else:
            found.add(Rel.HOLDER)
    if me is not None and pending and task.owner_id == me and task.assignee_id != me:
        found.add(Rel.OWNER)
    if task.assignee_id is None and lookup.is_candidate(task, actor):
        found.add(Rel.CANDIDATE)
    if actor.is_admin:
        found.add(Rel.ADMIN)
    return found


def relations(session: Session, actor: Actor, task: HumanTask) -> frozenset[Rel]:
    """Return every relation the actor has to the task."""
    found = _direct(actor, task)
    if is_leader(session, actor, task):
        found.add(Rel.LEADER)
    if not found and access.can_view_instance(session, actor, task.instance_id):
        found.add(Rel.VIEWER)
    return frozenset(found)


def sees(session: Session, actor: Actor, task: HumanTask) -> bool:
    """Tell whether the actor may see the task at all (hot or archived): holds, delegated, may claim it, or has any
    relation to it (VIEW is every relation's)."""
    if task.assignee_id == actor.user_id or task.owner_id == actor.user_id or lookup.is_candidate(task, actor):
        return True
    return bool(relations(session, actor, task))


def require_seen(session: Session, actor: Actor, task: HumanTask) -> HumanTask:
    """Refuse a task the actor may not see as one that does not exist (ids are not walked: docs/security.md).

    Raises: TaskNotFound (lookup.not_found: the same answer as for a missing id)
    """
    if not sees(session, actor, task):
        raise lookup.not_found(task.id)
    return task


def open_task(session: Session, actor: Actor, task_id: int) -> HumanTask:
    """Return an open task the actor may see; one they may not see is told as missing, whatever its state.

    Raises: TaskNotFound, TaskAlreadyDone, InstanceArchived (a step of an archived instance they may see)
    """
    return lookup.get_open(session, task_id, seen=partial(require_seen, session, actor))


def allows(op: Op, rels: frozenset[Rel]) -> bool:
    """Tell whether any of the relations allows the operation and none rules it out (EXCLUDED)."""
    return bool(TABLE[op] & rels) and not EXCLUDED.get(op, frozenset()) & rels


def permitted(session: Session, actor: Actor, task: HumanTask) -> frozenset[Op]:
    """Return the operations the table allows the actor on the task (what the UI offers)."""
    rels = relations(session, actor, task)
    return frozenset(op for op in Op if allows(op, rels))


MESSAGES: dict[Op, str] = {
    Op.CLAIM: "您不是此任务的候选人 (not a candidate for this task)",
    Op.UNCLAIM: "只能取消自己认领的任务 (not claimed by you)",
    Op.RESOLVE: "此任务没有委派给您 (not delegated to you)",
    Op.REMOVE_COSIGNER: "只有任务办理人可以减签 (only the task's holder may remove co-signers)",
    Op.URGE: "您不能催办此任务 (you may not urge this task)",
}


def require(session: Session, actor: Actor, task: HumanTask, op: Op) -> frozenset[Rel]:
    """Refuse unless the table allows the operation to one of the actor's relations; return them.

    Raises: NotYourTask (naming why), TaskNotFound (the actor may not see the task at all: as if it did not exist)
    """
    direct = frozenset(_direct(actor, task))
    if allows(op, direct):  # the usual case (a holder completing): decided without a query
        return direct
    rels = relations(session, actor, task)
    if allows(op, rels):
        return rels
    if not rels:
        require_seen(session, actor, task)
    if EXCLUDED.get(op, frozenset()) & rels:
        message = "此任务在您手中，无需催办 (you hold this task: there is nobody to urge)"
    elif Rel.DELEGATE in rels:
        message = "委派的任务只能处理后退回委派人 (a delegate may only give the task back to its owner)"
    elif Rel.OWNER in rels:
        message = "任务已委派，待被委派人退回后再办理 (delegated: wait until it comes back)"
    elif Rel.COSIGNER in rels:
        message = "加签人只能签署 (a co-signer may only sign)"
    else:
        message = MESSAGES.get(op, "只有任务办理人可以执行此操作 (only the task's holder may do this)")
    raise NotYourTask(message, task_id=task.id, operation=op.value)


__all__ = ["MESSAGES", "TABLE", "Op", "Rel", "allows", "is_leader", "open_task", "permitted", "relations", "require",
           "require_seen", "sees"]
