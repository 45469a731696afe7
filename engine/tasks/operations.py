"""Inbox operations Chinese approval systems have: 转办, 委派, 加签/减签, 催办 (退回/撤回: sendback; 抄送, 附件: collab).

Each is an audited engine service in the caller's transaction; notifications go through the outbox.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import uuid4

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import audit, clock, runtime
from engine.deadlines import escalation, sla
from engine.errors import Conflict, InstanceNotRunning, InvalidInput, NotYourTask, RateLimited, TaskNotFound, UserNotFound
from engine.notify import core as notices
from engine.org.actors import Actor, actor_of
from engine.org.models import User
from engine.runtime import linked
from engine.runtime.models import ProcessInstance
from engine.tasks import completion, duties, lookup, people, task_access
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, TaskCandidate

URGE_INTERVAL = timedelta(hours=1)
NOTICE_BODY = 2000  # characters of a note a notice carries (the task's page keeps it whole)


def user_named(session: Session, username: str, *, field: str = "username", what: str = "用户") -> User:
    """Return the active account of that username, to hand work to, share-locked until the commit.

    The lock (FOR KEY SHARE: logins still update the row) makes a 停用 of the same person wait for this work, whose
    handover then sees what it gave them; a 停用 under way makes this wait, and then read them deactivated.

    Raises: UserNotFound naming `field`
    """
    name = username[:80]
    user = session.scalar(select(User).where(User.username == username).with_for_update(read=True, key_share=True)
                          .execution_options(populate_existing=True))
    if user is None:
        raise UserNotFound(f"{what}（{field}）：用户不存在或已停用: {name} ({what}: no such user)", field=field,
                           username=name)
    if not user.is_active:
        raise UserNotFound(f"{what}（{field}）：{user.display_name}（{user.username}）已停用，不能再接收任务，请另选他人 "
                           f"({what}: {user.username} is deactivated; choose someone else)", field=field,
                           username=user.username)
    return user


def _record(session: Session, task: HumanTask, actor: Actor, action: str, **after: Any) -> None:
    audit.record(session, actor, action, stream=f"instance:{task.instance_id}", object_type="human_task",
                 object_id=task.id, after={"bpmn_id": task.bpmn_id, **after})


def notice(user_id: int, kind: str, text: str, args: Mapping[str, Any], *, instance_id: int | None,
           link: str | None = None) -> notices.Note:
    """A notice about an instance's work, for `tell`, in the words of `text` (engine.notify.texts); a note typed with
    it (`args["note"]`) stripped, and the body cut: it goes to e-mail and webhooks too."""
    filled = {k: v.strip() if k == "note" and isinstance(v, str) else v for k, v in args.items()}
    return notices.worded(user_id, kind, text, filled, body_room=NOTICE_BODY, link=link, instance_id=instance_id)


def tell(session: Session, notes: Sequence[notices.Note]) -> None:
    """Queue notices on each person's channels (通知设置: in-app, e-mail, webhook; delivered by the outbox job after
    commit) within the hourly caps of their persons and instances (engine.notify.quota): past them they are dropped.
    All of a unit of work's at once, after its audit event: the counters are its last locks, taken in one order."""
    notices.send_many(session, notes)


def notify(session: Session, user_id: int, kind: str, text: str, args: Mapping[str, Any], *,
           instance_id: int | None, link: str | None = None) -> None:
    """Queue one notice as `tell` does."""
    tell(session, [notice(user_id, kind, text, args, instance_id=instance_id, link=link)])


def add_note(session: Session, task: HumanTask, actor: Actor, kind: str, body: str) -> None:
    """Keep a note of an operation on the task (its kind: transfer, delegate, opinion, send_back, …)."""
    if body.strip():
        session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind=kind,
                            body=body.strip()[:4000]))


def _held(session: Session, task_id: int, actor: Actor, op: task_access.Op) -> HumanTask:
    task = task_access.open_task(session, actor, task_id)
    task_access.require(session, actor, task, op)
    _lock_instance(session, task.instance_id)  # before the claim or the write takes the task's row
    if task.assignee_id is None and lookup.is_candidate(task, actor):
        lookup.take(session, task, actor)  # acting on a group task claims it (not over a claim made since)
    if task.assignee_id != actor.user_id:
        raise NotYourTask("只有任务办理人可以执行此操作 (only the task's holder may do this)", task_id=task_id)
    return task


