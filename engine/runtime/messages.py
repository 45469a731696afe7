"""BPMN messages between instances and from outside: durable, correlated, delivered once.

A message (name, correlation values, business key, payload) goes to the oldest instance waiting on a catch
of that name whose expected correlation values — or business key — match; found through the
`message_subscription` table (an index scan), which every save keeps equal to what the instance waits on
(`sync`). Delivery is the instance's own unit of work: catch, run, save (optimistic lock) and the message
marked delivered, in one transaction. With nobody waiting, a message start event starts the latest version
of its process; otherwise the message is buffered until its time to live (Zeebe's rule) and a catch that
starts waiting later consumes it in the same save. What an instance throws that it does not catch itself
is queued (status pending) and routed after the commit by the outbox job (`message_worker`), and so is a
message whose matching instance conflicted at every try: buffered, the instance waiting already never saw it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.db import advisory_lock, database_key, is_postgres
from engine.errors import ConcurrentModification, InvalidInput, NotFound
from engine.notify import outbox
from engine.org.actors import SYSTEM, Actor
from engine.runtime import core as runtime
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from engine.runtime.message_rules import (
    MAX_CORRELATION,
    MAX_NAME,
    Declaration,
    MessageBusy,
    MessageUnknown,
    MessageUnmatched,
    Outcome,
    canonical,
    check_input,
    check_keep,
    declarations,
    default_ttl,
    may_deliver,
    named,
    plain,
    privileged,
    require_sender,
    require_sender_first,
    sender,
    start_hops,
    validate_for,
    validate_payload,
)
from engine.runtime.running import Running
from engine.spiff import events

CANDIDATES = 10  # subscriptions tried per round; a conflict re-reads them
ROUNDS = 3
_depth: ContextVar[int] = ContextVar("jzflow_message_depth", default=0)


# --- publish and deliver --------------------------------------------------------------------------------

def publish(session: Session, *, name: str, actor: Actor, correlations: Mapping[str, Any] | None = None,
            business_key: str | None = None, payload: Mapping[str, Any] | None = None, ttl: int | None = None,
            message_id: str | None = None) -> Outcome:
    """Publish a message from outside (API, CLI, a service): deliver it, start an instance, or buffer it (flushes).

    A refused message writes nothing. The row is written once, with what became of it (one INSERT).

    Raises: InvalidInput, FormInvalid, Forbidden, MessageUnknown (no process declares it),
            MessageUnmatched (ttl 0 and nobody waits), MessageQuotaExceeded (too many kept, route)
    """
    correlations, payload = correlations or {}, payload or {}
    check_input(name, correlations, payload, business_key, ttl)
    if message_id is not None and (not isinstance(message_id, str) or not 1 <= len(message_id) <= 200):
        raise InvalidInput("message_id 须为 1–200 个字符 (message_id: 1–200 characters)", field="message_id")
    row = BpmnMessage(kind="message", name=name, message_id=message_id, correlation=canonical(correlations),
                      business_key=business_key, payload=json.dumps(payload, ensure_ascii=False, default=plain),
                      status="pending", created_by_id=actor.user_id)
    ttl = default_ttl() if ttl is None else ttl
    if message_id is None:
        return route(session, row, actor, ttl=ttl, from_outside=True)
    # A sender no catch names learns nothing of the id (route checks again, for what it delivers to or keeps).
    require_sender_first(session, actor, name, lambda: [s.id for s in _candidates(session, row)])
    savepoint = session.begin_nested()  # the sender's id: its second message with it is a duplicate
    try:
        session.add(row)
        session.flush()
    except IntegrityError:  # unique per sender (uq_bpmn_message_sender_id, _system_id): this sender's first
        savepoint.rollback()
        by = BpmnMessage.created_by_id
        first = session.scalar(select(BpmnMessage).where(BpmnMessage.kind == "message", BpmnMessage.name == name,
                                                         BpmnMessage.message_id == message_id,
                                                         by.is_(None) if actor.is_system else by == actor.user_id))
        return Outcome(id=first.id if first else None, kind="message", name=name, status="duplicate",
                       instance_id=first.instance_id if first else None)
    try:
        outcome = route(session, row, actor, ttl=ttl, from_outside=True)
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()
    return outcome


def lock_name(session: Session, kind: str, name: str) -> None:
    """Serialise, until the commit, who matches messages of this name: a publisher and an instance that starts
    waiting at the same moment would otherwise each miss the other (one buffers, one subscribes). PostgreSQL
    only: SQLite has one writer at a time anyway."""
    advisory_lock(session, f"jzflow:{kind}:{name}")


def _anyone_waits(session: Session, kind: str, name: str) -> bool:
    return session.scalar(select(MessageSubscription.id).where(MessageSubscription.kind == kind,
                                                               MessageSubscription.name == name).limit(1)) is not None


def _candidates(session: Session, row: BpmnMessage) -> list[MessageSubscription]:
    q = select(MessageSubscription).where(MessageSubscription.kind == "message", MessageSubscription.name == row.name)
    if row.correlation != canonical({}):
        q = q.where(MessageSubscription.correlation == row.correlation)
        if row.business_key:
            q = q.where(MessageSubscription.business_key == row.business_key)
    elif row.business_key:
        q = q.where(MessageSubscription.business_key == row.business_key)
    else:
        q = q.where(MessageSubscription.correlation == row.correlation)
    return list(session.scalars(q.order_by(MessageSubscription.id).limit(CANDIDATES)))


def _deliver_to_candidates(session: Session, row: BpmnMessage, actor: Actor) -> int | None:
    """Resume the oldest waiting instance the message matches; a conflict re-reads the subscriptions.

    Returns 0 when delivered, None when no match takes it, else the id of an instance that conflicted in every round
    (someone else saves it each time, and it still waits for this message).

    A candidate that does not take it (a sender its catch does not name, no longer waiting) is let go before the
    next is locked: its savepoint rolled back, its row lock with it. Kept, the walk held instances in subscription
    order, not id order, and deadlocked with the 迁移实例 page locking them in id order (versions.migrate).
    """
    busy: int | None = None
    for _ in range(ROUNDS):
        busy = None
        for sub in _candidates(session, row):
            savepoint = session.begin_nested()
            try:
                taken = deliver_to(session, sub.instance_id, sub.task_guid, row, actor)
            except ConcurrentModification:
                savepoint.rollback()
                busy = sub.instance_id  # someone else saved it meanwhile: look again
                continue
            except BaseException:
                savepoint.rollback()
                raise
            if taken:
                savepoint.commit()
                return 0
            savepoint.rollback()
        if busy is None:
            break
    return busy


def route(session: Session, row: BpmnMessage, actor: Actor, *, ttl: int | None = None,
          from_outside: bool = False) -> Outcome:
    """Deliver a message to a waiting instance, else start one, else buffer it (flushes; adds `row` if new).

    Nobody waiting: under the name's lock, look again (an instance may have just started waiting), then check
    what only a start, the buffer or a later try needs — the name is declared, the sender named, the payload valid.

    A match that conflicted at every try still waits for the message: it is neither buffered (the instance would
    never look at the buffer again) nor starts another instance. From outside it is kept pending for the outbox job
    (`message_worker.route_pending`) to route again; the outbox job's own try raises, and is retried with backoff.

    Raises: MessageUnmatched (ttl 0 and nothing matched), MessageBusy (ttl 0 and the match busy), FormInvalid,
            Forbidden, MessageUnknown,
            ConcurrentModification (not from outside: the match was busy at every try),
            MessageQuotaExceeded (from outside: too many kept, nothing written)
    """
    if _deliver_to_candidates(session, row, actor) == 0:
        return _outcome(row)
    lock_name(session, row.kind, row.name)
    busy = _deliver_to_candidates(session, row, actor)
    if busy == 0:
        return _outcome(row)
    decls = declarations(session, "message", row.name)
    if not decls and not _anyone_waits(session, "message", row.name):
        raise MessageUnknown(f"没有流程声明消息「{row.name}」(no deployed process catches or starts on message "
                             f"{row.name!r})", name=row.name)
    if from_outside:
        require_sender(session, actor, "message", row.name, decls)
    payload = validate_payload(session, decls, json.loads(row.payload))
    row.payload = json.dumps(payload, ensure_ascii=False, default=plain)
    ttl = default_ttl() if ttl is None else ttl
    if busy is not None:
        if ttl <= 0:  # now or never: not kept for a later try (the worker's try: its time to live is over)
            raise MessageBusy(row.name, busy)
        if not from_outside:
            raise ConcurrentModification(busy)
        row.status, row.expires_at = "pending", clock.now() + timedelta(seconds=ttl)  # kept until then, if it must be
        row.instance_id = row.delivered_at = None  # as the busy try left them on a row not written yet (no rollback)
        session.add(row)
        session.flush()
        outbox.enqueue(session, "bpmn_message", {"message_id": row.id}, dedupe_key=f"bpmn_message:{row.id}")
        audit_message(session, actor, "message.queue", row, busy=busy)
        return _outcome(row)
    starts = [d for d in decls if d.start and (row.created_by_id is None or privileged(actor)
                                               or named(session, actor, d.senders))]
    if starts:
        first, hops = starts[0], start_hops(session, row.source_instance_id, row.name)
        from engine.runtime import instances  # instances imports this module's sync via core

        child = instances.start(session, process_key=first.process_key, actor=actor,
                                data=payload if isinstance(payload, dict) else {},
                                business_key=row.business_key, trigger=first.bpmn_id, start_hops=hops)
        row.status, row.instance_id, row.delivered_at = "started", child.id, clock.now()
        session.add(row)
        session.flush()
        audit_message(session, actor, "message.start", row)
        return _outcome(row)
    check_keep(session, row, ttl, from_outside=from_outside)  # ttl 0, or a quota of kept messages
    row.status, row.expires_at = "buffered", clock.now() + timedelta(seconds=ttl)
    session.add(row)
    session.flush()
    audit_message(session, actor, "message.buffer", row)
    return _outcome(row)


def _outcome(row: BpmnMessage) -> Outcome:
    return Outcome(id=row.id, kind=row.kind, name=row.name, status=row.status, instance_id=row.instance_id,
                   expires_at=row.expires_at, reason=row.reason)


def audit_message(session: Session, actor: Actor, action: str, row: BpmnMessage, *,
                  before: Any = None, **extra: Any) -> None:
    """Write the message's own audit event (its stream is the message)."""
    audit.record(session, actor, action, stream=f"message:{row.id}", object_type="bpmn_message", object_id=row.id,
                 before=before, after={"kind": row.kind, "name": row.name, "correlation": row.correlation,
                        "business_key": row.business_key, "status": row.status, "instance_id": row.instance_id,
                        "source_instance_id": row.source_instance_id,
                        "expires_at": row.expires_at.isoformat() if row.expires_at else None, **extra})


