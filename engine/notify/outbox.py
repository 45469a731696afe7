"""Outbox: record side effects in the transaction; a job delivers them after the commit."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from engine import clock
from engine.audit import jsonable
from engine.db import is_postgres
from engine.notify.models import OutboxMessage

Deliverer = Callable[[Session, OutboxMessage], None]
# Told, in the transaction that counts the last try, that a message is given up: a BPMN message gets a state of its
# own (refused, with the reason) instead of waiting for good.
GiveUp = Callable[[Session, OutboxMessage, Exception], None]
log = logging.getLogger(__name__)
MAX_ATTEMPTS = 10
# Kinds whose delivery leaves the process (a relay, a receiver's server): each attempt is counted and the message
# leased before it is sent (`lease`). A worker killed while sending then cannot roll the count back, so a message
# that kills every worker is given up after MAX_ATTEMPTS instead of coming first in every batch for good. The lease
# outlasts a delivery's timeouts (10 s per step; JZFLOW_OUTBOX_LEASE_SECONDS); the in-process kinds need neither:
# they run in the delivery's transaction.
LEAVING = frozenset({"email", "webhook"})
QUEUED = "jzflow.outbox_queued"  # session.info flag: this unit of work queued a message


@event.listens_for(Session, "before_flush")
def _note_queued(session: Session, _context: Any, _instances: Any) -> None:
    # However a message is added (enqueue, send_many, another module), its unit of work is marked.
    if not session.info.get(QUEUED) and any(isinstance(o, OutboxMessage) for o in session.new):
        session.info[QUEUED] = True


def queued(session: Session) -> bool:
    """Tell (and forget) whether this unit of work queued a message: only then is a delivery kick worth a broker trip."""
    return bool(session.info.pop(QUEUED, False))


def enqueue(session: Session, kind: str, payload: dict[str, Any], *, dedupe_key: str | None = None) -> OutboxMessage | None:
    """Add a message unless one with the same dedupe key exists (flushes, never commits)."""
    if dedupe_key is not None and session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return None
    msg = OutboxMessage(kind=kind, payload=jsonable(payload), dedupe_key=dedupe_key)
    session.add(msg)
    session.flush()
    return msg


def pending(session: Session, *, limit: int = 100) -> list[tuple[int, str]]:
    """Return the ids and kinds of messages due for delivery, oldest first."""
    q = (select(OutboxMessage.id, OutboxMessage.kind).where(OutboxMessage.delivered_at.is_(None),
                                                            OutboxMessage.available_at <= clock.now(),
                                                            OutboxMessage.attempts < MAX_ATTEMPTS)
         .order_by(OutboxMessage.id).limit(limit))
    return [(row.id, row.kind) for row in session.execute(q)]


def lease(session: Session, message_id: int, *, seconds: int) -> bool:
    """Count an attempt at a message about to leave the process and keep other workers off it for `seconds`, by
    compare-and-set (the caller commits before sending); False when it is no longer due (another worker took it)."""
    now = clock.now()
    taken = session.execute(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None), OutboxMessage.available_at <= now,
        OutboxMessage.attempts < MAX_ATTEMPTS)
        .values(attempts=OutboxMessage.attempts + 1, available_at=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False))
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def deliver_one(session: Session, message_id: int, deliver: Deliverer, *, leased: bool = False,
                give_up: GiveUp | None = None) -> bool:
    """Deliver one message under a row lock; True if delivered now, False if skipped or failed.

    `leased`: its attempt was counted by `lease` (committed): not counted again. `give_up`: called when a failure
    leaves the message given up (MAX_ATTEMPTS), in this transaction.
    """
    q = select(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None))
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    msg = session.scalar(q)
    if msg is None:
        return False
    try:
        # In a savepoint: a statement the database refuses (PostgreSQL then refuses every statement after it) is
        # undone alone, and the failure can still be noted; unnoted, the message came first in every batch again.
        with session.begin_nested():
            deliver(session, msg)
            session.flush()  # what the delivery wrote is checked here, inside the savepoint
    except Exception as exc:  # any delivery failure is retried later with backoff
        msg.attempts += 0 if leased else 1
        msg.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        msg.available_at = clock.now() + timedelta(seconds=min(3600, 2 ** msg.attempts))
        session.flush()
        if give_up is not None and msg.attempts >= MAX_ATTEMPTS:
            _given_up(session, msg, exc, give_up)
        return False
    msg.attempts += 0 if leased else 1
    msg.delivered_at = clock.now()
    session.flush()
    return True


def _given_up(session: Session, msg: OutboxMessage, error: Exception, give_up: GiveUp) -> None:
    # In a savepoint: a failure here is logged and leaves the message given up all the same, counted with its last
    # try; raised, it would roll that count back and come first in every batch again, holding up the rest.
    try:
        with session.begin_nested():
            give_up(session, msg, error)
            session.flush()
    except Exception:
        log.exception("outbox message %s was given up, and telling its owner failed", msg.id)