# --- 转办 transfer and 委派 delegate -------------------------------------------------------------


def transfer(session: Session, *, task_id: int, actor: Actor, to_username: str, note: str = "") -> HumanTask:
    """Hand a task over to another user for good (转办).

    Raises: TaskNotFound, TaskAlreadyDone, TaskChanged, NotYourTask, UserNotFound, InvalidInput
    """
    task = _held(session, task_id, actor, task_access.Op.TRANSFER)
    target = user_named(session, to_username, field="to_username", what="转办给")
    if target.id == actor.user_id:
        raise InvalidInput("不能转办给自己 (cannot transfer to yourself)", field="to_username")
    people.require_in_scope(session, actor, target, field="to_username", what="转办给", instance_id=task.instance_id)
    duties.require_not_barred(session, task, target.id, field="to_username", who="转办给")
    lookup.reassign(session, task, assignee_id=target.id, owner_id=target.id, delegation_state=None)
    if not any(c.user_id == target.id for c in task.candidates):
        task.candidates.append(TaskCandidate(user_id=target.id))
    add_note(session, task, actor, "transfer", note)
    session.flush()
    _record(session, task, actor, "task.transfer", to=target.username, note=note)
    said = {"actor": actor.display_name, "task": task.name, "note": note}
    notify(session, target.id, "task_assigned", "transferred", said, link=f"/tasks/{task.id}", instance_id=task.instance_id)
    return task


def delegate(session: Session, *, task_id: int, actor: Actor, to_username: str, note: str = "") -> HumanTask:
    """Ask another user to handle a task and give it back; the owner decides (委派).

    Raises: TaskNotFound, TaskAlreadyDone, TaskChanged, NotYourTask, UserNotFound, InvalidInput
    """
    task = _held(session, task_id, actor, task_access.Op.DELEGATE)
    if task.delegation_state == "pending":
        raise Conflict("任务已委派 (already delegated)", task_id=task_id)
    target = user_named(session, to_username, field="to_username", what="委派给")
    if target.id == actor.user_id:
        raise InvalidInput("不能委派给自己 (cannot delegate to yourself)", field="to_username")
    people.require_in_scope(session, actor, target, field="to_username", what="委派给", instance_id=task.instance_id)
    duties.require_not_barred(session, task, target.id, field="to_username", who="委派给")
    lookup.reassign(session, task, owner_id=actor.user_id, assignee_id=target.id, delegation_state="pending")
    add_note(session, task, actor, "delegate", note)
    session.flush()
    _record(session, task, actor, "task.delegate", to=target.username, note=note)
    said = {"actor": actor.display_name, "task": task.name, "note": note}
    notify(session, target.id, "task_delegated", "delegated", said, link=f"/tasks/{task.id}", instance_id=task.instance_id)
    return task


def resolve_delegation(session: Session, *, task_id: int, actor: Actor, opinion: str) -> HumanTask:
    """Give a delegated task back to its owner with an opinion (委派退回).

    Raises: TaskNotFound, TaskAlreadyDone, TaskChanged, NotYourTask, InvalidInput
    """
    task = task_access.open_task(session, actor, task_id)
    task_access.require(session, actor, task, task_access.Op.RESOLVE)
    if not opinion.strip():
        raise InvalidInput("请填写处理意见 (an opinion is required)", field="opinion")
    _lock_instance(session, task.instance_id)  # before the write takes the task's row
    lookup.reassign(session, task, assignee_id=task.owner_id, delegation_state="resolved")
    add_note(session, task, actor, "opinion", opinion)
    session.flush()
    _record(session, task, actor, "task.delegation_resolved", opinion=opinion)
    if task.owner_id is not None:
        said = {"actor": actor.display_name, "task": task.name, "note": opinion}
        notify(session, task.owner_id, "task_returned", "delegation_resolved", said, link=f"/tasks/{task.id}",
               instance_id=task.instance_id)
    return task


# --- 加签 / 减签 co-signers --------------------------------------------------------------------------


