"""退回 (send back) and 撤回 (withdraw): reopen an earlier step of an instance.

A re-opened step is a new human_task row: the rows of its earlier rounds stay in the history as they
were, and the new one gets a fresh deadline from its SLA — and with it a fresh escalation ladder, as
the deadline sweep watches rows. Resetting a step removes every open task after it, parallel branches
included: `preview` lists those before a 退回 is confirmed, `send_back` refuses to cancel them
unconfirmed, and their holders (or candidates) are told when it happens.
"""
from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import runtime
from engine.errors import Conflict, EngineError, InstanceNotRunning, InvalidInput, NotYourTask, TaskNotFound
from engine.notify.core import Note
from engine.org.actors import Actor, actor_of
from engine.org.models import User
from engine.runtime.models import ProcessInstance
from engine.spiff import guards
from engine.spiff.workflow import reset_to
from engine.tasks import lookup, operations, task_access
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from engine.tasks.models import OPEN_STATES, HumanTask


class ConfirmationRequired(Conflict):
    """The 退回 would cancel other open tasks (parallel branches): the sender has to confirm it."""

    code = "confirmation_required"


@dataclass(frozen=True)
class Preview:
    """Where a 退回 goes and which other open tasks it cancels."""

    target: HumanTask
    cancels: list[HumanTask]


def send_back_targets(session: Session, task: HumanTask) -> list[HumanTask]:
    """Return the completed steps on this task's path, earliest first (where 退回 may go)."""
    running = runtime.load(session, task.instance_id, read_only=True)
    current = runtime.find_task(running.workflow, task.task_guid)
    if current is None:
        return []
    ancestors: set[str] = set()
    node = current.parent
    while node is not None:
        ancestors.add(str(node.id))
        node = node.parent
    rows = session.scalars(select(HumanTask).where(HumanTask.instance_id == task.instance_id,
                                                   HumanTask.kind == "bpmn", HumanTask.state == "completed")
                           .order_by(HumanTask.completed_at, HumanTask.id))
    latest = {r.task_guid: r for r in rows if r.task_guid in ancestors}  # a step done twice: its last round
    return sorted(latest.values(), key=lambda r: (r.completed_at is None, r.completed_at, r.id))


def _pick(targets: list[HumanTask], to: str | int) -> HumanTask:
    if not targets:
        raise InvalidInput("没有可以退回的步骤 (there is no earlier step to send back to)", field="to")
    if to == "previous":
        return targets[-1]
    if to == "applicant":
        return targets[0]
    matches = [t for t in targets if str(t.id) == str(to)]
    if not matches:
        raise InvalidInput(f"不能退回到任务 {to} (not an earlier step of this task)", field="to")
    return matches[0]


def cancelled_by(session: Session, running: runtime.Running, target: HumanTask,
                 current: HumanTask | None) -> list[HumanTask]:
    """Return the open tasks that reopening `target` removes, other than `current` (the sender's own)."""
    spiff_task = runtime.find_task(running.workflow, target.task_guid)
    if spiff_task is None:
        return []
    below = {str(t.id) for t in spiff_task} - {target.task_guid}
    rows = session.scalars(select(HumanTask).where(HumanTask.instance_id == target.instance_id,
                                                   HumanTask.kind == "bpmn", HumanTask.state.in_(OPEN_STATES),
                                                   HumanTask.task_guid.in_(below or {""})).order_by(HumanTask.id))
    return [r for r in rows if current is None or r.id != current.id]


def _sendable(session: Session, task_id: int, actor: Actor) -> HumanTask:
    task = task_access.open_task(session, actor, task_id)
    task_access.require(session, actor, task, task_access.Op.SEND_BACK)
    if task.kind != "bpmn":
        raise InvalidInput("加签任务不能退回 (a co-signer task cannot be sent back)", field="task_id")
    return task


def preview(session: Session, *, task_id: int, actor: Actor, to: str | int = "previous") -> Preview:
    """Tell where a 退回 would go and which other open tasks (parallel branches) it would cancel; changes nothing.

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask, InvalidInput
    """
    task = _sendable(session, task_id, actor)
    target = _pick(send_back_targets(session, task), to)
    return Preview(target=target, cancels=cancelled_by(session, runtime.load(session, task.instance_id, read_only=True),
                                                       target, task))