def deliver_to(session: Session, instance_id: int, task_guid: str, row: BpmnMessage, actor: Actor) -> bool:
    """Resume one instance with the message, in its own save; False when it no longer waits there.

    Raises: ConcurrentModification, FormInvalid (also: a message published now that would make the state too large)
    """
    # One read, the instance locked in it (before its task rows, as a submission takes them: no deadlock); it brings
    # the open rows along, so the save reads nothing more.
    running = runtime.load(session, instance_id, with_open_rows=True, lock=True)
    if running.row.status != "running":
        return False
    return _catch(session, running, task_guid, row, actor)


def _catch(session: Session, running: Running, task_guid: str, row: BpmnMessage, actor: Actor) -> bool:
    waiting = {w.task_guid: w for w in events.waiting(running.workflow)}
    catch = waiting.get(task_guid)
    if catch is None or catch.kind != row.kind or catch.name != row.name:
        return False
    if not may_deliver(session, actor, row.created_by_id, running.row.started_by_id, catch.senders,
                       catch.sender_users):
        return False
    payload = validate_for(session, running.row.version_id, catch.schema, json.loads(row.payload))
    if row.status == "pending" and row.source_instance_id is None:  # published now: refused if it makes the state
        running.submitted = {f"data/{k}": v for k, v in payload.items()}  # too large (not a buffered one, nor thrown)
    before = runtime.waiting_summary(running)
    events.deliver(running.workflow, task_guid, payload)
    row.status, row.instance_id, row.delivered_at = "delivered", running.row.id, clock.now()
    runtime.run(session, running, actor)
    runtime.save(session, running)
    if row.id is None:
        session.add(row)  # a message from outside is written once, delivered (one INSERT, no UPDATE)
        session.flush()
    runtime.record(session, running, actor, f"{row.kind}.deliver", before=before,
                   after={"message": row.id, "name": row.name, "bpmn_id": catch.bpmn_id,
                          "correlation": row.correlation, "business_key": row.business_key,
                          **runtime.waiting_summary(running)})
    return True