def _lock(session: Session, parent_id: int, *, write: bool = False) -> None:
    """Lock the parent's row before reading or changing its co-signers: who signs last, who adds one and who removes
    one take turns, so the last signature never unblocks a parent given a co-signer meanwhile, nor leaves it waiting
    for nobody (SQLite: BEGIN IMMEDIATE). Parent first, then the instance (a save), as a submission's save locks.

    `write` (加签): write the row, not only lock it. A submission's save that waits for the row then finds it changed
    and refuses (projection's claim); after a lock alone it would go on from a snapshot without the new co-signers."""
    if write:
        session.execute(update(HumanTask).where(HumanTask.id == parent_id).values(blocked=HumanTask.blocked)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(select(HumanTask.id).where(HumanTask.id == parent_id).with_for_update())


def _lock_instance(session: Session, instance_id: int) -> None:
    """Before a signature or 减签 locks the parent (转办, 委派, 委派退回, 加签 and 催办 their task): share-lock the
    instance's row, as the row's foreign keys (the opinion's comment) would later. The timer sweep holds that row (FOR
    UPDATE) while its save closes the parent: taken after the parent, each would wait for the other (a deadlock, a
    500). Now a signature waits for a firing timer and then finds its task cancelled, or the sweep skips the instance
    while a signature holds it (SKIP LOCKED) and fires it next time, over what the signature did."""
    session.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id)
                    .with_for_update(read=True, key_share=True))  # FOR KEY SHARE: a save's UPDATE is not held up


def lock_task(session: Session, task_id: int) -> None:
    """Lock a task's row before an operation that leaves a note on it (催办, 督办's actions): FOR UPDATE (SQLite: BEGIN
    IMMEDIATE), the instance's row share-locked first, as every writer takes them. Taken the other way round (the
    note's foreign key share-locking the instance after the task's row), 终止 or the timer sweep, which lock the
    instance and then the rows they close, each waited for the other until PostgreSQL ended one as a deadlock."""
    instance_id = session.scalar(select(HumanTask.instance_id).where(HumanTask.id == task_id))
    if instance_id is not None:
        _lock_instance(session, instance_id)
    session.execute(select(HumanTask.id).where(HumanTask.id == task_id).with_for_update())


def _cosigns(session: Session, parent: HumanTask, *states: str) -> list[HumanTask]:
    return list(session.scalars(select(HumanTask).where(HumanTask.parent_task_id == parent.id,
                                                        HumanTask.kind == "cosign",
                                                        HumanTask.state.in_(states))))


def add_cosigners(session: Session, *, task_id: int, actor: Actor, usernames: Sequence[str], position: str,
                  note: str = "") -> list[HumanTask]:
    """Add co-signers before me (they sign first) or after me (they sign my submission, at once if it is held) (加签).

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask, UserNotFound, InvalidInput
    """
    if position not in ("before", "after"):
        raise InvalidInput("加签位置必须是 before 或 after (position: before | after)", field="position")
    task = _held(session, task_id, actor, task_access.Op.ADD_COSIGNER)
    _lock(session, task_id, write=True)  # after the claim's compare-and-set: a claim made meanwhile is AlreadyClaimed
    task = lookup.require_active(session, lookup.get_open(session, task_id))  # as it is now: the last co-signer may
    if task.assignee_id != actor.user_id:  # have unblocked it meanwhile, or an administrator suspended it
        raise lookup.TaskChanged(task)
    if task.kind != "bpmn":
        raise InvalidInput("加签任务不能再加签 (a co-signer cannot add co-signers)", field="task_id")
    if not usernames:
        raise InvalidInput("请选择加签人 (choose at least one co-signer)", field="usernames")
    people.require_few(usernames, field="usernames", what="加签人")
    existing = {t.assignee_id for t in _cosigns(session, task, *linked.WAITING)}
    asked = position == "before" or task.pending_data is not None  # after me, my submission held: it waits for them
    created: list[HumanTask] = []
    for username in dict.fromkeys(usernames):
        user = user_named(session, username, field="usernames", what="加签人")
        if user.id == actor.user_id or user.id in existing:
            raise InvalidInput(f"{username} 已是办理人或加签人 (already signing)", field="usernames")
        people.require_in_scope(session, actor, user, field="usernames", what="加签人", instance_id=task.instance_id)
        duties.require_not_barred(session, task, user.id, field="usernames", who="加签人", completes=False)
        cosign = HumanTask(instance_id=task.instance_id, task_guid=str(uuid4()),
                           bpmn_id=task.bpmn_id, name=f"加签: {task.name}"[:300], process_key=task.process_key,
                           lane=task.lane, kind="cosign", parent_task_id=task.id, cosign_position=position,
                           state="ready" if asked else "pending", assignee_id=user.id,
                           owner_id=actor.user_id, due_at=task.due_at, warn_at=task.warn_at, created_at=clock.now())
        cosign.candidates.append(TaskCandidate(user_id=user.id))
        session.add(cosign)
        created.append(cosign)
    if position == "before":
        task.blocked = True
    add_note(session, task, actor, "cosign", note)
    session.flush()
    _record(session, task, actor, "task.cosign.add", position=position, cosigners=list(usernames), note=note)
    if asked:
        tell(session, [_asked(cosign, task, actor, note) for cosign in created])
    return created


