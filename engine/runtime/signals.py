"""BPMN signals: broadcast to every instance waiting on the signal, and signal start events.

A broadcast writes the signal and one `signal_delivery` row per waiting instance (one INSERT … SELECT
from the subscription index, unique per signal and instance). The worker then resumes the instances in
batches, each in its own transaction that also marks its delivery done: a worker killed midway leaves
the rest pending for the next job, and none is resumed twice. Signal start events start one instance of
each process whose latest version starts on the signal.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import Session

from engine import clock
from engine.db import is_postgres
from engine.notify import outbox
from engine.org.actors import SYSTEM, Actor
from engine.runtime import core as runtime
from engine.runtime import message_rules, messages
from engine.runtime.message_models import BpmnMessage, MessageSubscription, SignalDelivery
from engine.spiff import events


def broadcast(session: Session, *, name: str, actor: Actor, payload: Mapping[str, Any] | None = None) -> messages.Outcome:
    """Broadcast a signal from outside (API, CLI, a service): fan out to the waiting instances, start others.

    The waiting instances are resumed by the worker after the commit (the outbox kicks it) (flushes).

    Raises: InvalidInput, FormInvalid, MessageUnknown (no process declares the signal)
    """
    payload = payload or {}
    messages.check_input(name, {}, payload, None, None)
    decls = messages.declarations(session, "signal", name)
    if not decls and session.scalar(select(MessageSubscription.id).where(
            MessageSubscription.kind == "signal", MessageSubscription.name == name).limit(1)) is None:
        raise messages.MessageUnknown(f"没有流程声明信号「{name}」(no deployed process catches or starts on signal "
                                      f"{name!r})", name=name)
    messages.require_sender(session, actor, "signal", name, decls)
    checked = messages.validate_payload(session, decls, payload)
    row = BpmnMessage(kind="signal", name=name, correlation=messages.canonical({}), status="pending",
                      payload=json.dumps(checked, ensure_ascii=False, default=messages.plain), created_by_id=actor.user_id)
    session.add(row)
    session.flush()
    waiting, started = fan_out(session, row, actor, decls=decls)
    return messages.Outcome(id=row.id, kind="signal", name=name, status="broadcast", waiting=waiting,
                            started=tuple(started))


def queue(session: Session, *, name: str, payload: Any, source_instance_id: int) -> BpmnMessage:
    """Keep a signal an instance threw; the outbox job fans it out after the commit (flushes)."""
    row = BpmnMessage(kind="signal", name=name[:messages.MAX_NAME], correlation=messages.canonical({}),
                      status="pending", payload=json.dumps(payload, ensure_ascii=False, default=messages.plain),
                      source_instance_id=source_instance_id)
    session.add(row)
    session.flush()
    outbox.enqueue(session, "bpmn_signal", {"signal_id": row.id}, dedupe_key=f"bpmn_signal:{row.id}")
    return row


def fan_out(session: Session, row: BpmnMessage, actor: Actor,
            decls: list[messages.Declaration] | None = None) -> tuple[int, list[int]]:
    """Write one pending delivery per instance waiting on the signal, start the signal's start events (flushes)."""
    sub = select(MessageSubscription.instance_id).where(
        MessageSubscription.kind == "signal", MessageSubscription.name == row.name)
    if row.source_instance_id is not None:
        sub = sub.where(MessageSubscription.instance_id != row.source_instance_id)  # it caught its own already
    sub = sub.distinct()
    session.execute(insert(SignalDelivery).from_select(
        ["signal_id", "instance_id", "state"],
        select(literal(row.id), sub.subquery().c.instance_id, literal("pending"))))
    waiting = int(session.scalar(select(func.count()).select_from(SignalDelivery)
                                 .where(SignalDelivery.signal_id == row.id)) or 0)
    started: list[int] = []
    decls = messages.declarations(session, "signal", row.name) if decls is None else decls
    from engine.runtime import instances  # instances → core → messages → (here)

    payload = json.loads(row.payload)
    refused: dict[str, str] = {}
    try:
        hops = message_rules.start_hops(session, row.source_instance_id, row.name) if any(d.start for d in decls) else 0
    except messages.MessageUnmatched as exc:  # instances starting one another: the waiting ones still get it
        hops, refused = -1, {"start_refused": exc.message}
    for d in decls:
        if d.start and hops >= 0:  # a payload that is not an object reaches the start event's variable only
            child = instances.start(session, process_key=d.process_key, actor=actor,
                                    data=payload if isinstance(payload, dict) else {}, trigger=d.bpmn_id,
                                    start_hops=hops)
            started.append(child.id)
    row.status, row.delivered_at = "broadcast", clock.now()
    row.instance_id = started[0] if started else None
    session.flush()
    outbox.enqueue(session, "bpmn_signal", {"signal_id": row.id, "fanned_out": True},
                   dedupe_key=f"bpmn_signal_kick:{row.id}")
    messages.audit_message(session, actor, "signal.broadcast", row, waiting=waiting, started=started, **refused)
    return waiting, started


def prepare(session: Session, signal_id: int) -> bool:
    """Fan out a signal an instance threw (the outbox job); False when it was fanned out already."""
    q = select(BpmnMessage).where(BpmnMessage.id == signal_id, BpmnMessage.kind == "signal",
                                  BpmnMessage.status == "pending")
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    row = session.scalar(q)
    if row is None:
        return False
    fan_out(session, row, SYSTEM)
    return True


def pending_ids(session: Session, *, limit: int = 100, after: int = 0) -> list[int]:
    """Return ids of pending deliveries, oldest first (an index scan)."""
    return list(session.scalars(select(SignalDelivery.id).where(SignalDelivery.state == "pending",
                                                                SignalDelivery.id > after)
                                .order_by(SignalDelivery.id).limit(limit)))


def deliver_one(session: Session, delivery_id: int) -> bool:
    """Resume one waiting instance with its signal, under a row lock; True when it was resumed now.

    The delivery is marked done in the transaction that saves the instance: redelivered jobs do nothing.

    Raises: ConcurrentModification (left pending for the next round)
    """
    q = select(SignalDelivery).where(SignalDelivery.id == delivery_id, SignalDelivery.state == "pending")
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    delivery = session.scalar(q)
    if delivery is None:
        return False
    signal = session.get(BpmnMessage, delivery.signal_id)
    assert signal is not None
    running = runtime.load(session, delivery.instance_id, lock=True)  # the instance before its task rows (no deadlock)
    by = messages.sender(session, signal.created_by_id)
    waits = [w for w in events.waiting(running.workflow) if w.kind == "signal" and w.name == signal.name
             and messages.may_deliver(session, by, signal.created_by_id, running.row.started_by_id, w.senders,
                                         w.sender_users)]
    if running.row.status != "running" or not waits:
        delivery.state, delivery.done_at = "skipped", clock.now()
        session.flush()
        return False
    payload = json.loads(signal.payload)
    before = runtime.waiting_summary(running)
    for w in waits:
        events.deliver(running.workflow, w.task_guid, payload)
    runtime.run(session, running, SYSTEM)
    runtime.save(session, running)
    delivery.state, delivery.done_at = "done", clock.now()
    session.flush()
    runtime.record(session, running, SYSTEM, "signal.deliver", before=before,
                   after={"signal": signal.id, "name": signal.name, "bpmn_ids": [w.bpmn_id for w in waits],
                          **runtime.waiting_summary(running)})
    return True


__all__ = ["broadcast", "deliver_one", "fan_out", "pending_ids", "prepare", "queue"]