# --- the subscription projection, kept by every save ------------------------------------------------------

_catching: dict[tuple[str, int], bool] = {}


def has_catches(session: Session, version_id: int) -> bool:
    key = (database_key(session), version_id)
    if key not in _catching:
        _catching[key] = bool(events.catch_declarations(runtime.specs_for(session, version_id)))
    return _catching[key]


def sync(session: Session, running: Running, thrown: list[events.Thrown]) -> None:
    """Mirror what the instance waits on into message_subscription; queue what it threw; consume buffered messages.

    Called by `runtime.save` after the state is written, with what it took out of the workflow before (flushes).
    """
    row = running.row
    for event in thrown:
        _queue_thrown(session, running, event)
    if not has_catches(session, row.version_id):
        return  # no catch in this version: no subscription can exist
    want: dict[str, events.Waiting] = {}
    if row.status == "running":
        want = {w.task_guid: w for w in events.waiting(running.workflow)}
    have = {s.task_guid: s for s in session.scalars(
        select(MessageSubscription).where(MessageSubscription.instance_id == row.id))}
    gone = [s.id for g, s in have.items() if g not in want or _key(want[g]) != s.correlation
            or s.business_key != row.business_key]
    if gone:
        session.execute(delete(MessageSubscription).where(MessageSubscription.id.in_(gone)))
    fresh: list[events.Waiting] = []
    for guid, w in want.items():
        if guid in have and have[guid].id not in gone:
            continue
        if w.kind == "message":
            lock_name(session, "message", w.name)  # see a message published at this moment, or be seen by it
        session.add(MessageSubscription(instance_id=row.id, task_guid=guid, bpmn_id=w.bpmn_id[:200], kind=w.kind,
                                        name=w.name[:200], correlation=_key(w), business_key=row.business_key))
        fresh.append(w)
    session.flush()
    for w in fresh:
        if w.kind == "message" and _consume_buffered(session, running, w):
            break  # that save synced again and consumed what else was waiting