def _asked(cosign: HumanTask, task: HumanTask, actor: Actor, body: str = "") -> notices.Note:
    return notice(int(cosign.assignee_id or 0), "task_assigned", "cosign_asked",
                  {"actor": actor.display_name, "task": task.name, "note": body},
                  link=f"/tasks/{cosign.id}", instance_id=task.instance_id)


def _parent_seen(session: Session, actor: Actor, cosign: HumanTask) -> None:
    """Refuse a co-signer's task as missing unless the actor may see the task it was added to (减签 is asked of it).

    Raises: TaskNotFound
    """
    parent = session.get(HumanTask, cosign.parent_task_id) if cosign.parent_task_id is not None else None
    if not task_access.sees(session, actor, parent if parent is not None else cosign):
        raise lookup.not_found(cosign.id)


def remove_cosigner(session: Session, *, cosign_task_id: int, actor: Actor) -> HumanTask:
    """Remove a co-signer who has not signed yet (减签); the parent goes on when none is left.

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask
    """
    cosign = lookup.get_open(session, cosign_task_id, seen=partial(_parent_seen, session, actor))
    if cosign.kind != "cosign" or cosign.parent_task_id is None:
        raise InvalidInput("这不是加签任务 (not a co-signer task)", field="task_id")
    _lock_instance(session, cosign.instance_id)
    _lock(session, cosign.parent_task_id)
    cosign = lookup.get_open(session, cosign_task_id)  # as it is now: signed meanwhile, it is not removed
    parent = session.get(HumanTask, cosign.parent_task_id)
    if parent is None:
        raise TaskNotFound(f"任务不存在 (no such task): {cosign.parent_task_id}", task_id=cosign.parent_task_id)
    task_access.require(session, actor, parent, task_access.Op.REMOVE_COSIGNER)
    lookup.require_active(session, parent)  # 挂起: the last co-signer removed would unblock it in a suspended instance
    cosign.state = "cancelled"
    cosign.completed_at = clock.now()
    session.flush()
    _record(session, parent, actor, "task.cosign.remove", cosign_task_id=cosign.id)
    _after_cosign(session, parent, actor)
    return cosign


def hold_for_cosigners(session: Session, task: HumanTask, actor: Actor, data: dict[str, Any]) -> bool:
    """Hold a submission for co-signers added after the holder; True if held (then nothing else happens)."""
    if not _cosigns(session, task, "pending"):  # most submissions: no lock, no round trip more
        return False
    _lock(session, task.id)
    waiting = _cosigns(session, task, "pending")  # as they are now: one removed meanwhile (减签) is not asked
    if not waiting:
        return False
    task.pending_data = audit.jsonable(data)
    task.blocked = True
    for cosign in waiting:
        cosign.state = "ready"
    session.flush()
    _record(session, task, actor, "task.submit_for_cosign", data=data, cosigners=[c.id for c in waiting])
    tell(session, [_asked(cosign, task, actor) for cosign in waiting])
    return True


def sign(session: Session, *, task: HumanTask, actor: Actor, opinion: str) -> completion.Completion:
    """A co-signer signs with an opinion; when the last one has, the parent goes on.

    Raises: TaskNotReady (signing after the holder: not before they have submitted), InstanceNotRunning (its
    instance suspended), InvalidInput
    """
    lookup.require_active(session, lookup.require_started(task))
    if not opinion.strip():
        raise InvalidInput("请填写加签意见 (an opinion is required)", field="opinion")
    if task.parent_task_id is not None:
        _lock_instance(session, task.instance_id)
        _lock(session, task.parent_task_id)
        task = lookup.require_started(lookup.get_open(session, task.id))  # as it is now: removed meanwhile (减签)
    lookup.require_active(session, task)  # or set aside with its instance (挂起) since it was read
    task.state = "completed"
    task.completed_at = clock.now()
    task.completed_by_id = actor.user_id
    add_note(session, task, actor, "opinion", opinion)
    session.flush()
    _record(session, task, actor, "task.cosign.sign", opinion=opinion)
    parent = session.get(HumanTask, task.parent_task_id) if task.parent_task_id else None
    if parent is None:
        return completion.Completion(instance_id=task.instance_id, status="running", incident=None, next_tasks=[])
    return _after_cosign(session, parent, actor)


