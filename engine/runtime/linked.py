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
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from engine.deadlines.models import ExtensionRequest
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


def written(session: Session, cosigners: list[int], requests: list[int], now: datetime) -> None:
    """Tell the session's copies of the rows the statement closed what the rows now hold (none is read again)."""
    for model, ids, values in ((HumanTask, cosigners, {"state": "cancelled", "completed_at": now}),
                               (ExtensionRequest, requests, {"status": "cancelled", "decided_at": now})):
        for row_id in ids:
            held: Any = session.identity_map.get(identity_key(model, row_id))
            if held is not None:
                for key, value in values.items():
                    set_committed_value(held, key, value)


__all__ = ["WAITING", "close", "closed_ids", "follow", "followed", "written"]
