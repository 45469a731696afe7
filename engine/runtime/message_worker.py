"""What the worker does with messages after a commit: route the pending ones, expire the buffer, give up; an admin's
second try.

A message is pending when an instance threw it (`messages.sync` queues it), or when every try to resume the
instance it matches conflicted (`messages.route`): that instance still waits and never looks at the buffer again,
so buffering it there lost it. The outbox job routes either in the transaction that marks its outbox row
delivered; a match busy again raises, and the outbox tries again with backoff. Each pending message ends in a state
of its own, with the reason: refused (its payload does not fit, its sender is gone, or the outbox gave it up after
its last try, `give_up`), or expired (its time to live ended while its match was still busy). An admin may route a
refused one again (`retry`).
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.db import is_postgres
from engine.errors import ConcurrentModification, Conflict, Forbidden, FormInvalid, NotFound
from engine.notify import outbox
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.runtime.message_models import BpmnMessage
from engine.runtime.message_rules import MessageBusy, MessageUnknown, MessageUnmatched, Outcome, sender
from engine.runtime.messages import audit_message, describe, route

MAX_REASON = 500


def _ttl_left(row: BpmnMessage) -> int | None:
    """The rest of a published message's time to live (None: thrown, the default applies)."""
    if row.expires_at is None:
        return None
    return max(0, math.ceil((clock.as_utc(row.expires_at) - clock.now()).total_seconds()))


def route_pending(session: Session, message_id: int) -> Outcome | None:
    """Route a pending message (the outbox job, after the commit), as its sender; None when it was routed already
    or is settled otherwise: refused (its payload does not fit the catch, nobody waits and its time to live is over,
    its sender is gone) or expired (its time to live is over and its match still busy), with the reason, audited.

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
    except MessageBusy as exc:  # not kept past its time to live, as a buffered one is not
        savepoint.rollback()
        busy = exc.details.get("instance_id")
        _settle(session, row, "expired", "message.expire",
                f"保留时间已到，等待它的流程实例 #{busy} 仍正忙，未投递 (its time to live ended while the instance "
                f"#{busy} waiting for it was busy)")
        return None
    except (MessageUnmatched, MessageUnknown, FormInvalid) as exc:
        # Its payload does not fit the catch's schema, say: keep it refused (audited), not retried forever.
        savepoint.rollback()
        _settle(session, row, "refused", "message.refuse", str(exc))
        return None
    except BaseException:
        savepoint.rollback()  # nothing half-done is committed with the outbox row's attempt count
        raise
    savepoint.commit()
    return outcome


def _settle(session: Session, row: BpmnMessage, status: str, action: str, reason: str, **extra: Any) -> None:
    row.status, row.reason = status, reason[:MAX_REASON]
    session.flush()
    audit_message(session, SYSTEM, action, row, reason=row.reason, **extra)


def give_up(session: Session, message_id: int, *, tries: int, error: BaseException) -> bool:
    """The outbox gave a pending message up (its last try failed): mark it refused with the reason, audited (flushes).

    In the transaction that counts that try: a worker killed before the commit leaves both undone, and the next run
    tries once more and gives it up once. False when the message is not pending.
    """
    q = select(BpmnMessage).where(BpmnMessage.id == message_id, BpmnMessage.status == "pending")
    if is_postgres(session):
        q = q.with_for_update()
    row = session.scalar(q.execution_options(populate_existing=True))
    if row is None:
        return False
    busy = error.details.get("instance_id") if isinstance(error, ConcurrentModification) else None
    if busy is not None:
        reason = (f"投递 {tries} 次均未成功，已放弃：等待它的流程实例 #{busy} 每次都正忙，管理员可重新投递 (given up after "
                  f"{tries} tries: the instance #{busy} waiting for it was busy at every try; an admin may route it "
                  "again)")
    else:
        reason = f"投递 {tries} 次均未成功，已放弃 (given up after {tries} tries): {type(error).__name__}: {error}"
    _settle(session, row, "refused", "message.refuse", reason, tries=tries)
    return True


def retry(session: Session, message_id: int, *, actor: Actor) -> Outcome:
    """Route a refused message again (an admin, on 消息与信号): pending once more, its outbox row due now with its tries
    counted afresh, audited (flushes). The outbox job routes it as its sender, with what is left of its time to live.

    Under the message's row lock: two admins at once route it once, the second told it is pending already.

    Raises: Forbidden (not an admin), NotFound (no such message), Conflict (not refused)
    """
    if not actor.is_admin:
        raise Forbidden("只有系统管理员可以重新投递消息 (admins only may route a message again)", message_id=message_id)
    q = select(BpmnMessage).where(BpmnMessage.id == message_id, BpmnMessage.kind == "message")
    if is_postgres(session):
        q = q.with_for_update()
    row = session.scalar(q.execution_options(populate_existing=True))
    if row is None:
        raise NotFound(f"消息不存在: {message_id} (no such message)", message_id=message_id)
    if row.status != "refused":
        raise Conflict(f"消息 #{message_id} 不是已拒收的消息，无需重新投递 (message {message_id} is {row.status}, not "
                       "refused: nothing to route again)", message_id=message_id, status=row.status)
    before = {"status": row.status, "reason": row.reason}
    row.status, row.reason = "pending", None
    key = f"bpmn_message:{row.id}"
    q_row = select(OutboxMessage).where(OutboxMessage.dedupe_key == key)
    due = session.scalar(q_row.with_for_update() if is_postgres(session) else q_row)
    if due is None:
        outbox.enqueue(session, "bpmn_message", {"message_id": row.id}, dedupe_key=key)
    else:  # the given-up row (or the one that refused it): due now, its tries counted afresh
        due.attempts, due.available_at, due.delivered_at, due.last_error = 0, clock.now(), None, None
        session.info[outbox.QUEUED] = True  # the request kicks the outbox job after its commit
    session.flush()
    audit_message(session, actor, "message.retry", row, before=before)
    return describe(session, message_id)


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
