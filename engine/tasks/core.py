"""Human tasks: the inbox query, claim/unclaim and completion."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, joinedload

from engine import deploy, runtime
from engine.errors import (
    AlreadyClaimed,
    ConcurrentModification,
    Conflict,
    InstanceNotRunning,
    NotYourTask,
    TaskNotFound,
)
from engine.org.actors import Actor
from engine.runtime import forms
from engine.tasks import task_access
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, TaskCandidate


class TaskBlocked(Conflict):
    """The task waits for co-signers (加签) before its holder can act."""

    code = "task_blocked"


class TaskAlreadyDone(ConcurrentModification):
    """Someone else completed (or the engine cancelled) the task first."""

    code = "task_already_done"


def get_open(session: Session, task_id: int) -> HumanTask:
    """Return a task that is still open.

    Raises: TaskNotFound, TaskAlreadyDone
    """
    task = session.scalar(select(HumanTask).where(HumanTask.id == task_id)
                          .options(joinedload(HumanTask.candidates))  # one round trip for the holder check
                          .execution_options(populate_existing=True))
    if task is None:
        raise TaskNotFound(f"任务不存在: {task_id}", task_id=task_id)
    if task.state in ("completed", "cancelled"):
        error = TaskAlreadyDone(task.instance_id)
        error.details["task_id"] = task_id
        raise error
    return task


def is_candidate(task: HumanTask, actor: Actor) -> bool:
    """Tell whether the actor may claim the task."""
    for c in task.candidates:
        if (c.user_id is not None and c.user_id == actor.user_id) or \
                (c.org_unit_id is not None and c.org_unit_id in actor.org_unit_ids) or \
                (c.role_id is not None and c.role_id in actor.role_ids):
            return True
    return False


def require_holder(task: HumanTask, actor: Actor) -> None:
    """Refuse unless the actor holds the task, or it is unclaimed and they are a candidate.

    Raises: NotYourTask
    """
    if task.assignee_id is not None:
        if task.assignee_id != actor.user_id:
            raise NotYourTask("此任务已由他人认领 (claimed by someone else)", task_id=task.id)
        return
    if not is_candidate(task, actor):
        raise NotYourTask("您不是此任务的候选人 (not a candidate for this task)", task_id=task.id)


def _record(session: Session, task: HumanTask, actor: Actor, action: str, before: Any = None, after: Any = None) -> None:
    from engine import audit
    audit.record(session, actor, action, stream=f"instance:{task.instance_id}", object_type="human_task",
                 object_id=task.id, before=before, after=after)


def claim(session: Session, *, task_id: int, actor: Actor) -> HumanTask:
    """Claim an open task the actor is a candidate for (认领).

    Raises: TaskNotFound, TaskAlreadyDone, AlreadyClaimed, NotYourTask
    """
    task = get_open(session, task_id)
    rels = task_access.relations(session, actor, task)
    if not task_access.allows(task_access.Op.CLAIM, rels):
        if task.assignee_id is not None and is_candidate(task, actor) and rels <= {task_access.Rel.VIEWER}:
            raise AlreadyClaimed("此任务已由他人认领 (already claimed)", task_id=task_id)
        task_access.require(session, actor, task, task_access.Op.CLAIM)  # who may not claim it learns nothing more
    if task.assignee_id == actor.user_id:
        return task
    if task.assignee_id is not None:
        raise AlreadyClaimed("此任务已由他人认领 (already claimed)", task_id=task_id)
    # Compare-and-set, so two claimers racing cannot both win.
    from sqlalchemy import update
    result = session.execute(update(HumanTask).where(HumanTask.id == task_id, HumanTask.assignee_id.is_(None),
                                                     HumanTask.state == "ready")
                             .values(assignee_id=actor.user_id).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise AlreadyClaimed("此任务刚被他人认领 (just claimed by someone else)", task_id=task_id)
    session.refresh(task)
    _record(session, task, actor, "task.claim", after={"assignee": actor.username, "bpmn_id": task.bpmn_id})
    return task


def unclaim(session: Session, *, task_id: int, actor: Actor) -> HumanTask:
    """Give a claimed task back to its candidates (取消认领).

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask
    """
    task = get_open(session, task_id)
    task_access.require(session, actor, task, task_access.Op.UNCLAIM)
    before = task.assignee_id
    task.assignee_id = None
    if task.delegation_state == "pending":  # an admin releasing a delegated task ends the delegation
        task.delegation_state = None
    session.flush()
    _record(session, task, actor, "task.unclaim", before={"assignee_id": before})
    return task


@dataclass(frozen=True)
class Completion:
    instance_id: int
    status: str
    incident: str | None
    next_tasks: list[int]


def complete(session: Session, *, task_id: int, actor: Actor, data: Mapping[str, Any],
             opinion: str | None = None) -> Completion:
    """Complete a READY task the actor holds and run the engine until it waits again (flushes).

    With co-signers added after the holder (后加签) the submission is held until they have signed.

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask, FormInvalid, InstanceNotRunning, ConcurrentModification
    """
    task = get_open(session, task_id)
    task_access.require(session, actor, task, task_access.Op.COMPLETE)
    require_holder(task, actor)
    if task.kind == "cosign":
        from engine.tasks import operations
        return operations.sign(session, task=task, actor=actor, opinion=opinion or str(data.get("opinion", "")))
    if task.blocked:
        raise TaskBlocked("等待加签人处理 (waiting for co-signers)", task_id=task.id)
    running = runtime.load(session, task.instance_id)
    if running.row.status != "running":
        session.refresh(task)
        if task.state in ("completed", "cancelled"):  # someone else finished it between our two reads
            raise TaskAlreadyDone(task.instance_id)
        raise InstanceNotRunning("流程实例未在运行 (instance is not running)", instance_id=task.instance_id)
    info = runtime.version_info(session, running.row.version_id)
    schema = info.files.get(task.form_schema) if task.form_schema else None
    if task.form_schema and schema is None:  # forms of versions deployed before forms were cached
        schema = deploy.file_text(session, running.row.version_id, task.form_schema)
    cleaned = forms.validate(schema, data, info.files)
    if opinion:
        session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind="opinion",
                            body=opinion[:4000]))
    from engine.tasks import operations
    if operations.hold_for_cosigners(session, task, actor, cleaned):
        return Completion(instance_id=task.instance_id, status=running.row.status, incident=None, next_tasks=[])
    return finish(session, task=task, running=running, actor=actor, data=cleaned)


def finish(session: Session, *, task: HumanTask, running: runtime.Running, actor: Actor,
           data: dict[str, Any]) -> Completion:
    """Complete the task's SpiffWorkflow task with validated data, run the engine and save (flushes)."""
    row = running.row
    with session.no_autoflush:  # one flush at the end, not one per query
        try:
            runtime.complete_user_task(running, task.task_guid, data, actor)
        except Exception as exc:  # a postScript failed: the task is done, the instance stops
            if not runtime.is_engine_error(exc):
                raise
            runtime.release(exc)
            runtime.open_incident(session, running, exc, actor)
        if running.row.status == "running":
            runtime.run(session, running, actor)
        if task.assignee_id is None:
            task.assignee_id = actor.user_id  # completing a group task claims it implicitly
        task.completed_by_id = actor.user_id
        runtime.save(session, running)
    runtime.record(session, running, actor, "task.complete",
                   after={"task_id": task.id, "bpmn_id": task.bpmn_id, "data": data,
                          **runtime.waiting_summary(running)})
    return Completion(instance_id=row.id, status=running.row.status,
                      incident=running.incident.message if running.incident else None,
                      next_tasks=[t.id for t in running.created_tasks if t.state == "ready"])