def _cancelled(actor: Actor, rows: list[HumanTask], target: HumanTask, reason: str) -> list[Note]:
    notes = []
    for row in rows:
        people = [row.assignee_id] if row.assignee_id else [c.user_id for c in row.candidates if c.user_id]
        if not people and row.owner_id:
            people = [row.owner_id]
        notes += [operations.notice(user_id, "task_cancelled", "sent_back_cancelled",
                                    {"actor": actor.display_name, "target": target.name, "task": row.name,
                                     "note": reason}, link=f"/tasks/{row.id}", instance_id=row.instance_id)
                  for user_id in dict.fromkeys(p for p in people if p is not None and p != actor.user_id)]
    return notes


def _asked_cosigners(session: Session, running: runtime.Running) -> list[HumanTask]:
    """The co-signers (加签) the save cancelled with the tasks it closed who had been asked to sign (ready): they are
    told. Pending ones were never asked: nothing to tell them."""
    asked = [cosign_id for cosign_id, was in running.closed_cosigners if was == "ready"]
    return list(session.scalars(select(HumanTask).where(HumanTask.id.in_(asked or [-1])).order_by(HumanTask.id)))


def _reopen(session: Session, actor: Actor, target: HumanTask, action: str, reason: str,
            current: HumanTask | None, *, check: Callable[[runtime.Running], EngineError | None] | None = None
            ) -> HumanTask:
    # The instance first (FOR UPDATE on PostgreSQL, in the load's one read), then the task rows, as the timer sweep,
    # 终止 and a delivery take them and a submission (FOR KEY SHARE): in the other order a 退回 and the sweep firing an
    # interrupting timer each waited for the other until PostgreSQL ended one as a deadlock. Now one waits for the other
    # (the sweep passes the instance by, SKIP LOCKED, and fires at its next run). `check` (撤回's) looks again under it.
    running = runtime.load(session, target.instance_id, lock=True)
    refusal = check(running) if check is not None else None
    if refusal is not None:
        raise refusal
    if running.row.status != "running":
        raise InstanceNotRunning("流程实例未在运行 (instance is not running)", instance_id=target.instance_id)
    # A step of a finished subprocess compacted into history (a claim made before many others) goes back into the
    # live state first: 撤回 reopens it as it did before the subprocess left (engine.spiff.compaction).
    spiff_task = runtime.find_task(running.workflow, target.task_guid) \
        or runtime.reattach(session, running, target.task_guid)
    if spiff_task is None:
        raise Conflict("该步骤已不在流程中 (that step is no longer on the path)", task_id=target.id)
    if current is not None and current.assignee_id is None:
        lookup.take(session, current, actor)  # acting on a group task claims it (not over a claim made since)
    cancels = cancelled_by(session, running, target, current)
    # Then the rows it closes, in id order, before its save writes them. The sender's own task must still be held as
    # it was read: a release or 改派 committed since is not closed under its new holder, one the sweep (or anyone)
    # closed meanwhile is refused (409; the others: the save's optimistic lock).
    closing = [r.id for r in cancels] + ([current.id] if current is not None else [])
    now = session.execute(select(HumanTask.id, *(getattr(HumanTask, k) for k in lookup.HELD_COLUMNS))
                          .where(HumanTask.id.in_(closing or [-1])).order_by(HumanTask.id).with_for_update()).all()
    if current is not None:
        lookup.require_as_read(current, next(r for r in now if r.id == current.id))
    data = deepcopy(spiff_task.data)  # the form they submitted comes back filled in
    guards.run_deep_for(len(running.workflow.tasks), reset_to, running.workflow, spiff_task.id, data)
    runtime.run(session, running, actor)
    runtime.save(session, running)  # the projection adds a new row for the step: `target` stays in the history
    reopened = session.scalar(select(HumanTask).where(HumanTask.instance_id == target.instance_id,
                                                      HumanTask.task_guid == target.task_guid,
                                                      HumanTask.state.in_(OPEN_STATES)))
    if reopened is None:
        raise Conflict("该步骤未能重新打开 (the step did not reopen)", task_id=target.id)
    doer = session.get(User, target.completed_by_id) if target.completed_by_id is not None else None
    if doer is not None and doer.is_active:  # back to who did it; one deactivated since: to its candidates
        reopened.assignee_id = doer.id
    cosigners = _asked_cosigners(session, running)  # the save cancelled them with the rows it closed
    if current is not None:
        operations.add_note(session, current, actor, action.split(".")[-1], reason)
    session.flush()
    running.untold.clear()  # 退回 and 撤回 tell them in their own words (_cancelled)
    runtime.record(session, running, actor, action, after={
        "to_task_id": reopened.id, "to_bpmn_id": reopened.bpmn_id, "from_task_id": current.id if current else None,
        "reopened_from_task_id": target.id, "cancelled_task_ids": [r.id for r in cancels], "reason": reason,
        **runtime.waiting_summary(running)})
    notes = _cancelled(actor, cancels + cosigners, reopened, reason)
    if reopened.assignee_id is not None and reopened.assignee_id != actor.user_id:
        notes.insert(0, operations.notice(reopened.assignee_id, "task_sent_back", "sent_back",
                                          {"actor": actor.display_name, "task": reopened.name, "note": reason},
                                          link=f"/tasks/{reopened.id}", instance_id=reopened.instance_id))
    operations.tell(session, notes)
    return reopened


