"""Finding an open task and telling who holds it: what every task operation checks first."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, exists, select, union_all, update
from sqlalchemy.orm import Session, aliased, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from engine.archive import core as archive
from engine.audit.core import saw_head
from engine.audit.models import AuditHead
from engine.errors import (
    AlreadyClaimed,
    ConcurrentModification,
    Conflict,
    EngineError,
    InstanceArchived,
    InstanceNotRunning,
    NotYourTask,
    TaskNotFound,
    TaskNotReady,
)
from engine.org.actors import Actor
from engine.runtime.models import INSTANCE_MOVED, INSTANCE_STREAM, ProcessInstance
from engine.tasks import first_read
from engine.tasks.models import OPEN_STATES, HumanTask, archived_tasks, is_open


class TaskBlocked(Conflict):
    """The task waits for co-signers (加签) before its holder can act."""

    code = "task_blocked"


class TaskAlreadyDone(ConcurrentModification):
    """Someone else completed (or the engine cancelled) the task first."""

    code = "task_already_done"

    @classmethod
    def of(cls, task: HumanTask) -> TaskAlreadyDone:
        """The error for a task found closed: a cancelled one says so (a timer, 终止, 退回 or 减签 took it away),
        not that someone acted on it."""
        error = cls(task.instance_id)
        if task.state == "cancelled":
            Conflict.__init__(error, f"此任务已取消，无需再办理 (task {task.id} was cancelled; there is nothing to do)",
                              instance_id=task.instance_id)
        error.details["task_id"] = task.id
        return error


class TaskChanged(ConcurrentModification):
    """Someone else changed who holds the task (认领, 取消认领, 转办, 委派, 改派), or gave it co-signers after its
    holder (加签), since it was read."""

    code = "task_changed"

    def __init__(self, task: HumanTask, message: str | None = None) -> None:
        Conflict.__init__(self, message or "此任务的办理人（assignee）刚被他人改动（认领、取消认领、转办、委派或改派），"
                                           "请刷新后重试 (the task's assignee changed since it was read; reload)",
                          instance_id=task.instance_id, task_id=task.id)


# Refuses a task the actor may not see (task_access.require_seen, bound to its session and actor): raises not_found.
Seen = Callable[[HumanTask], object]


def not_found(task_id: int) -> TaskNotFound:
    """Return the error for a task that does not exist — and, the same to the byte, for one the actor may not see."""
    return TaskNotFound(f"任务不存在 (no such task): {task_id}", task_id=task_id)


def missing(session: Session, task_id: int, seen: Seen | None = None) -> EngineError:
    """Return the error for a task id not in human_task: its instance was archived (read-only), or it never was.

    `seen`: the actor's check; an archived step they may not see is told as one that never was.
    """
    if session.scalar(select(archived_tasks.c.id).where(archived_tasks.c.id == task_id)) is not None:
        if seen is not None:
            step = archive.task(session, task_id)
            if step is not None:
                seen(step)
        return InstanceArchived(f"此任务所在的流程实例已归档，只能在实例页查看，不能再办理、撤回或退回 "
                                f"(task {task_id} belongs to an archived instance)", task_id=task_id)
    return not_found(task_id)


def get_open(session: Session, task_id: int, seen: Seen | None = None) -> HumanTask:
    """Return a task that is still open; `seen` refuses one the actor may not see before its state is told.

    Raises: TaskNotFound, TaskAlreadyDone
    """
    task = session.scalar(select(HumanTask).where(HumanTask.id == task_id)
                          .options(joinedload(HumanTask.candidates))  # one round trip for the holder check
                          .execution_options(populate_existing=True))
    if task is None:
        raise missing(session, task_id, seen)
    if seen is not None:
        seen(task)
    return require_open(task)


_cosign = aliased(HumanTask, name="cosign")
# Built once: an alias made per call gives every statement a new cache key (compiled again each time: +1 ms).
_COSIGNERS_WAITING = exists().where(_cosign.parent_task_id == HumanTask.id, _cosign.kind == "cosign",
                                    _cosign.state == "pending").label("cosigners_waiting")


_SAME_INSTANCE = select(HumanTask.instance_id).where(HumanTask.id == bindparam("task_id")).scalar_subquery()
# The task and its instance's open bpmn rows, as two index scans: the open rows come from uq_human_task_guid_open
# (is_open), never from the instance's finished rows, however many rounds it has run. A plain index scan also marks
# the entries of rows a completion left behind as dead, so the next completion skips them before VACUUM has run
# (an OR of the two made a bitmap scan, which visits each of them every time).
_TASK_AND_OPEN = union_all(select(bindparam("task_id", type_=Integer)),
                           select(HumanTask.id).where(HumanTask.instance_id == _SAME_INSTANCE, HumanTask.kind == "bpmn",
                                                      is_open(HumanTask.state)))
# Built once (a statement built per call costs its cache key every time): the task, its candidates, its instance's
# row, the co-signer check, the instance's audit head and its other open bpmn rows. The row comes with its state:
# unused when this process holds the instance hot, but with several web processes and no affinity another one
# often saved it last, and reading the state afterwards cost a completion 0.8 ms more (bench/README.md, sixth
# pass); bringing it along cost nothing measurable.
# The instance's row is share-locked (FOR KEY SHARE: the save's own UPDATE of it is not held up, nor another
# submission's) from this read to the commit, so a submission takes the instance before its task's row, as the timer
# sweep, 终止/挂起/恢复 and a message or signal delivery do (FOR UPDATE; a delivery in its one read, runtime.load's
# `lock`). In the other order each waited for the other until PostgreSQL ended one as a deadlock (after
# deadlock_timeout, a second). When one of those holds the instance, the read waits, and gets the row as they left it
# but the task rows and the head as its snapshot had them:
# `moved` tells (the row's lock_version against the snapshot's), and the read is made again, the lock held.
_TO_COMPLETE = (select(HumanTask, ProcessInstance, _COSIGNERS_WAITING, AuditHead.seq, AuditHead.hash, INSTANCE_MOVED)
                .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
                .outerjoin(AuditHead, AuditHead.stream == INSTANCE_STREAM)
                .where(HumanTask.id.in_(_TASK_AND_OPEN))
                .options(joinedload(HumanTask.candidates))
                .with_for_update(read=True, key_share=True, of=ProcessInstance)
                .execution_options(populate_existing=True))


@dataclass(frozen=True)
class ToComplete:
    """What completing a task reads first, in one statement."""

    task: HumanTask
    instance: ProcessInstance  # its row, state included
    cosigners_waiting: bool  # co-signers added after the holder wait for the submission
    open_rows: dict[str, HumanTask]  # the instance's open bpmn rows by guid (the task among them)


def get_open_to_complete(session: Session, task_id: int, seen: Seen | None = None) -> ToComplete:
    """Return an open task with its instance's row, the co-signer check and the instance's open bpmn rows; `seen`
    refuses one the actor may not see before its state is told.

    Raises: TaskNotFound, TaskAlreadyDone
    """
    rows: Sequence[Any] | None = None
    if not first_read.holds_task(session, task_id):  # through Core, the rows made persistent as the ORM would
        rows = first_read.read(session, task_id)
    if rows is None or any(r[5] for r in rows):  # the session held some of them (the ORM refreshes them), or it
        # waited for a save of the instance: its other rows as they are now
        rows = session.execute(_TO_COMPLETE, {"task_id": task_id}).unique().all()
    target = next((r for r in rows if r[0].id == task_id), None)
    if target is None:
        raise missing(session, task_id, seen)
    if seen is not None:
        seen(target[0])
    open_rows = {r[0].task_guid: r[0] for r in rows if r[0].kind == "bpmn" and r[0].state in OPEN_STATES}
    saw_head(session, f"instance:{target[1].id}", target[3], target[4])  # the commit's append starts there
    return ToComplete(require_open(target[0]), target[1], bool(target[2]), open_rows)


def require_open(task: HumanTask) -> HumanTask:
    """Return the task if it is still open.

    Raises: TaskAlreadyDone
    """
    if task.state in ("completed", "cancelled"):
        raise TaskAlreadyDone.of(task)
    return task


def require_started(task: HumanTask) -> HumanTask:
    """Return the task unless it is a co-signer's that waits for the holder's submission (后加签, state pending).

    Such a task is open (减签 may still remove it) but there is nothing to sign, nor to urge anyone about, yet.

    Raises: TaskNotReady
    """
    if task.state == "pending":
        raise TaskNotReady("加签任务尚未开始：等待经办人提交 (this co-sign task waits for the holder's submission)",
                           task_id=task.id)
    return task


SUSPENDED = ("流程实例已挂起，恢复后才能办理 (the instance is suspended: nothing can be done on its tasks until an "
             "administrator resumes it)")
NOT_RUNNING = "流程实例未在运行 (instance is not running)"


def set_aside(task: HumanTask, status: str | None) -> str | None:
    """Why nothing can be done on this open task now (the words `require_active` refuses with), or None: its
    instance is not running (挂起 by an administrator, or an incident). The task page says it instead of offering
    the actions the services would refuse."""
    if task.state not in (*OPEN_STATES, "pending") or status == "running":
        return None
    return SUSPENDED if status == "suspended" else NOT_RUNNING


def require_active(session: Session, task: HumanTask) -> HumanTask:
    """Return the task unless its instance has set it aside (state suspended: 挂起 by an administrator, or an
    incident): a co-signer then neither signs nor is urged, and the holder neither adds nor removes co-signers.

    Raises: InstanceNotRunning
    """
    if task.state != "suspended":
        return task
    raise _set_aside(session, task)


def _set_aside(session: Session, task: HumanTask) -> InstanceNotRunning:
    status = session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == task.instance_id))
    return InstanceNotRunning(SUSPENDED if status == "suspended" else NOT_RUNNING, instance_id=task.instance_id,
                              task_id=task.id, status=status)


def is_candidate(task: HumanTask, actor: Actor) -> bool:
    """Tell whether the actor may claim the task."""
    for c in task.candidates:
        if (c.user_id is not None and c.user_id == actor.user_id) or \
                (c.org_unit_id is not None and c.org_unit_id in actor.org_unit_ids) or \
                (c.role_id is not None and c.role_id in actor.role_ids):
            return True
    return False


def take(session: Session, task: HumanTask, actor: Actor) -> bool:
    """Claim an unclaimed task for the actor by compare-and-set; True if this call claimed it (False: it was theirs).

    Every claim goes through here, 认领 and the implicit one of acting on a group task (转办, 委派, 加签, 退回,
    提交): the row as read may be stale, and writing the assignee from it overwrote a claim committed since.
    (On PostgreSQL a submission's claim is taken in the save's statement instead: projection.write_postgres.)

    Raises: AlreadyClaimed, TaskAlreadyDone
    """
    claimed = session.execute(update(HumanTask).where(HumanTask.id == task.id, HumanTask.assignee_id.is_(None),
                                                      HumanTask.state == "ready")
                              .values(assignee_id=actor.user_id).execution_options(synchronize_session=False))
    mine = bool(claimed.rowcount == 1)  # type: ignore[attr-defined]
    if not mine:
        lost = claim_lost(session, task, actor)
        if lost is not None:
            raise lost
    set_committed_value(task, "assignee_id", actor.user_id)  # what the row now holds: nothing left to write
    return mine


# What an operation on a task decides from when it hands the task to someone (its holder, owner and delegation):
# the write is a compare-and-set on them, so a change committed since the read is never written over.
HELD_COLUMNS = ("state", "assignee_id", "owner_id", "delegation_state")


def reassign(session: Session, task: HumanTask, **values: int | str | None) -> None:
    """Write who holds the task (`values`: of HELD_COLUMNS) unless the row changed since it was read.

    A compare-and-set on the columns as read, in the statement that writes them (no round trip more): 取消认领,
    转办, 委派 and 改派 decided from the row as read, and a plain write put their decision over a completion, a claim
    or another 改派 committed since. On SQLite BEGIN IMMEDIATE already orders them; the statement is the same.

    Raises: TaskAlreadyDone, TaskChanged
    """
    read = {k: getattr(task, k) for k in HELD_COLUMNS}
    same = [HumanTask.id == task.id, *(getattr(HumanTask, k).is_(None) if v is None else getattr(HumanTask, k) == v
                                       for k, v in read.items())]
    written = session.execute(update(HumanTask).where(*same).values(**values)
                              .execution_options(synchronize_session=False))
    if written.rowcount != 1:  # type: ignore[attr-defined]
        now = session.execute(select(HumanTask.state).where(HumanTask.id == task.id)).scalar()
        if now in ("completed", "cancelled"):
            done = TaskAlreadyDone(task.instance_id)
            done.details["task_id"] = task.id
            raise done
        raise TaskChanged(task)
    for key, value in values.items():
        set_committed_value(task, key, value)  # what the row now holds: nothing left for a flush to write


def require_as_read(task: HumanTask, now: Any) -> None:
    """Refuse unless the task's row as it is now (`now`: its HELD_COLUMNS, locked) holds what `task` was read with.

    Raises: TaskAlreadyDone, TaskChanged
    """
    if now.state in ("completed", "cancelled"):
        done = TaskAlreadyDone(task.instance_id)
        done.details["task_id"] = task.id
        raise done
    if any(getattr(now, k) != getattr(task, k) for k in HELD_COLUMNS):
        raise TaskChanged(task)


def claim_lost(session: Session, task: HumanTask, actor: Actor, *, held: bool = False) -> EngineError | None:
    """After a claim's compare-and-set found the task taken, or a submission's save found it no longer the actor's
    (`held`: they held it when it was read): the error to give (finished meanwhile, set aside by its instance,
    claimed by someone else, or released or handed on), None when the actor holds it (claimed in another tab
    meanwhile)."""
    now = session.execute(select(HumanTask.state, HumanTask.assignee_id).where(HumanTask.id == task.id)).one()
    if now.state in ("completed", "cancelled"):
        return TaskAlreadyDone(task.instance_id)
    if now.state == "suspended":  # set aside meanwhile (an incident of a colleague's step, 挂起): nobody claimed it
        return _set_aside(session, task)
    if now.assignee_id is None or now.assignee_id != actor.user_id:
        if held:
            return TaskChanged(task)
        return AlreadyClaimed("此任务刚被他人认领 (just claimed by someone else)", task_id=task.id)
    return None


def submission_refused(session: Session, task: HumanTask, actor: Actor, *, held: bool) -> EngineError | None:
    """After a submission's save found its task not as it needs it (projection's claim): the error to give
    (finished, claimed by someone else, released or handed on, or given co-signers meanwhile), None when it is
    (the save lost on something else)."""
    lost = claim_lost(session, task, actor, held=held)
    if lost is not None:
        return lost
    blocked, waiting = session.execute(select(HumanTask.blocked, exists().where(
        _cosign.parent_task_id == task.id, _cosign.kind == "cosign", _cosign.state == "pending"))
        .where(HumanTask.id == task.id)).one()
    if blocked:
        return TaskBlocked("等待加签人处理 (waiting for co-signers)", task_id=task.id)
    if waiting:
        return TaskChanged(task, "此任务刚被加签，请刷新后重新提交 (co-signers were added since the task was read; "
                                 "reload and submit again)")
    return None


def check_submission(session: Session, task: HumanTask, actor: Actor, *, free: bool) -> None:
    """Make a submission's check of its task by statements of its own, for a save that does not make it in its
    statement (projection.claim_now): claim it by compare-and-set (`free`: unclaimed when read), else lock its row;
    then refuse unless the actor holds it and no co-signer waits.

    Raises: AlreadyClaimed, TaskAlreadyDone, TaskBlocked, TaskChanged
    """
    if free:
        take(session, task, actor)
    else:
        session.execute(select(HumanTask.id).where(HumanTask.id == task.id).with_for_update())
    refused = submission_refused(session, task, actor, held=True)
    if refused is not None:
        raise refused


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


__all__ = ["HELD_COLUMNS", "NOT_RUNNING", "SUSPENDED", "Seen", "TaskAlreadyDone", "TaskBlocked", "TaskChanged",
           "check_submission", "claim_lost", "get_open", "is_candidate", "missing", "not_found", "reassign",
           "require_active", "require_as_read", "require_holder", "require_open", "require_started", "set_aside",
           "submission_refused", "take"]


def get(session: Session, task_id: int) -> HumanTask | None:
    """Return a task by id, or None (no access check: the caller has made one)."""
    return session.get(HumanTask, task_id)


def names(session: Session, ids: list[int]) -> dict[int, str]:
    """Return task names by id, in one query."""
    return {task_id: name for task_id, name in session.execute(
        select(HumanTask.id, HumanTask.name).where(HumanTask.id.in_(ids))).all()}


def cosign_of(session: Session, task_id: int, cosign_id: int) -> HumanTask:
    """Return the 加签 task `cosign_id` added to task `task_id`.

    Raises: TaskNotFound
    """
    cosign = session.get(HumanTask, cosign_id)
    if cosign is None or cosign.parent_task_id != task_id:  # the route checked that the actor sees task_id
        raise TaskNotFound(f"加签任务不存在 (no such co-sign task): {cosign_id}", task_id=cosign_id)
    return cosign
