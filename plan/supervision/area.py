"""督办: the objects in a leader's area (`engine.org.area`): tasks, ledger issues, 招商线索 (leads), projects.

An object outside the area is still the business of its own responsible leader.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.deadlines import escalation
from engine.deadlines.escalation import Target
from engine.deadlines.models import ExtensionRequest
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.area import Area, area
from engine.tasks.models import HumanTask
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue

ISSUE_TASKS = ("handle", "feedback")  # the issue's tasks that carry its deadline


def is_supervisor(session: Session, actor: Actor) -> bool:
    """Tell whether the actor has a 督办 area at all."""
    found = area(session, actor)
    return found.everything or bool(found.unit_ids)


def target_of(session: Session, object_type: str, object_id: int) -> Target:
    if object_type not in escalation.object_types():
        raise InvalidInput(f"未知的督办对象 (unknown object type): {object_type}", field="object_type")
    target = escalation.load_targets(session, [(object_type, object_id)]).get((object_type, object_id))
    if target is None:
        raise NotFound(f"督办对象不存在 (not found): {object_type} {object_id}", object_type=object_type,
                       object_id=object_id)
    return target


def _outside(object_type: str, object_id: int) -> Forbidden:
    return Forbidden("不在您的督办范围内 (not in your area)", object_type=object_type, object_id=object_id)


def require_supervisor(session: Session, actor: Actor, target: Target) -> None:
    """Refuse unless the object is in the actor's area (or they are its responsible leader).

    Raises: Forbidden
    """
    if area(session, actor).covers(target.unit_id) or (actor.user_id and actor.user_id == target.responsible_leader_id):
        return
    raise _outside(target.object_type, target.object_id)


def open_target(session: Session, actor: Actor, object_type: str, object_id: int) -> Target:
    """Return an open object of the actor's area (or one they are the 包挂 leader of).

    Someone with no area at all is refused whatever the id, as for an object outside it: a 404 for a missing id
    would tell them which ids exist. Raises: Forbidden, NotFound (a supervisor's missing id), Conflict, InvalidInput
    """
    try:
        target = target_of(session, object_type, object_id)
    except NotFound:
        if is_supervisor(session, actor):
            raise
        raise _outside(object_type, object_id) from None
    require_supervisor(session, actor, target)
    if not target.open:
        raise Conflict("该事项已办结 (already closed)", object_type=object_type, object_id=object_id)
    return target


def issue_tasks(session: Session, issue: LedgerIssue | InvestmentLead, bpmn_ids: tuple[str, ...]) -> list[HumanTask]:
    """The open tasks of an issue's (or a lead's) process among these steps."""
    if issue.instance_id is None:
        return []
    return list(session.scalars(select(HumanTask).where(HumanTask.instance_id == issue.instance_id,
                                                        HumanTask.state == "ready", HumanTask.bpmn_id.in_(bpmn_ids))))


def pending_extension(session: Session, object_type: str, object_id: int) -> ExtensionRequest | HumanTask | None:
    """Return the pending 申请延期 of a task (a request) or of an issue (its decide_extension task)."""
    if object_type == "task":
        return session.scalar(select(ExtensionRequest).where(ExtensionRequest.object_type == "task",
                                                             ExtensionRequest.object_id == object_id,
                                                             ExtensionRequest.status == "pending"))
    if object_type == "issue":
        issue = session.get(LedgerIssue, object_id)
        found = issue_tasks(session, issue, ("decide_extension",)) if issue else []
        return found[0] if found else None
    return None


def latest_extension(session: Session, task_id: int) -> ExtensionRequest | None:
    """Return a task's latest 申请延期 (pending, or the last decided, with its decision), for the task page."""
    return session.scalar(select(ExtensionRequest).where(ExtensionRequest.object_type == "task",
                                                         ExtensionRequest.object_id == task_id)
                          .order_by(ExtensionRequest.id.desc()).limit(1))


def requester_of(session: Session, pending: ExtensionRequest | HumanTask) -> int | None:
    """Return who asked for a pending 申请延期: a task's requester, or whoever submitted the issue's 办理 asking."""
    if isinstance(pending, ExtensionRequest):
        return pending.requested_by_id
    return session.scalar(select(HumanTask.completed_by_id).where(
        HumanTask.instance_id == pending.instance_id, HumanTask.bpmn_id == "handle", HumanTask.state == "completed")
        .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc()).limit(1))


__all__ = ["ISSUE_TASKS", "Area", "area", "is_supervisor", "issue_tasks", "latest_extension", "open_target",
           "pending_extension", "requester_of", "require_supervisor", "target_of"]
