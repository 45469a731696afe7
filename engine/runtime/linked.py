"""What closes with a task the projection closes: its co-signers (加签) and the 申请延期 still waiting on either.

A save that closes a step — its holder's submission, an interrupting boundary event, a terminate end event, a gateway
or 退回 taking its path away, an administrator's 终止 — leaves nothing to sign on it and no deadline to extend: the
co-signers' rows (ready, or pending the holder's submission) are cancelled as the step's row is, in the same save, and
the pending requests cancelled (status `cancelled`, no decider). PostgreSQL does it in the save's one statement
(projection's `cosigners` and `extensions`); `close` here is the same for a save that flushes (SQLite, or an
assignment problem's incident). The save's instance event records it as it records the step's own row.

A save that sets a step aside (挂起, or an incident: its row ready → suspended) sets its asked co-signers aside with it
(ready → suspended), and the save that gives the step back (suspended → ready) gives them back: `follow`, or the
statement's `followed`. Co-signers pending the holder's submission were never asked and stay pending throughout.

Whoever held a step the engine cancels, and its co-signers who had been asked, are told (`tell`, an in-app 任务已取消
through the outbox, in the unit of work: delivered after its commit, never for an attempt rolled back), naming the
step and the event that closed it; one notice per row and person (its dedupe key). 退回 tells them in its own words.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from engine.deadlines.models import ExtensionRequest
from engine.notify import core as notices
from engine.org.actors import Actor
from engine.runtime.running import Running
from engine.tasks.models import OPEN_STATES, HumanTask

# a co-signer's task not signed yet: asked (set aside with its instance: suspended), or to be asked after the holder
# submits (pending)
WAITING = ("ready", "suspended", "pending")


def closed_ids(moved: list[HumanTask]) -> list[int]:
    """The ids of the open rows a save closes: its plan's `moved` rows (each open when the plan read it) that are
    no longer open, whether a flush has written that already or the save's statement writes it."""
    return sorted(h.id for h in moved if h.id is not None and h.state not in OPEN_STATES)


def close(session: Session, closed: list[int], now: datetime) -> list[tuple[int, str]]:
    """Cancel the waiting co-signers of the `closed` tasks and the pending requests of both, by the unit of work
    (flushes); return each co-signer's id with the state it had (ready: they had been asked)."""
    if not closed:
        return []
    cosigners = list(session.scalars(select(HumanTask).where(
        HumanTask.parent_task_id.in_(closed), HumanTask.kind == "cosign", HumanTask.state.in_(WAITING))
        .order_by(HumanTask.id).with_for_update()))
    was = [(c.id, c.state) for c in cosigners]
    for cosign in cosigners:
        cosign.state, cosign.completed_at = "cancelled", now
    tasks = closed + [c.id for c in cosigners]
    for request in session.scalars(select(ExtensionRequest).where(
            ExtensionRequest.object_type == "task", ExtensionRequest.status == "pending",
            ExtensionRequest.object_id.in_(tasks)).with_for_update()):
        request.status, request.decided_at = "cancelled", now
    session.flush()
    return was


def follow(session: Session, paused: list[int], resumed: list[int]) -> None:
    """Set the asked co-signers of the `paused` steps aside and give those of the `resumed` steps back (flushes)."""
    for parents, was, now in ((paused, "ready", "suspended"), (resumed, "suspended", "ready")):
        if parents:
            for cosign in session.scalars(select(HumanTask).where(
                    HumanTask.parent_task_id.in_(parents), HumanTask.kind == "cosign", HumanTask.state == was)
                    .order_by(HumanTask.id).with_for_update()):
                cosign.state = now
    session.flush()


def followed(session: Session, rows: list[tuple[int, str]]) -> None:
    """Tell the session's copies of the co-signers the statement set aside or gave back (`rows`: id, state now)."""
    for row_id, state in rows:
        held: Any = session.identity_map.get(identity_key(HumanTask, row_id))
        if held is not None:
            set_committed_value(held, "state", state)


