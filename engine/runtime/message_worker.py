"""What the worker does with messages after a commit: route the pending ones, expire the buffer.

A message is pending when an instance threw it (`messages.sync` queues it), or when every try to resume the
instance it matches conflicted (`messages.route`): that instance still waits and never looks at the buffer again,
so buffering it there lost it. The outbox job routes either in the transaction that marks its outbox row
delivered; a match busy again raises, and the outbox tries again with backoff.
"""
from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.db import is_postgres
from engine.errors import FormInvalid
from engine.org.actors import SYSTEM
from engine.runtime.message_models import BpmnMessage
from engine.runtime.message_rules import MessageUnknown, MessageUnmatched, Outcome, sender
from engine.runtime.messages import audit_message, route


def _ttl_left(row: BpmnMessage) -> int | None:
    """The rest of a published message's time to live (None: thrown, the default applies)."""
    if row.expires_at is None:
        return None
    return max(0, math.ceil((clock.as_utc(row.expires_at) - clock.now()).total_seconds()))


def route_pending(session: Session, message_id: int) -> Outcome | None:
    """Route a pending message (the outbox job, after the commit), as its sender; None when it was routed already
    or is refused (its payload does not fit, its time to live is over and nobody waits, its sender is gone).

    Raises: ConcurrentModification (the instance it matches was busy at every try: the outbox retries)
    """
    q = select(BpmnMessage).where(BpmnMessage.id == message_id, BpmnMessage.status == "pending")
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    row = session.scalar(q)
    if row is None:
        return None
    by = sender(session, row.created_by_id)
    savepoint = session.begin_nested()
    try:
        if by is None:
            raise MessageUnmatched("消息的发送人已停用 (its sender is gone or deactivated)", name=row.name)
        outcome = route(session, row, by, ttl=_ttl_left(row))
    except (MessageUnmatched, MessageUnknown, FormInvalid) as exc:
        # Its payload does not fit the catch's schema, say: keep it refused (audited), not retried forever.
        savepoint.rollback()
        row.status = "refused"
        session.flush()
        audit_message(session, SYSTEM, "message.refuse", row, reason=str(exc)[:500])
        return None
    except BaseException:
        savepoint.rollback()  # nothing half-done is committed with the outbox row's attempt count
        raise
    savepoint.commit()
    return outcome


def expire(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Mark buffered messages past their time to live expired, audited; return how many (flushes). Under row locks
    (SKIP LOCKED): a second expiry job at once passes them by, and a message a catch consumes now stays delivered."""
    q = (select(BpmnMessage).where(BpmnMessage.status == "buffered", BpmnMessage.expires_at <= now)
         .order_by(BpmnMessage.id).limit(limit))
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    rows = list(session.scalars(q.execution_options(populate_existing=True)))
    for row in rows:
        row.status = "expired"
        audit_message(session, SYSTEM, "message.expire", row)
    session.flush()
    return len(rows)
