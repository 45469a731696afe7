"""申请延期 (ExtensionRequest) a person asked on a step that is no longer theirs: withdrawn with the step.

A request is its asker's plea about their own workload. When a move (调岗, engine.org.leaving.move) gives the step
back to its unit's pool, the pending request they asked on it goes with them: cancelled (status `cancelled`, no
decider, as engine.runtime.linked cancels the requests of a step that closes), audited on the instance's stream
(`supervision.extension_cancel`, with the reason of the move) and its asker told; whoever takes the step over asks
for themselves. A 停用 (engine.org.leaving.deactivate_user) withdraws every pending request of theirs the same way,
telling nobody: the asker is gone, and their steps go to whoever takes them over. A leader deciding one at the same
moment takes turns on the request's row: one decides it, or finds it cancelled (Conflict,
plan.supervision.actions.decide_extension).

A person asking at the moment they are moved or deactivated takes turns with the move on their own row (`asker`): a
move holds it from before it looks for their requests until it commits (`lock_person`; 编辑人员 and 停用 hold it from
the start), and a request share-locks it before the step's row and reads the person's units and roles again under it.
Asked first, the request is there when the move looks and is withdrawn with the step; asked after, it is refused
naming the step. The Actor a request arrives with was read when it began: waiting for a move's step row, it went on
with the units the person had left and stayed pending on a step of a pool no longer theirs (nobody told, a leader
could grant it); and a request holding the step's row waited for the move's lock on the person (its row's foreign key)
while the move waited for the step (a deadlock).
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock, notify
from engine.deadlines.models import ExtensionRequest
from engine.errors import NotYourTask
from engine.org.actors import Actor, actor_of
from engine.org.models import User
from engine.tasks.models import HumanTask


def _pending(session: Session, user: User, task_ids: list[int] | None) -> list[ExtensionRequest]:
    """The pending requests `user` asked on these tasks (None: on any), locked FOR UPDATE in id order."""
    asked = select(ExtensionRequest).where(ExtensionRequest.object_type == "task",
                                           ExtensionRequest.requested_by_id == user.id,
                                           ExtensionRequest.status == "pending")
    if task_ids is not None:
        asked = asked.where(ExtensionRequest.object_id.in_(task_ids))
    return list(session.scalars(asked.order_by(ExtensionRequest.id).with_for_update()
                                .execution_options(populate_existing=True)))


def lock_pending(session: Session, *, user: User) -> list[int]:
    """Lock every pending request `user` asked (FOR UPDATE, id order; PostgreSQL) before the rows of their steps are
    taken; return their ids. A move (调岗) learns which steps it gives back only by taking their rows; a leader granting
    one of its requests at the same moment takes the request's row, then the step's (its new deadline): the move takes
    them all first, as 停用 does by withdrawing first, and withdraws those of the steps it gave back afterwards."""
    return [r.id for r in _pending(session, user, None)]


def lock_person(session: Session, user: User) -> None:
    """A move's lock on the person it moves (FOR NO KEY UPDATE, until the commit; PostgreSQL), before it looks for
    their requests: a request of theirs (`asker`) waits for it, or it for the request (SQLite: one writer)."""
    session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))


def asker(session: Session, actor: Actor) -> Actor:
    """Share-lock the asker's row (FOR SHARE: after a move or 停用 of theirs that holds it, before it) and return their
    Actor as it is now, with the units and roles they hold once any such change has committed. Called before the
    step's row is locked, as a move takes the person's row before the steps'.

    Raises: NotYourTask (deactivated)
    """
    user = session.scalar(select(User).where(User.id == actor.user_id).with_for_update(read=True)
                          .execution_options(populate_existing=True))
    if user is None or not user.is_active:
        raise NotYourTask("您的账号已停用，不能申请延期 (extension: your account is deactivated)")
    return actor_of(session, user)


def withdraw(session: Session, *, user: User, task_ids: list[int] | None, actor: Actor, reason: str,
             tell: bool = True) -> list[int]:
    """Cancel the pending 申请延期 `user` asked on these tasks (None: on any step; flushes); one audit event each,
    and one notice each unless `tell` is False. Returns the ids of the requests cancelled."""
    if task_ids is not None and not task_ids:
        return []
    now = clock.now()
    found = _pending(session, user, task_ids)
    notes: list[notify.Note] = []
    for request in found:
        task = session.get(HumanTask, request.object_id)
        request.status, request.decided_at = "cancelled", now
        session.flush()
        instance = task.instance_id if task is not None else None
        audit.record(session, actor, "supervision.extension_cancel", stream=f"instance:{instance}",
                     object_type="human_task", object_id=request.object_id,
                     before={"status": "pending", "requested_by_id": user.id,
                             "requested_due_at": request.requested_due_at},
                     after={"status": "cancelled", "reason": reason})
        name = task.name if task is not None else str(request.object_id)
        notes.append(notify.worded(user.id, "extension", "extension_withdrawn", {"task": name}, link="/inbox",
                                   instance_id=instance, key=f"extension-withdrawn:{request.id}"))
    if tell:
        notify.send_many(session, notes)  # after every audit event: the notice counters are the last locks taken
    return [r.id for r in found]


__all__ = ["asker", "lock_pending", "lock_person", "withdraw"]
