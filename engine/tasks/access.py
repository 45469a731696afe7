"""Who may see what: the one place the web and the API ask before showing an instance or task."""
from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from engine.archive import core as archive
from engine.errors import InstanceNotFound
from engine.org.actors import Actor
from engine.runtime.models import ProcessInstance
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.models import HumanTask, TaskCandidate

READ_ALL_ROLES = ("auditor", "process_owner", "city_leader")
EXTERNAL_ROLES = ("applicant",)  # people outside government, who see only an instance's public history


def reads_everything(session: Session, actor: Actor) -> bool:
    """Admins, auditors (审计督查), process owners and city leaders see every instance."""
    if actor.is_admin or actor.is_system:
        return True
    return bool(actor.role_codes & set(READ_ALL_ROLES))


def is_external(session: Session, actor: Actor) -> bool:
    """Tell whether the actor is an applicant from outside (an external role and no unit of the government)."""
    if actor.is_admin or actor.is_system or actor.org_unit_ids:
        return False
    return bool(actor.role_codes) and actor.role_codes <= set(EXTERNAL_ROLES)


def can_view_instance(session: Session, actor: Actor, instance_id: int) -> bool:
    """Tell whether the actor started, handles, handled, may claim or was CC'd on the instance."""
    if reads_everything(session, actor):
        return True
    started = session.scalar(select(ProcessInstance.id).where(ProcessInstance.id == instance_id,
                                                              ProcessInstance.started_by_id == actor.user_id))
    if started is not None:
        return True
    involved = select(HumanTask.id).where(HumanTask.instance_id == instance_id, or_(
        HumanTask.assignee_id == actor.user_id, HumanTask.completed_by_id == actor.user_id,
        HumanTask.owner_id == actor.user_id,
        exists().where(TaskCandidate.task_id == HumanTask.id).where(or_(
            TaskCandidate.user_id == actor.user_id,
            TaskCandidate.org_unit_id.in_(list(actor.org_unit_ids) or [-1]),
            TaskCandidate.role_id.in_(list(actor.role_ids) or [-1])))))
    if session.scalar(involved.limit(1)) is not None:
        return True
    if session.scalar(select(archive.involved(instance_id, actor))):  # an archived instance's steps
        return True
    cc = select(CarbonCopy.id).where(CarbonCopy.instance_id == instance_id, CarbonCopy.user_id == actor.user_id)
    return session.scalar(cc.limit(1)) is not None


def not_found(instance_id: int) -> InstanceNotFound:
    """Return the error for an instance that does not exist — and, the same to the byte, for one the actor may not
    see: ids are sequential, and a 403 would tell which exist (docs/security.md)."""
    return InstanceNotFound(f"流程实例不存在 (no such instance): {instance_id}", instance_id=instance_id)


def require_view(session: Session, actor: Actor, instance_id: int) -> None:
    """Refuse unless the actor may see the instance, as if it did not exist.

    Raises: InstanceNotFound
    """
    if not can_view_instance(session, actor, instance_id):
        raise not_found(instance_id)