def _key(w: events.Waiting) -> str | None:
    if w.correlations is None:
        return None
    key = canonical(w.correlations)
    return key if len(key) <= MAX_CORRELATION else None


def _consume_buffered(session: Session, running: Running, w: events.Waiting) -> bool:
    if _depth.get() >= 20:
        return False  # a chain of buffered messages continues at the instance's next save
    key = _key(w)
    match = [BpmnMessage.business_key == running.row.business_key] if running.row.business_key else []
    if key is not None:
        match.append(BpmnMessage.correlation == key)
    if not match:
        return False
    q = (select(BpmnMessage).where(BpmnMessage.kind == "message", BpmnMessage.name == w.name,
                                   BpmnMessage.status == "buffered", BpmnMessage.expires_at > clock.now(),
                                   or_(*match)).order_by(BpmnMessage.id).limit(1))
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    message = session.scalar(q)
    if message is None or not _matches(message, key, running.row.business_key):
        return False
    by = sender(session, message.created_by_id)
    if by is None:
        return False
    token = _depth.set(_depth.get() + 1)
    try:
        return _catch(session, running, w.task_guid, message, by)
    finally:
        _depth.reset(token)


def _matches(message: BpmnMessage, key: str | None, business_key: str | None) -> bool:
    """The same rule as `_candidates`, seen from the waiting side."""
    empty = canonical({})
    if message.correlation != empty:
        return message.correlation == key and (not message.business_key or message.business_key == business_key)
    if message.business_key:
        return message.business_key == business_key
    return key == empty


def _queue_thrown(session: Session, running: Running, event: events.Thrown) -> None:
    """Keep a message or signal the instance threw, for the outbox job to route after the commit."""
    from engine.runtime import signals  # signals imports this module

    if event.kind == "signal":
        row = signals.queue(session, name=event.name, payload=event.payload, source_instance_id=running.row.id)
    else:
        payload = json.dumps(event.payload, ensure_ascii=False, default=plain)
        row = BpmnMessage(kind="message", name=event.name[:MAX_NAME], correlation=canonical(event.correlations),
                          business_key=None, payload=payload, status="pending", source_instance_id=running.row.id)
        session.add(row)
        session.flush()
        outbox.enqueue(session, "bpmn_message", {"message_id": row.id}, dedupe_key=f"bpmn_message:{row.id}")
    runtime.record(session, running, SYSTEM, f"{event.kind}.throw",
                   after={"message": row.id, "name": row.name, "correlation": row.correlation})


def published_by(session: Session, message_id: int) -> int | None:
    """Return the id of the user who published a message (None: an instance threw it)."""
    return session.scalar(select(BpmnMessage.created_by_id).where(BpmnMessage.id == message_id))


def describe(session: Session, message_id: int) -> Outcome:
    """Return what became of a message.

    Raises: NotFound
    """
    row = session.get(BpmnMessage, message_id)
    if row is None:
        raise NotFound(f"消息不存在 (no such message): {message_id}", message_id=message_id)
    out = _outcome(row)
    if row.status == "buffered" and row.expires_at is not None and row.expires_at <= clock.now():
        return replace(out, status="expired")
    return out


__all__ = [  # what callers use, including the rules re-exported from message_rules
    "MAX_NAME", "Declaration", "MessageUnknown", "MessageUnmatched", "Outcome", "audit_message", "canonical",
    "check_input", "declarations", "default_ttl", "deliver_to", "describe", "lock_name", "may_deliver", "plain",
    "publish", "published_by", "require_sender", "route", "sender", "sync", "validate_payload",
]
