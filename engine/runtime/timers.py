"""Fire due BPMN timers: find instances by next_timer_at, then refresh_timers + do_engine_steps."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.db import is_postgres
from engine.org.actors import SYSTEM
from engine.runtime import core as runtime
from engine.runtime.models import Incident, ProcessInstance


def due_ids(session: Session, *, now: datetime, limit: int = 100) -> list[int]:
    """Return ids of running instances whose next timer is due (an index scan)."""
    return list(session.scalars(select(ProcessInstance.id)
                                .where(ProcessInstance.status == "running", ProcessInstance.next_timer_at <= now)
                                .order_by(ProcessInstance.next_timer_at, ProcessInstance.id).limit(limit)))


def mark_failed(session: Session, instance_id: int, exc: BaseException) -> None:
    """Stop an instance whose timer could not be fired with an incident, so the sweep moves on (flushes)."""
    row = session.get(ProcessInstance, instance_id)
    if row is None or row.status != "running":
        return
    row.status = "incident"
    row.next_timer_at = None
    row.lock_version += 1  # a save that loaded the old state must not overwrite the incident
    message = f"{type(exc).__name__}: {exc}"[:4000]
    session.add(Incident(instance_id=instance_id, kind="timer_error", message=message))
    session.flush()
    audit.record(session, SYSTEM, "instance.incident", stream=f"instance:{instance_id}",
                 object_type="process_instance", object_id=instance_id, after={"kind": "timer_error",
                                                                               "message": message[:500]})


def fire_instance(session: Session, instance_id: int, *, now: datetime) -> bool:
    """Fire one instance's due timers under a row lock; False if not due (already fired or taken).

    Re-checks the due time under the lock, so a redelivered job or a second worker does nothing.
    """
    q = select(ProcessInstance.id).where(ProcessInstance.id == instance_id, ProcessInstance.status == "running",
                                         ProcessInstance.next_timer_at <= now)
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    if session.scalar(q) is None:
        return False
    running = runtime.load(session, instance_id)
    before = runtime.waiting_summary(running)
    runtime.run(session, running, SYSTEM, refresh_timers=True)
    runtime.save(session, running)
    runtime.record(session, running, SYSTEM, "timer.fire", before=before, after=runtime.waiting_summary(running))
    return True