def send_back(session: Session, *, task_id: int, actor: Actor, to: str | int = "previous", reason: str,
              confirm: bool = False) -> HumanTask:
    """Send a task back to the applicant ("applicant"), the previous step ("previous") or an earlier task id (退回).

    A 退回 that would cancel other open tasks (parallel branches) needs `confirm`.

    Raises: TaskNotFound, TaskAlreadyDone, TaskChanged, NotYourTask, InvalidInput, ConfirmationRequired,
    InstanceNotRunning, ConcurrentModification
    """
    if not reason.strip():
        raise InvalidInput("请填写退回理由 (a reason is required)", field="reason")
    task = _sendable(session, task_id, actor)
    target = _pick(send_back_targets(session, task), to)
    if not confirm:
        cancels = cancelled_by(session, runtime.load(session, task.instance_id, read_only=True), target, task)
        if cancels:
            names = "、".join(r.name for r in cancels)
            raise ConfirmationRequired(f"退回将同时取消 {len(cancels)} 个并行任务：{names}，请确认 "
                                       f"(this also cancels {len(cancels)} open tasks: confirm)",
                                       task_id=task_id, cancels=[{"task_id": r.id, "name": r.name} for r in cancels])
    return _reopen(session, actor, target, "task.send_back", reason, task)


# A reminder (催办) or a note the engine writes is no one handling the step: they never stop a 撤回.
NOT_HANDLING = ("urge", "system")


def _handled_after(session: Session, actor: Actor, later: list[HumanTask]) -> bool:
    """Tell whether a handler of a later step (its holder, owner or a candidate) has commented on it, uploaded a
    file to it or copied it to someone (抄送): what the withdrawer, a 督办 leader or an onlooker did there does not count.
    """
    by_id = {t.id: t for t in later}
    ids = list(by_id) or [-1]
    traces = [*session.execute(select(Comment.task_id, Comment.author_id).where(
                  Comment.task_id.in_(ids), Comment.kind.not_in(NOT_HANDLING))),
              *session.execute(select(Attachment.task_id, Attachment.uploaded_by_id).where(Attachment.task_id.in_(ids))),
              *session.execute(select(CarbonCopy.task_id, CarbonCopy.from_user_id).where(CarbonCopy.task_id.in_(ids)))]
    authors = {a for _t, a in traces if a is not None and a != actor.user_id}
    users = {u.id: actor_of(session, u) for u in session.scalars(select(User).where(User.id.in_(authors or {-1})))}
    for task_id, author_id in traces:
        who = users.get(author_id) if author_id is not None else None
        task = by_id.get(task_id) if task_id is not None else None
        if who is not None and task is not None and (
                who.user_id in (task.assignee_id, task.owner_id) or lookup.is_candidate(task, who)):
            return True
    return False


