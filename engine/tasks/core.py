"""Human tasks: claim, unclaim and complete (the package's public API), and the 待办 query."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from engine import audit, deploy, runtime
from engine.db import is_postgres
from engine.errors import (
    AlreadyClaimed,
    Conflict,
    InstanceNotRunning,
)
from engine.org.actors import Actor
from engine.runtime import forms, projection
from engine.spiff import form_options
from engine.tasks import duties, fixed, operations, task_access
from engine.tasks.collab_models import Comment
from engine.tasks.completion import Completion, finish
from engine.tasks.lookup import (
    TaskAlreadyDone,
    TaskBlocked,
    ToComplete,
    get_open,
    get_open_to_complete,
    is_candidate,
    reassign,
    require_holder,
    require_open,
    take,
)
from engine.tasks.models import HumanTask, TaskCandidate


def _audit(session: Session, task: HumanTask, actor: Actor, action: str, before: Any = None, after: Any = None) -> None:
    audit.record(session, actor, action, stream=f"instance:{task.instance_id}", object_type="human_task",
                 object_id=task.id, before=before, after=after)


def claim(session: Session, *, task_id: int, actor: Actor) -> HumanTask:
    """Claim an open task the actor is a candidate for (认领).

    Raises: TaskNotFound (also for a task the actor may not see), TaskAlreadyDone, AlreadyClaimed, NotYourTask
    """
    task = task_access.open_task(session, actor, task_id)
    duties.require_not_barred(session, task, actor.user_id)  # 职责分离: the rule named, not "not a candidate"
    rels = task_access.relations(session, actor, task)
    if not task_access.allows(task_access.Op.CLAIM, rels):
        if task.assignee_id is not None and is_candidate(task, actor) and rels <= {task_access.Rel.VIEWER}:
            raise AlreadyClaimed("此任务已由他人认领 (already claimed)", task_id=task_id)
        task_access.require(session, actor, task, task_access.Op.CLAIM)  # who may not claim it learns nothing more
    if task.assignee_id == actor.user_id:
        return task
    if task.assignee_id is not None:
        raise AlreadyClaimed("此任务已由他人认领 (already claimed)", task_id=task_id)
    if not take(session, task, actor):  # compare-and-set, so two claimers racing cannot both win
        return task
    _audit(session, task, actor, "task.claim", after={"assignee": actor.username, "bpmn_id": task.bpmn_id})
    return task


def unclaim(session: Session, *, task_id: int, actor: Actor) -> HumanTask:
    """Give a claimed task back to its candidates (取消认领).

    Raises: TaskNotFound (also for a task the actor may not see), TaskAlreadyDone, TaskChanged, NotYourTask,
    Conflict (a co-sign task)
    """
    task = task_access.open_task(session, actor, task_id)
    task_access.require(session, actor, task, task_access.Op.UNCLAIM)
    if task.kind == "cosign":  # it has no candidates to go back to: nobody could sign it, the submission would wait
        raise Conflict("加签任务不能取消认领，请由经办人减签 (a co-sign task cannot be unclaimed: its holder removes "
                       "the co-signer)", task_id=task_id)
    before = task.assignee_id
    # an admin releasing a delegated task ends the delegation; not over a change committed since the read
    reassign(session, task, assignee_id=None,
             delegation_state=None if task.delegation_state == "pending" else task.delegation_state)
    _audit(session, task, actor, "task.unclaim", before={"assignee_id": before})
    return task


def read_to_complete(session: Session, task_id: int, actor: Actor) -> ToComplete:
    """Read what completing the task reads first (one statement: the task, its candidates, its instance's row and
    open rows), for a caller that looks at the task before it completes it (the form's page: its form files).

    Raises: TaskNotFound (also for a task the actor may not see), TaskAlreadyDone
    """
    return get_open_to_complete(session, task_id, seen=partial(task_access.require_seen, session, actor))


def complete(session: Session, *, task_id: int, actor: Actor, data: Mapping[str, Any],
             opinion: str | None = None, task: HumanTask | None = None, read: ToComplete | None = None) -> Completion:
    """Complete a READY task the actor holds and run the engine until it waits again (flushes).

    With co-signers added after the holder (后加签) the submission is held until they have signed.
    `task`: the row as the caller already read it in this transaction (it is not read again); `read`: what
    `read_to_complete` gave the caller in this transaction (nothing is read again).

    Raises: TaskNotFound (also for a task the actor may not see), TaskAlreadyDone, NotYourTask, TaskNotReady (a
    co-signer after the holder, before the submission), FormInvalid (also a field the application fixed on the step,
    submitted with another value: engine/tasks/fixed.py), InstanceNotRunning, ConcurrentModification
    (AlreadyClaimed, TaskChanged: someone claimed, released or handed on the task since it was read)
    """
    if read is not None and read.task.id == task_id:  # seen and open when read, in this transaction
        task = read.task
    elif task is not None and task.id == task_id:
        read = None  # a row the caller read: the rest is read below
        task = require_open(task_access.require_seen(session, actor, task))
    else:  # one the actor may not see is told as missing before its state is
        read = read_to_complete(session, task_id, actor)
        task = read.task
    duties.require_not_barred(session, task, actor.user_id)
    task_access.require(session, actor, task, task_access.Op.COMPLETE)
    require_holder(task, actor)
    if task.kind == "cosign":
        return operations.sign(session, task=task, actor=actor, opinion=opinion or str(data.get("opinion", "")))
    if task.blocked:
        raise TaskBlocked("等待加签人处理 (waiting for co-signers)", task_id=task.id)
    running = runtime.load(session, task.instance_id, row=read.instance if read else None)
    if running.row.status != "running":
        session.refresh(task)
        if task.state in ("completed", "cancelled"):  # someone else finished it between our two reads
            raise TaskAlreadyDone(task.instance_id)
        raise InstanceNotRunning("流程实例未在运行 (instance is not running)", instance_id=task.instance_id)
    info = runtime.version_info(session, running.row.version_id)
    schema = info.files.get(task.form_schema) if task.form_schema else None
    if task.form_schema and schema is None:  # forms of versions deployed before forms were cached
        schema = deploy.file_text(session, running.row.version_id, task.form_schema)
    checked = False  # validate need not refuse the stored file again
    if schema and task.form_schema:  # a stored file deploy would refuse today is refused before it is read
        forms.refuse_stored(task.form_schema, schema)
        checked = True
    if schema and form_options.PREFIX in schema:  # choices from task data: the data the task holds now
        spiff_task = runtime.find_task(running.workflow, task.task_guid)
        schema = form_options.resolve(schema, dict(spiff_task.data) if spiff_task is not None else {})
        checked = False  # the text with its choices is another: validate checks it
    data, wrong = fixed.apply(session, task, schema, data)  # fields the application fixed on the step: theirs, or refused
    cleaned = fixed.validated(wrong, lambda: forms.validate(schema, data, info.files, name=task.form_schema,
                                                            stored_checked=checked))
    postgres = is_postgres(session)
    # A candidate submitting a group task claims it, not over a claim made since: SQLite, or a submission that may be
    # held for co-signers (then not saved), by compare-and-set now; else in the save's statement.
    if task.assignee_id is None and (not postgres or read is None or read.cosigners_waiting):
        take(session, task, actor)
    if postgres:  # the save checks the task's row as it is then (no round trip more): still the actor's, or theirs
        # to claim; a release, 改派 or 转办 committed since it was read refuses the submission (SQLite: BEGIN IMMEDIATE)
        session.info[projection.CLAIM] = projection.Claim(task, actor, free=task.assignee_id is None)
    try:
        if opinion:
            session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind="opinion",
                                body=opinion[:4000]))
        if (read is None or read.cosigners_waiting) and operations.hold_for_cosigners(session, task, actor, cleaned):
            return Completion(instance_id=task.instance_id, status=running.row.status, incident=None, next_tasks=[])
        if read is not None:
            running.open_rows = read.open_rows
        return finish(session, task=task, running=running, actor=actor, data=cleaned, fields=forms.field_names(schema))
    finally:
        session.info.pop(projection.CLAIM, None)  # not taken: the completion failed before its save


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
    "read_to_complete",
    "require_holder",
    "unclaim",
]