ASKED = ("ready", "suspended")  # a co-signer who had been asked to sign (pending: not yet)
# Why the engine cancelled a step, by the audit action of the unit of work that did (zh-CN first, then English).
REASONS = {
    "timer.fire": "办理期限已到，定时事件使流程转向其他步骤 (a timer fired and the process moved on)",
    "instance.terminate": "管理员终止了流程实例 (an administrator terminated the instance)",
    "instance.migrate": "流程实例已迁移到新版本，此步骤不再需要办理 (the instance moved to a new version)",
    "message.deliver": "收到消息，流程已转向其他步骤 (a message moved the process on)",
    "signal.deliver": "收到信号，流程已转向其他步骤 (a signal moved the process on)",
}
OTHERWISE = "流程已转向其他步骤，此任务不再需要办理 (the process moved on: this task is no longer needed)"
ENDED = "流程已结束，此任务不再需要办理 (the process ended: this task is no longer needed)"


def kept(running: Running, moved: list[HumanTask], cosigners: list[tuple[int, str]]) -> None:
    """Keep what a save cancelled for the unit of work: the co-signers with the state they had, and the rows whose
    people are to be told (the steps it cancelled, the co-signers who had been asked)."""
    running.closed_cosigners.extend(cosigners)
    running.untold.extend([h.id for h in moved if h.id is not None and h.state == "cancelled"] +
                          [c for c, was in cosigners if was in ASKED])


def tell(session: Session, running: Running, actor: Actor, action: str) -> None:
    """Tell the holder of each step the unit of work cancelled (else its user candidates, else its owner) and each
    co-signer who had been asked that their task was cancelled, and why (`action`: the unit of work's audit action);
    not `actor`, who did it. Once: the rows are forgotten once told, and each notice has a dedupe key."""
    if not running.untold:
        return
    ids, running.untold = running.untold, []
    reason = REASONS.get(action, OTHERWISE)
    if running.row.status == "completed":
        reason = ENDED
    by = actor.display_name if action == "task.complete" else None  # someone else's step moved the process on
    tell_cancelled(session, ids, reason, not_to=actor.user_id, by=by)


def tell_cancelled(session: Session, ids: list[int], reason: str, *, not_to: int | None = None,
                   by: str | None = None) -> None:
    """Tell the holder of each of these cancelled tasks (else its user candidates, else its owner), not `not_to`,
    that it was cancelled and why (`reason`: one of the engine's own, translated on the web; `by`: the person whose
    step did it): an in-app 任务已取消 through the outbox, once per row and person (dedupe key)."""
    notes: list[notices.Note] = []
    for row in session.scalars(select(HumanTask).where(HumanTask.id.in_(ids)).order_by(HumanTask.id)):
        people = [row.assignee_id] if row.assignee_id else [c.user_id for c in row.candidates if c.user_id]
        if not people and row.owner_id:
            people = [row.owner_id]
        for user_id in dict.fromkeys(p for p in people if p is not None and p != not_to):
            notes.append(notices.worded(
                user_id, "task_cancelled", "task_cancelled_by" if by is not None else "task_cancelled",
                {"task": row.name, "reason": reason, **({"actor": by} if by is not None else {})}, words=("reason",),
                link=f"/tasks/{row.id}", key=f"task_cancelled:{row.id}", instance_id=row.instance_id))
    notices.send_many(session, notes, channels_=notices.IN_APP)


def written(session: Session, cosigners: list[int], requests: list[int], now: datetime) -> None:
    """Tell the session's copies of the rows the statement closed what the rows now hold (none is read again)."""
    for model, ids, values in ((HumanTask, cosigners, {"state": "cancelled", "completed_at": now}),
                               (ExtensionRequest, requests, {"status": "cancelled", "decided_at": now})):
        for row_id in ids:
            held: Any = session.identity_map.get(identity_key(model, row_id))
            if held is not None:
                for key, value in values.items():
                    set_committed_value(held, key, value)


__all__ = ["ASKED", "WAITING", "close", "closed_ids", "follow", "followed", "kept", "tell", "tell_cancelled", "written"]