def withdraw_refusal(session: Session, actor: Actor, task: HumanTask) -> EngineError | None:
    """Return why the actor may not withdraw a task now (None: they may); the one check the button and 撤回 share."""
    if task.kind != "bpmn":
        return TaskNotFound(f"任务不存在 (no such task): {task.id}", task_id=task.id)
    if task.state != "completed" or task.completed_by_id != actor.user_id:
        return NotYourTask("只能撤回自己提交的任务 (only what you submitted)", task_id=task.id)
    status = session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == task.instance_id))
    if status != "running":  # before the load: an archived instance's loads only to look at
        return Conflict("流程已结束或暂停，无法撤回 (the process is not running)", task_id=task.id)
    # a look (已办, the task page): the workflow stays kept for the unit of work that acts next
    return _moved_on(session, actor, task, runtime.load(session, task.instance_id, read_only=True))


def _moved_on(session: Session, actor: Actor, task: HumanTask, running: runtime.Running, *,
              lock: bool = False) -> EngineError | None:
    """Return why the instance as loaded (`running`) has moved on past the actor's task (None: it has not).

    `lock`: 撤回 asks again with the instance locked (FOR UPDATE) and takes the later steps' rows too, in id order,
    before it reads them (after the instance, as every writer here): its first look was made in plain reads, and a
    claim or a submission of the next step committed between that look and the lock was closed by the 撤回 or its
    decision thrown away. A claim of a later step made meanwhile waits for the 撤回's lock on its row, a submission for
    the instance's, and then finds the step gone.
    """
    if running.row.status != "running":
        return Conflict("流程已结束或暂停，无法撤回 (the process is not running)", task_id=task.id)
    if session.scalar(select(HumanTask.id).where(HumanTask.instance_id == task.instance_id,
                                                 HumanTask.task_guid == task.task_guid,
                                                 HumanTask.id > task.id).limit(1)) is not None:
        return Conflict("该步骤已重新办理，无法撤回 (that step has been reopened since)", task_id=task.id)
    spiff_task = runtime.find_task(running.workflow, task.task_guid) \
        or runtime.compacted_task(session, running, task.task_guid)  # a look: the live workflow is not changed
    if spiff_task is None:
        return Conflict("流程已继续，无法撤回 (the process has moved on)", task_id=task.id)
    after = {str(t.id) for t in spiff_task} - {task.task_guid}
    rows = (select(HumanTask).where(HumanTask.instance_id == task.instance_id, HumanTask.task_guid.in_(after or {""}))
            .order_by(HumanTask.id))
    if lock:  # as they are now, not as the first look read them
        rows = rows.with_for_update(of=HumanTask).execution_options(populate_existing=True)
    later = list(session.scalars(rows))
    acted = [t for t in later if t.state == "completed" or t.assignee_id is not None]
    if acted or _handled_after(session, actor, later):
        return Conflict("下一步已有人处理，无法撤回 (the next handler has already acted)", task_id=task.id)
    return None


def withdrawable(session: Session, actor: Actor, tasks: list[HumanTask]) -> set[int]:
    """Return the ids of the tasks the actor may withdraw now (for the 撤回 buttons of a list)."""
    return {t.id for t in tasks if withdraw_refusal(session, actor, t) is None}


def withdraw(session: Session, *, task_id: int, actor: Actor, reason: str = "") -> HumanTask:
    """Take back what I submitted while no one after me has acted yet (撤回).

    Raises: TaskNotFound, NotYourTask, Conflict, InstanceNotRunning, ConcurrentModification
    """
    seen = partial(task_access.require_seen, session, actor)  # one they may not see: as if it did not exist
    task = session.get(HumanTask, task_id)
    if task is None:
        raise lookup.missing(session, task_id, seen)
    seen(task)
    if task.kind != "bpmn":
        raise lookup.not_found(task_id)
    refusal = withdraw_refusal(session, actor, task)
    if refusal is not None:
        raise refusal
    # The look above takes no lock (a refusal costs none); _reopen makes it again once it holds the instance.
    return _reopen(session, actor, task, "task.withdraw", reason, None,
                   check=partial(_moved_on, session, actor, task, lock=True))


__all__ = ["ConfirmationRequired", "Preview", "cancelled_by", "preview", "send_back", "send_back_targets", "withdraw",
           "withdraw_refusal", "withdrawable"]