def inbox_query(actor: Actor, *, include_claimable: bool = True) -> Any:
    """Build the 待办 query: tasks assigned to the actor, plus unclaimed ones they may claim."""
    mine = HumanTask.assignee_id == actor.user_id
    conditions = [mine]
    if include_claimable:
        candidate = exists().where(TaskCandidate.task_id == HumanTask.id).where(or_(
            TaskCandidate.user_id == actor.user_id,
            TaskCandidate.org_unit_id.in_(list(actor.org_unit_ids) or [-1]),
            TaskCandidate.role_id.in_(list(actor.role_ids) or [-1])))
        conditions.append(HumanTask.assignee_id.is_(None) & candidate)
    return (select(HumanTask).where(HumanTask.state == "ready", or_(*conditions))
            .order_by(HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id))


def open_tasks(session: Session, actor: Actor, *, limit: int = 50, offset: int = 0) -> Sequence[HumanTask]:
    """Return the actor's open tasks, due first."""
    return session.scalars(inbox_query(actor).limit(limit).offset(offset)).all()


__all__ = [
    "Completion",
    "TaskAlreadyDone",
    "TaskBlocked",
    "claim",
    "complete",
    "finish",
    "get_open",
    "inbox_query",
    "is_candidate",
    "open_tasks",
    "require_holder",
    "unclaim",
]