def _after_cosign(session: Session, parent: HumanTask, actor: Actor) -> completion.Completion:
    if _cosigns(session, parent, "ready", "suspended"):
        return completion.Completion(instance_id=parent.instance_id, status="running", incident=None, next_tasks=[])
    parent.blocked = False
    if parent.pending_data is None:  # co-signers before the holder: back to the holder
        session.flush()
        if parent.assignee_id is not None:
            notify(session, parent.assignee_id, "task_ready", "cosign_done", {"task": parent.name},
                   link=f"/tasks/{parent.id}", instance_id=parent.instance_id)
        return completion.Completion(instance_id=parent.instance_id, status="running", incident=None,
                                next_tasks=[parent.id])
    data = dict(parent.pending_data)
    parent.pending_data = None
    holder = parent.assignee_id
    running = runtime.load(session, parent.instance_id)
    if running.row.status != "running":
        raise InstanceNotRunning("流程实例未在运行 (instance is not running)", instance_id=parent.instance_id)
    user = session.get(User, holder) if holder is not None else None
    holder_actor = actor_of(session, user) if user is not None else actor
    # The holder's data, submitted earlier: the co-signer cannot change it (a state it makes too large: an incident).
    return completion.finish(session, task=parent, running=running, actor=holder_actor, data=data,
                             submitted_now=False)


# --- 催办 urge (抄送, comments, attachments: collab) ----------------------------------------------------


def urge_recipients(session: Session, task: HumanTask) -> list[int]:
    """Return whom 催办 reaches: the holder, else every candidate (users, unit members, role holders), else the
    unit head — the escalation ladder's first two rungs."""
    org = escalation.Org.load(session)
    target = escalation.load_targets(session, [("task", task.id)], org)[("task", task.id)]
    policy = sla.load_policies().get("task", task.escalation_policy)
    people = escalation.recipients("handler", target, org, policy, session)
    if not people:
        people = escalation.recipients("unit_head", target, org, policy, session)
    return list(dict.fromkeys(people))


def require_not_urged(session: Session, task: HumanTask, actor: Actor) -> None:
    """Refuse a second 催办 of a task by the same person within the hour, whichever way the first came: the task's
    page or an application's own (a leader's 督办) — each leaves the task an `urge` comment. The caller has locked the
    task's row first, so two urges at once take turns and the second sees the first.

    Raises: RateLimited
    """
    recent = session.scalar(select(Comment.id).where(
        Comment.task_id == task.id, Comment.kind == "urge", Comment.author_id == actor.user_id,
        Comment.created_at >= clock.now() - URGE_INTERVAL).limit(1))
    if recent is not None:
        raise RateLimited("一小时内已催办过 (already urged within the hour)", task_id=task.id)


def urge(session: Session, *, task_id: int, actor: Actor, message: str = "") -> int:
    """Remind the task's holder (or all its candidates, or their unit head) to act; once an hour per task and person (催办).

    Raises: TaskNotFound, TaskAlreadyDone, Forbidden, TaskNotReady, RateLimited
    """
    lock_task(session, task_id)  # two urges at once take turns and the second counts the first
    task = task_access.open_task(session, actor, task_id)
    task_access.require(session, actor, task, task_access.Op.URGE)
    lookup.require_active(session, lookup.require_started(task))
    require_not_urged(session, task, actor)
    session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind="urge",
                        body=message.strip()[:2000] or "催办"))
    recipients = urge_recipients(session, task)
    session.flush()
    _record(session, task, actor, "task.urge", message=message, recipients=recipients)
    tell(session, [notice(user_id, "urge", "urged", {"actor": actor.display_name, "task": task.name, "note": message},
                          link=f"/tasks/{task.id}", instance_id=task.instance_id) for user_id in recipients])
    return len(recipients)


__all__ = ["add_cosigners", "add_note", "delegate", "hold_for_cosigners", "lock_task", "notice", "notify",
           "remove_cosigner", "require_not_urged", "resolve_delegation", "sign", "tell", "transfer", "urge",
           "user_named"]
